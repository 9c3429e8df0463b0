@testable import MATBPF
import Testing

/// The programs run on packets in ``Interpreter``: what they rewrite, with checksums a
/// receiver accepts, and what they leave alone.
@Suite struct TranslationProgramsTests {
    // 198.51.100.10 (own HoA), 192.0.2.10 (own MoA), peer 198.51.100.20 at 192.0.2.130 via 192.0.2.1.
    static let ownHoA: UInt32 = 0xC633_640A, ownMoA: UInt32 = 0xC000_020A
    static let peerHoA: UInt32 = 0xC633_6414, peerMoA: UInt32 = 0xC000_0282, gateway: UInt32 = 0xC000_0201
    static let parameters = TranslationPrograms.Parameters(home: ownHoA, mobile: ownMoA, localPorts: [7540, 7541],
                                                           outboundMap: 3, inboundMap: 4, counterMap: 5)

    func machine() -> Interpreter {
        var m = Interpreter()
        m.maps[3] = [TranslationPrograms.key(Self.peerHoA):
                        TranslationPrograms.OutboundValue(mobile: Self.peerMoA, nextHop: Self.gateway, interfaceIndex: 9).bytes]
        m.maps[4] = [TranslationPrograms.key(Self.peerMoA): TranslationPrograms.key(Self.peerHoA)]
        m.maps[5] = [[0, 0, 0, 0]: [UInt8](repeating: 0, count: TranslationPrograms.counterValueSize), [1, 0, 0, 0]: [UInt8](repeating: 0, count: TranslationPrograms.counterValueSize)]
        return m
    }

    func counter(_ m: Interpreter, _ index: UInt8) -> UInt8 { m.maps[5]![[index, 0, 0, 0]]![0] }

    @Test func anOutboundUDPPacketGoesToThePeersMoAWithValidChecksums() throws {
        var m = machine()
        m.packet = Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: 17, payload: Packet.udp(1234, 5201, [1, 2, 3, 4, 5]))
        let verdict = try m.run(try TranslationPrograms.outbound(Self.parameters))
        #expect(verdict == 7)
        // A link header in front, the kernel's zeros (unicast), for bpf_redirect_neigh to take off again.
        #expect(m.packet.prefix(14).allSatisfy { $0 == 0 })
        // The per-packet work (docs/benchmarks.md, "Where the BPF datapath's time goes"): one
        // checksum difference for both fixes, no write into the pushed header.
        #expect(m.calls == [.mapLookupElement, .checksumDifference, .l4ChecksumReplace, .l3ChecksumReplace, .skbStoreBytes,
                            .mapLookupElement, .skbChangeHead, .redirectNeighbour])
        #expect(Packet.address(m.packet, at: 14 + 12) == Self.ownMoA)
        #expect(Packet.address(m.packet, at: 14 + 16) == Self.peerMoA)
        #expect(Packet.headerChecksumValid(m.packet, at: 14))
        #expect(Packet.transportChecksumValid(m.packet, at: 14))
        #expect(m.redirected?.interface == 9)
        #expect(m.redirected?.nextHop == TranslationPrograms.key(Self.gateway))
        #expect(counter(m, 0) == 1)
        // The counter's bytes: the packet as the program counted it (20 + 8 + 5, before the link header).
        #expect(m.maps[5]![[0, 0, 0, 0]]![8] == 33)
    }

    @Test func anOutboundTCPPacketAndAnEchoRequestAreRewrittenToo() throws {
        for (proto, payload) in [(UInt8(6), Packet.tcp(40000, 80)), (1, Packet.echo(type: 8))] {
            var m = machine()
            m.packet = Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: proto, payload: payload)
            #expect(try m.run(try TranslationPrograms.outbound(Self.parameters)) == 7)
            #expect(Packet.address(m.packet, at: 14 + 16) == Self.peerMoA)
            #expect(Packet.headerChecksumValid(m.packet, at: 14))
            #expect(Packet.transportChecksumValid(m.packet, at: 14), "protocol \(proto)")
        }
    }

    @Test func aUDPPacketWithoutChecksumKeepsNone() throws {
        var m = machine()
        var packet = Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: 17, payload: Packet.udp(1, 2, [9]))
        packet[26] = 0
        packet[27] = 0
        m.packet = packet
        #expect(try m.run(try TranslationPrograms.outbound(Self.parameters)) == 7)
        #expect(m.packet[14 + 26] == 0 && m.packet[14 + 27] == 0)
        #expect(Packet.headerChecksumValid(m.packet, at: 14))
    }

    @Test func outboundPacketsTheProgramCannotRewriteAreLeftAlone() throws {
        let cases: [(String, [UInt8])] = [
            ("unknown peer", Packet.ipv4(source: Self.ownHoA, destination: 0xC633_6499, protocol: 17, payload: Packet.udp(1, 2, []))),
            ("another source", Packet.ipv4(source: Self.ownMoA, destination: Self.peerHoA, protocol: 17, payload: Packet.udp(1, 2, []))),
            ("fragment", Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: 17, payload: Packet.udp(1, 2, []), fragment: 0x2000)),
            ("ICMP error", Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: 1, payload: Packet.echo(type: 3))),
            ("GRE", Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: 47, payload: [0, 0, 8, 0])),
            ("options", Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: 17, payload: Packet.udp(1, 2, []), options: true)),
            ("truncated", Array(Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: 17, payload: []).prefix(19))),
        ]
        for (name, packet) in cases {
            var m = machine()
            m.packet = packet
            #expect(try m.run(try TranslationPrograms.outbound(Self.parameters)) == TranslationPrograms.notMine, "\(name)")
            #expect(m.packet == packet, "\(name)")
            #expect(m.redirected == nil, "\(name)")
        }
        var m = machine()
        m.protocolField = 0xdd86  // IPv6
        m.packet = Packet.ipv4(source: Self.ownHoA, destination: Self.peerHoA, protocol: 17, payload: Packet.udp(1, 2, []))
        #expect(try m.run(try TranslationPrograms.outbound(Self.parameters)) == TranslationPrograms.notMine)
    }

    @Test func anInboundPacketFromThePeersMoAReachesTheHoAMarked() throws {
        for (proto, payload) in [(UInt8(17), Packet.udp(5201, 1234, [7, 7])), (6, Packet.tcp(80, 40000)), (1, Packet.echo(type: 0))] {
            var m = machine()
            m.mark = 0x5
            m.packet = Packet.ethernet + Packet.ipv4(source: Self.peerMoA, destination: Self.ownMoA, protocol: proto, payload: payload)
            #expect(try m.run(try TranslationPrograms.inbound(Self.parameters)) == TranslationPrograms.pass)
            #expect(Packet.address(m.packet, at: 14 + 12) == Self.peerHoA)
            #expect(Packet.address(m.packet, at: 14 + 16) == Self.ownHoA)
            #expect(Packet.headerChecksumValid(m.packet, at: 14))
            #expect(Packet.transportChecksumValid(m.packet, at: 14), "protocol \(proto)")
            #expect(m.mark == 0x1000_0005)
            #expect(counter(m, 1) == 1)
        }
    }

    @Test func inboundPacketsForMatdOrFromStrangersAreLeftAlone() throws {
        let cases: [(String, [UInt8])] = [
            ("signaling port", Packet.ipv4(source: Self.peerMoA, destination: Self.ownMoA, protocol: 17, payload: Packet.udp(7540, 7540, []))),
            ("encapsulation port", Packet.ipv4(source: Self.peerMoA, destination: Self.ownMoA, protocol: 17, payload: Packet.udp(7541, 7541, []))),
            ("not a peer", Packet.ipv4(source: 0xC000_0283, destination: Self.ownMoA, protocol: 17, payload: Packet.udp(1, 2, []))),
            ("not to the MoA", Packet.ipv4(source: Self.peerMoA, destination: 0xC000_020B, protocol: 17, payload: Packet.udp(1, 2, []))),
            ("fragment", Packet.ipv4(source: Self.peerMoA, destination: Self.ownMoA, protocol: 6, payload: Packet.tcp(1, 2), fragment: 0x0001)),
            ("ICMP error", Packet.ipv4(source: Self.peerMoA, destination: Self.ownMoA, protocol: 1, payload: Packet.echo(type: 11))),
            ("UDP header cut", Array(Packet.ipv4(source: Self.peerMoA, destination: Self.ownMoA, protocol: 17, payload: Packet.udp(1, 2, [])).prefix(22))),
        ]
        for (name, ip) in cases {
            var m = machine()
            m.packet = Packet.ethernet + ip
            #expect(try m.run(try TranslationPrograms.inbound(Self.parameters)) == TranslationPrograms.notMine, "\(name)")
            #expect(m.packet == Packet.ethernet + ip, "\(name)")
            #expect(m.mark == 0, "\(name)")
        }
    }
}

/// IPv4 packets with correct checksums, and their checks.
enum Packet {
    static let ethernet: [UInt8] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]

    static func ipv4(source: UInt32, destination: UInt32, protocol proto: UInt8, payload: [UInt8],
                     fragment: UInt16 = 0, options: Bool = false) -> [UInt8] {
        let headerLength = options ? 24 : 20
        let total = headerLength + payload.count
        var p: [UInt8] = [options ? 0x46 : 0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0x12, 0x34,
                          UInt8(fragment >> 8), UInt8(fragment & 0xff), 64, proto, 0, 0]
        p += TranslationPrograms.key(source) + TranslationPrograms.key(destination)
        if options { p += [1, 1, 1, 0] }
        let sum = ~fold(p)
        p[10] = UInt8(sum >> 8)
        p[11] = UInt8(sum & 0xff)
        var transport = payload
        let checksumAt: Int? = proto == 17 ? 6 : proto == 6 ? 16 : proto == 1 ? 2 : nil
        if let at = checksumAt, transport.count >= at + 2 {
            let pseudo = proto == 1 ? [] : TranslationPrograms.key(source) + TranslationPrograms.key(destination)
                + [0, proto, UInt8(transport.count >> 8), UInt8(transport.count & 0xff)]
            let sum = ~fold(pseudo + transport)
            transport[at] = UInt8(sum >> 8)
            transport[at + 1] = UInt8(sum & 0xff)
        }
        return p + transport
    }

    static func udp(_ source: UInt16, _ destination: UInt16, _ data: [UInt8]) -> [UInt8] {
        let length = 8 + data.count
        return [UInt8(source >> 8), UInt8(source & 0xff), UInt8(destination >> 8), UInt8(destination & 0xff),
                UInt8(length >> 8), UInt8(length & 0xff), 0, 0] + data
    }

    static func tcp(_ source: UInt16, _ destination: UInt16) -> [UInt8] {
        [UInt8(source >> 8), UInt8(source & 0xff), UInt8(destination >> 8), UInt8(destination & 0xff),
         0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]
    }

    static func echo(type: UInt8) -> [UInt8] { [type, 0, 0, 0, 0x12, 0x34, 0, 1, 0xab, 0xcd] }

    static func address(_ p: [UInt8], at offset: Int) -> UInt32 {
        p[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// The one's-complement sum of 16-bit words, folded.
    static func fold(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i < bytes.count {
            sum += UInt32(bytes[i]) << 8 | (i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0)
            i += 2
        }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return UInt16(sum)
    }

    static func headerChecksumValid(_ p: [UInt8], at ip: Int) -> Bool { fold(Array(p[ip..<ip + 20])) == 0xffff }

    static func transportChecksumValid(_ p: [UInt8], at ip: Int) -> Bool {
        let proto = p[ip + 9]
        let transport = Array(p[(ip + 20)...])
        let pseudo = proto == 1 ? [] : Array(p[ip + 12..<ip + 20]) + [0, proto, UInt8(transport.count >> 8), UInt8(transport.count & 0xff)]
        return fold(pseudo + transport) == 0xffff
    }
}
