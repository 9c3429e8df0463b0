@testable import MATBPF
import Testing

/// The IPv6 programs run on packets in ``Interpreter``: what they rewrite, with checksums
/// a receiver accepts (summed again from scratch here), and what they leave alone.
@Suite struct TranslationPrograms6Tests {
    // 2001:db8:100::10 (own HoA), 2001:db8:a::10 (own MoA), peer 2001:db8:100::20 at
    // 2001:db8:c::130 via fe80::1.
    static let ownHoA = Packet6.address(0x2001_0db8_0100_0000, 0x10), ownMoA = Packet6.address(0x2001_0db8_000a_0000, 0x10)
    static let peerHoA = Packet6.address(0x2001_0db8_0100_0000, 0x20), peerMoA = Packet6.address(0x2001_0db8_000c_0000, 0x130)
    static let gateway = Packet6.address(0xfe80_0000_0000_0000, 1)
    static let heard: Int32 = 6, flows: Int32 = 7, services: Int32 = 8
    static let parameters = TranslationPrograms6.Parameters(home: ownHoA, mobile: ownMoA, localPorts: [7540, 7541],
                                                            outboundMap: 3, inboundMap: 4, counterMap: 5)

    func machine() -> Interpreter {
        var m = Interpreter()
        m.protocolField = 0xdd86
        m.maps[3] = [Self.peerHoA: TranslationPrograms6.OutboundValue(mobile: Self.peerMoA, nextHop: Self.gateway, interfaceIndex: 9).bytes]
        m.maps[4] = [Self.peerMoA: Self.peerHoA]
        m.maps[5] = Dictionary(uniqueKeysWithValues: (0..<4).map { ([UInt8($0), 0, 0, 0], [UInt8](repeating: 0, count: TranslationPrograms.counterValueSize)) })
        for (fd, key, value) in [(Self.heard, 16, 8), (Self.flows, 24, 8), (Self.services, 4, 4)] {
            m.maps[fd] = [:]
            m.sizes[fd] = (key, value)
        }
        return m
    }

    func counter(_ m: Interpreter, _ index: UInt8) -> UInt8 { m.maps[5]![[index, 0, 0, 0]]![0] }

    func out(_ next: UInt8, _ payload: [UInt8], from source: [UInt8] = ownHoA, to destination: [UInt8] = peerHoA) -> [UInt8] {
        Packet6.ipv6(source: source, destination: destination, nextHeader: next, payload: payload)
    }

    func into(_ next: UInt8, _ payload: [UInt8], from source: [UInt8] = peerMoA, to destination: [UInt8] = ownMoA) -> [UInt8] {
        Packet6.ethernet + Packet6.ipv6(source: source, destination: destination, nextHeader: next, payload: payload)
    }

    @Test func outboundPacketsGoToThePeersMoAWithValidChecksums() throws {
        let program = try TranslationPrograms6.outbound(Self.parameters)
        for (next, payload) in [(UInt8(17), Packet.udp(1234, 5201, [1, 2, 3, 4, 5])), (6, Packet.tcp(40000, 80)),
                                (58, Packet6.echo(type: 128)), (58, Packet6.echo(type: 129))] {
            var m = machine()
            m.packet = out(next, payload)
            #expect(try m.run(program) == 7, "next header \(next)")
            #expect(m.packet.prefix(14).allSatisfy { $0 == 0 })
            #expect(m.calls.filter { $0 == .skbStoreBytes }.count == 1)   // the addresses; nothing into the pushed header
            #expect(Packet6.bytes(m.packet, 22, 16) == Self.ownMoA)
            #expect(Packet6.bytes(m.packet, 38, 16) == Self.peerMoA)
            #expect(Packet6.transportChecksumValid(m.packet, at: 14), "next header \(next)")
            // Of the transport header and data, only the checksum changed.
            let at = Packet6.checksumOffset(next)!
            var sent = Packet6.bytes(out(next, payload), 40, payload.count), gone = Packet6.bytes(m.packet, 54, payload.count)
            sent.replaceSubrange(at..<at + 2, with: [0, 0])
            gone.replaceSubrange(at..<at + 2, with: [0, 0])
            #expect(sent == gone, "next header \(next)")
            #expect(m.redirected?.interface == 9)
            #expect(m.redirected?.nextHop == Self.gateway)
            #expect(counter(m, 2) == 1 && counter(m, 0) == 0)
            #expect(m.mark == 0)
        }
    }

    @Test func inboundPacketsFromThePeersMoAReachTheHoAMarkedAndHeard() throws {
        var p = Self.parameters
        p.heardMap = Self.heard
        let program = try TranslationPrograms6.inbound(p)
        for (next, payload) in [(UInt8(17), Packet.udp(5201, 1234, [7, 7])), (6, Packet.tcp(80, 40000)),
                                (58, Packet6.echo(type: 129)), (58, Packet6.echo(type: 128))] {
            var m = machine()
            m.mark = 0x5
            m.now = 99
            m.packet = into(next, payload)
            #expect(try m.run(program) == TranslationPrograms.pass, "next header \(next)")
            #expect(Packet6.bytes(m.packet, 22, 16) == Self.peerHoA)
            #expect(Packet6.bytes(m.packet, 38, 16) == Self.ownHoA)
            #expect(Packet6.transportChecksumValid(m.packet, at: 14), "next header \(next)")
            #expect(m.mark == 0x1000_0005)
            #expect(counter(m, 3) == 1)
            #expect(HeardAndGuardTests.time(m.maps[Self.heard]![Self.peerHoA]) == 99)
        }
    }

    /// A checksum whose fix sums to zero is sent as 0xffff in UDP (zero means none).
    @Test func aUDPChecksumThatBecomesZeroIsSentAsAllOnes() throws {
        // A payload whose translated packet sums to 0xffff without its checksum: the
        // checksum is then zero in arithmetic, which UDP sends as 0xffff.
        var found = false
        for filler in 0..<UInt16.max where !found {
            let payload = Packet.udp(5201, 1234, [UInt8(filler >> 8), UInt8(filler & 0xff)])
            var expected = Packet6.ipv6(source: Self.peerHoA, destination: Self.ownHoA, nextHeader: 17, payload: payload)
            guard expected[46] == 0 && expected[47] == 0 else { continue }
            found = true
            var m = machine()
            m.packet = into(17, payload)
            #expect(try m.run(try TranslationPrograms6.inbound(Self.parameters)) == TranslationPrograms.pass)
            expected = Array(m.packet[14...])
            #expect(expected[46] == 0xff && expected[47] == 0xff)
            #expect(Packet6.transportChecksumValid(m.packet, at: 14))
        }
        #expect(found)
    }

    @Test func packetsTheProgramsCannotRewriteAreLeftAlone() throws {
        var zeroChecksum = out(17, Packet.udp(1, 2, [3]))
        zeroChecksum[46] = 0
        zeroChecksum[47] = 0
        let outbound: [(String, [UInt8])] = [
            ("unknown peer", out(17, Packet.udp(1, 2, []), to: Packet6.address(0x2001_0db8_0100_0000, 0x99))),
            ("another source", out(17, Packet.udp(1, 2, []), from: Self.ownMoA)),
            ("hop-by-hop options", out(0, Packet6.extensionHeader(next: 17) + Packet.udp(1, 2, []))),
            ("routing header", out(43, Packet6.extensionHeader(next: 17) + Packet.udp(1, 2, []))),
            ("fragment", out(44, Packet6.fragmentHeader(next: 17) + Packet.udp(1, 2, []))),
            ("destination options", out(60, Packet6.extensionHeader(next: 6) + Packet.tcp(1, 2))),
            ("packet too big", out(58, [2, 0, 0, 0, 0, 0, 5, 0xdc] + Array(repeating: 0, count: 40))),
            ("neighbour solicitation", out(58, [135, 0, 0, 0, 0, 0, 0, 0] + Self.peerHoA)),
            ("zero UDP checksum", zeroChecksum),
            ("truncated", Array(out(17, Packet.udp(1, 2, [])).prefix(39))),
        ]
        for (name, packet) in outbound {
            var m = machine()
            m.packet = packet
            #expect(try m.run(try TranslationPrograms6.outbound(Self.parameters)) == TranslationPrograms.notMine, "\(name)")
            #expect(m.packet == packet && m.redirected == nil, "\(name)")
        }
        var ipv4 = machine()
        ipv4.protocolField = 0x0008
        ipv4.packet = out(17, Packet.udp(1, 2, []))
        #expect(try ipv4.run(try TranslationPrograms6.outbound(Self.parameters)) == TranslationPrograms.notMine)
        let inbound: [(String, [UInt8])] = [
            ("signaling port", into(17, Packet.udp(7540, 7540, []))),
            ("not a peer", into(17, Packet.udp(1, 2, []), from: Packet6.address(0x2001_0db8_000c_0000, 0x131))),
            ("not to the MoA", into(17, Packet.udp(1, 2, []), to: Self.ownHoA)),
            ("fragment", into(44, Packet6.fragmentHeader(next: 6) + Packet.tcp(1, 2))),
            ("destination unreachable", into(58, [1, 4, 0, 0, 0, 0, 0, 0] + Array(repeating: 0, count: 48))),
            ("neighbour advertisement", into(58, [136, 0, 0, 0, 0x60, 0, 0, 0] + Self.peerMoA)),
            ("UDP header cut", Array(into(17, Packet.udp(1, 2, [])).prefix(60))),
        ]
        for (name, packet) in inbound {
            var m = machine()
            m.packet = packet
            #expect(try m.run(try TranslationPrograms6.inbound(Self.parameters)) == TranslationPrograms.notMine, "\(name)")
            #expect(m.packet == packet && m.mark == 0, "\(name)")
        }
    }

    @Test func theGuardWorksForIPv6() throws {
        var p = Self.parameters
        p.moaGuard = MoAGuard(flowMap: Self.flows, serviceMap: Self.services)
        var m = machine()
        m.packet = Packet6.ethernet + Packet6.ipv6(source: Self.ownMoA, destination: Self.peerMoA, nextHeader: 6, payload: Packet.tcp(40000, 22))
        #expect(try m.run(try MoAGuard.flows6(p)) == TranslationPrograms.notMine)
        #expect(m.maps[Self.flows]!.keys.first == MoAGuard.flowKey(peer: Self.peerMoA, protocol: 6, peerPort: 22, ownPort: 40000))
        m.maps[Self.services]![MoAGuard.serviceKey(protocol: 6, version: 6, port: 443)] = [0, 0, 0, 0]
        m.maps[Self.services]![MoAGuard.serviceKey(protocol: 6, version: 4, port: 8080)] = [0, 0, 0, 0]
        let inbound = try TranslationPrograms6.inbound(p)
        for (name, packet, verdict) in [("the host's flow", into(6, Packet.tcp(22, 40000)), TranslationPrograms.notMine),
                                        ("service on the MoA", into(6, Packet.tcp(50000, 443)), TranslationPrograms.notMine),
                                        ("IPv4 MoA's service", into(6, Packet.tcp(50000, 8080)), TranslationPrograms.pass),
                                        ("HoA traffic", into(6, Packet.tcp(22, 40001)), TranslationPrograms.pass)] {
            var n = m
            n.packet = packet
            #expect(try n.run(inbound) == verdict, "\(name)")
            #expect((n.packet == packet) == (verdict == TranslationPrograms.notMine), "\(name)")
        }
        // The outbound program marks its packets: the noting program passes them by.
        var o = machine()
        o.packet = out(6, Packet.tcp(40000, 22))
        #expect(try o.run(try TranslationPrograms6.outbound(p)) == 7)
        #expect(try o.run(try MoAGuard.flows6(p)) == TranslationPrograms.notMine)
        #expect(o.maps[Self.flows]!.isEmpty)
    }
}

/// IPv6 packets built field by field, with their transport checksum over the pseudo-header.
enum Packet6 {
    static let ethernet: [UInt8] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd]

    static func address(_ high: UInt64, _ low: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    /// Version 6, traffic class 0, flow label 0x12345, hop limit 64.
    static func ipv6(source: [UInt8], destination: [UInt8], nextHeader: UInt8, payload: [UInt8]) -> [UInt8] {
        let header: [UInt8] = [0x60, 0x01, 0x23, 0x45, UInt8(payload.count >> 8), UInt8(payload.count & 0xff), nextHeader, 64]
        var transport = payload
        if let at = checksumOffset(nextHeader), transport.count >= at + 2 {
            let sum = ~Packet.fold(pseudoHeader(source, destination, nextHeader, transport.count) + transport)
            transport[at] = UInt8(sum >> 8)
            transport[at + 1] = UInt8(sum & 0xff)
        }
        return header + source + destination + transport
    }

    static func bytes(_ p: [UInt8], _ at: Int, _ count: Int) -> [UInt8] { Array(p[at..<at + count]) }

    static func checksumOffset(_ next: UInt8) -> Int? { next == 17 ? 6 : next == 6 ? 16 : next == 58 ? 2 : nil }

    static func pseudoHeader(_ source: [UInt8], _ destination: [UInt8], _ next: UInt8, _ length: Int) -> [UInt8] {
        source + destination + [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), 0, 0, 0, next]
    }

    static func echo(type: UInt8) -> [UInt8] { [type, 0, 0, 0, 0x12, 0x34, 0, 1, 0xab, 0xcd, 0xef] }

    /// A hop-by-hop, routing or destination options header of 8 bytes (PadN).
    static func extensionHeader(next: UInt8) -> [UInt8] { [next, 0, 1, 4, 0, 0, 0, 0] }

    static func fragmentHeader(next: UInt8) -> [UInt8] { [next, 0, 0, 1, 0, 0, 0, 7] }

    /// The transport checksum summed from scratch: the pseudo-header and the whole
    /// transport data add up to 0xffff, and a UDP checksum is never zero (IPv6 forbids it).
    static func transportChecksumValid(_ p: [UInt8], at ip: Int) -> Bool {
        let next = p[ip + 6], transport = Array(p[(ip + 40)...])
        guard let at = checksumOffset(next), transport.count >= at + 2 else { return false }
        if next == 17 && transport[6] == 0 && transport[7] == 0 { return false }
        return Packet.fold(pseudoHeader(Array(p[ip + 8..<ip + 24]), Array(p[ip + 24..<ip + 40]), next, transport.count) + transport) == 0xffff
    }
}
