import MATPacket

/// One address of an interface as the kernel's address dump (RTM_GETADDR) reports it:
/// the address with its flags, scope and lifetimes. A plain value, so the choice of which
/// addresses other hosts may be told to reach us at is a pure function of the dump.
public struct InterfaceAddress: Sendable, Equatable, CustomStringConvertible {
    /// The interface's index.
    public var interface: Int32
    /// The address with its prefix length.
    public var prefix: IPPrefix
    /// `IFA_F_*` flags (the 32-bit `IFA_FLAGS` value where the kernel sends it).
    public var flags: UInt32
    /// `RT_SCOPE_*`: 0 universe (global), 253 link, 254 host.
    public var scope: UInt8
    /// Seconds the address stays preferred; `UInt32.max` is forever, 0 is deprecated.
    public var preferredLifetime: UInt32
    /// Seconds the address stays valid; `UInt32.max` is forever.
    public var validLifetime: UInt32

    /// An address as dumped; lifetimes default to forever (an address added without them).
    public init(interface: Int32, prefix: IPPrefix, flags: UInt32 = Self.permanent, scope: UInt8 = 0,
                preferredLifetime: UInt32 = .max, validLifetime: UInt32 = .max) {
        self.interface = interface
        self.prefix = prefix
        self.flags = flags
        self.scope = scope
        self.preferredLifetime = preferredLifetime
        self.validLifetime = validLifetime
    }

    // The kernel's IFA_F_* values (linux/if_addr.h), spelled out so that pure code and
    // tests need no C headers.
    /// IPv4: a secondary address (another in the same subnet came first).
    public static let secondary: UInt32 = 0x01
    /// IPv6: a temporary (privacy, RFC 8981) address. The same bit as `secondary`.
    public static let temporary: UInt32 = 0x01
    public static let noDAD: UInt32 = 0x02
    public static let optimistic: UInt32 = 0x04
    public static let dadFailed: UInt32 = 0x08
    public static let deprecated: UInt32 = 0x20
    public static let tentative: UInt32 = 0x40
    /// Configured by hand (no lifetimes), as opposed to SLAAC, DHCP or a temporary address.
    public static let permanent: UInt32 = 0x80
    public static let manageTemporaryAddresses: UInt32 = 0x100

    /// Why this address may not be handed to other hosts as a long-lived address of this
    /// one, or nil when it may: it must be global, not link-local, not tentative or failed
    /// duplicate address detection, not deprecated (preferred lifetime 0), and, for IPv6,
    /// not temporary (privacy addresses are rotated away by design and must not be
    /// published, which is the point of them).
    public var unfitness: String? {
        if scope != 0 { return "not global scope" }
        switch prefix.address {
        case .v4(let address):
            // 169.254.0.0/16 (RFC 3927) is link-local whatever scope it was given.
            if address.bytes[0] == 169 && address.bytes[1] == 254 { return "link-local" }
        case .v6(let address):
            if address.bytes[0] == 0xFE && address.bytes[1] & 0xC0 == 0x80 { return "link-local" }
            if flags & Self.temporary != 0 { return "temporary" }
        }
        if flags & Self.dadFailed != 0 { return "duplicate address detection failed" }
        if flags & Self.tentative != 0 { return "tentative" }
        // Both lifetimes 0 means the dump carried none (no IFA_CACHEINFO), not deprecated.
        if flags & Self.deprecated != 0 || (preferredLifetime == 0 && validLifetime != 0) { return "deprecated" }
        return nil
    }

    /// Below this many seconds of preferred lifetime an address is about to be deprecated.
    public static let endingSoon: UInt32 = 600

    /// The fit addresses of `dump` (see `unfitness`), best first:
    /// 1. permanent (configured by hand) before dynamic (SLAAC, DHCP): the operator said so;
    /// 2. for IPv4, the primary address before secondaries (the kernel's source choice);
    /// 3. one with less than `endingSoon` of preferred lifetime left after the others, so
    ///    the node leaves a prefix being renumbered away before it is deprecated;
    /// 4. the dump's own order (IPv6 lists the newest address first).
    ///
    /// Lifetimes are not compared beyond 3: they tick down and are refreshed at different
    /// times (router advertisements of two prefixes, DHCP renewals), so "the longest" would
    /// move the node back and forth between two good addresses at every refresh. The
    /// dump's order does not change when a lifetime is refreshed.
    public static func ranked(_ dump: [InterfaceAddress]) -> [InterfaceAddress] {
        dump.enumerated()
            .filter { $0.element.unfitness == nil }
            .sorted { left, right in
                let a = left.element, b = right.element
                if a.isPermanent != b.isPermanent { return a.isPermanent }
                if a.isSecondary4 != b.isSecondary4 { return !a.isSecondary4 }
                if a.isEndingSoon != b.isEndingSoon { return !a.isEndingSoon }
                return left.offset < right.offset
            }
            .map(\.element)
    }

    private var isEndingSoon: Bool { preferredLifetime < Self.endingSoon }
    private var isPermanent: Bool { flags & Self.permanent != 0 }
    private var isSecondary4: Bool { prefix.address.family == .ipv4 && flags & Self.secondary != 0 }

    /// For logs and test failures: `2001:db8:a::10/64 if 3 flags 0x80 scope 0 pref forever`.
    public var description: String {
        let preferred = preferredLifetime == .max ? "forever" : "\(preferredLifetime)s"
        return "\(prefix) if \(interface) flags 0x\(String(flags, radix: 16)) scope \(scope) pref \(preferred)"
    }
}
