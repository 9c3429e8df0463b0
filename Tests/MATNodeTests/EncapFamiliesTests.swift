#if canImport(Glibc)
import Glibc
#endif
@testable import MATNode
import MATLinux
import MATPacket
import MATSystem
import Testing

/// Which families `encap-port` is bound in (``EncapFamilies``): a node's HoA families; a
/// relay's every family the host has, so that clients reach it by either.
@Suite struct EncapFamiliesTests {
    let hoa4 = IPAddress("198.51.100.30")!, hoa6 = IPAddress("2001:db8:100::30")!

    /// (required, optional) for these HoAs.
    func families(_ hoas: [IPAddress], relay: Bool) -> [Set<AddressFamily>] {
        let families = EncapFamilies(homeAddresses: hoas, servesRelay: relay)
        return [families.required, families.optional]
    }

    @Test func aNodeListensInItsHomeAddressesFamiliesOnly() {
        #expect(families([hoa4], relay: false) == [[.ipv4], []])
        #expect(families([hoa6], relay: false) == [[.ipv6], []])
        #expect(families([hoa4, hoa6], relay: false) == [[.ipv4, .ipv6], []])
    }

    @Test func aRelayAlsoListensInTheFamiliesItHasNoHomeAddressOf() {
        #expect(families([hoa4], relay: true) == [[.ipv4], [.ipv6]])
        #expect(families([hoa6], relay: true) == [[.ipv6], [.ipv4]])
        #expect(families([hoa4, hoa6], relay: true) == [[.ipv4, .ipv6], []])
    }

    /// Only a host without the family skips it; a taken port still stops start.
    @Test func onlyAMissingFamilyIsSkipped() {
        #expect(EncapFamilies.hostLacksFamily(SystemError("open UDP socket", errno: EAFNOSUPPORT)))
        #expect(!EncapFamilies.hostLacksFamily(SystemError("bind UDP port 7541", errno: EADDRINUSE)))
        #expect(!EncapFamilies.hostLacksFamily(SystemError("bind UDP port 7541", detail: "held by matd")))
    }

    /// With the real sockets: an optional family is bound (this host has IPv6), with its
    /// probe-answer socket, and one whose port another socket holds fails start.
    @Test func anOptionalFamilyIsBoundAndATakenPortStillFails() throws {
        let path = try EncapPath(port: 0, families: [.ipv4], optionalFamilies: [.ipv6])
        #expect(path.families == [.ipv4, .ipv6])
        #expect(Set(path.answerSockets.keys) == [.ipv4, .ipv6])
        #expect(try EncapPath(port: 0, families: [.ipv4]).families == [.ipv4])
        // A port held in IPv6 only, free in IPv4.
        var port: UInt16 = 0
        var holder: DatagramSocket?
        for candidate in UInt16(47_100)..<UInt16(47_200) {
            guard let ipv6 = try? DatagramSocket(family: .ipv6, port: candidate),
                  (try? DatagramSocket(family: .ipv4, port: candidate)) != nil else { continue }
            port = candidate
            holder = ipv6
            break
        }
        #expect(holder != nil && port != 0)
        withExtendedLifetime(holder) {
            #expect(throws: SystemError.self) { try EncapPath(port: port, families: [.ipv4], optionalFamilies: [.ipv6]) }
        }
    }
}
