#if canImport(Glibc)
import Glibc
#endif
import MATPacket
import MATSystem

/// The families the encapsulation binds `encap-port` in (docs/config.md, "`[relay]`").
/// A node needs a socket for each family it has a HoA of: its peers' MoAs are of those
/// families, and start fails without one. A relay (`serve = on`) also listens in every
/// other family the host has, so that clients reach it by an address of either family
/// whatever HoAs the relay itself has; a host without the family (IPv6 disabled at boot:
/// the socket cannot be made) skips it with a warning, any other failure still stops start.
struct EncapFamilies: Equatable, Sendable {
    /// Bound or start fails.
    var required: Set<AddressFamily>
    /// Bound where the host has the family.
    var optional: Set<AddressFamily>

    init(homeAddresses: [IPAddress], servesRelay: Bool) {
        required = Set(homeAddresses.map(\.family))
        optional = servesRelay ? Set([AddressFamily.ipv4, .ipv6]).subtracting(required) : []
    }

    /// Whether failing to open an optional family's socket with `error` means the host
    /// lacks the family (skipped) rather than something to stop for (the port taken, ...).
    static func hostLacksFamily(_ error: SystemError) -> Bool {
        error.errno == EAFNOSUPPORT
    }
}
