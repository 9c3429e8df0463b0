@testable import MATBPF
import Testing

/// The IPv4 programs' optional parts in ``Interpreter``: the heard map the inbound program
/// notes translated peers in, and the MoA-to-MoA guard (the uplink's flow-noting program,
/// the inbound program's checks, the outbound program's mark).
@Suite struct HeardAndGuardTests {
    typealias T = TranslationProgramsTests
    static let heard: Int32 = 6, flows: Int32 = 7, services: Int32 = 8
    static let guarded = MoAGuard(flowMap: flows, serviceMap: services)

    func parameters(heard: Bool = false, guarded: Bool = false, spacing: UInt64 = 1_000_000_000) -> TranslationPrograms.Parameters {
        var p = T.parameters
        p.heardMap = heard ? Self.heard : nil
        p.moaGuard = guarded ? Self.guarded : nil
        p.noteSpacing = spacing
        return p
    }

    func machine() -> Interpreter {
        var m = T().machine()
        m.maps[Self.heard] = [:]
        m.sizes[Self.heard] = (4, 8)
        m.maps[Self.flows] = [:]
        m.sizes[Self.flows] = (12, 8)
        m.maps[Self.services] = [:]
        m.sizes[Self.services] = (4, 4)
        return m
    }

    static func time(_ bytes: [UInt8]?) -> UInt64? { bytes.map { $0.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) } } }

    func fromPeer(_ proto: UInt8, _ payload: [UInt8]) -> [UInt8] {
        Packet.ethernet + Packet.ipv4(source: T.peerMoA, destination: T.ownMoA, protocol: proto, payload: payload)
    }

    func toPeer(_ proto: UInt8, _ payload: [UInt8], from source: UInt32 = T.ownMoA, to destination: UInt32 = T.peerMoA) -> [UInt8] {
        Packet.ethernet + Packet.ipv4(source: source, destination: destination, protocol: proto, payload: payload)
    }

    @Test func aTranslatedPacketNotesItsPeersHoAAndNothingElseDoes() throws {
        let program = try TranslationPrograms.inbound(parameters(heard: true))
        var m = machine()
        m.now = 7_000_000_123
        m.packet = fromPeer(17, Packet.udp(5201, 1234, [1]))
        #expect(try m.run(program) == TranslationPrograms.pass)
        #expect(Self.time(m.maps[Self.heard]![TranslationPrograms.key(T.peerHoA)]) == 7_000_000_123)
        #expect(m.maps[Self.heard]!.count == 1)
        for packet in [fromPeer(17, Packet.udp(7540, 7540, [])), fromPeer(1, Packet.echo(type: 3)),
                       Packet.ethernet + Packet.ipv4(source: 0xC000_0283, destination: T.ownMoA, protocol: 17, payload: Packet.udp(1, 2, []))] {
            var m = machine()
            m.packet = packet
            #expect(try m.run(program) == TranslationPrograms.notMine)
            #expect(m.maps[Self.heard]!.isEmpty)
        }
        // Without a heard map the program neither reads the clock nor writes a map.
        var plain = machine()
        plain.packet = fromPeer(17, Packet.udp(5201, 1234, [1]))
        #expect(try plain.run(try TranslationPrograms.inbound(T.parameters)) == TranslationPrograms.pass)
        #expect(!plain.calls.contains(.ktimeGetCoarseNanoseconds) && !plain.calls.contains(.mapUpdateElement))
    }

    /// A flow of 2,000 packets over 10 s (one each 5 ms) writes the heard map 10 times
    /// with a spacing of 1 s, against 2,000 times with none; the time it holds is never
    /// more than the spacing behind the last packet.
    @Test func aSteadyFlowWritesTheHeardMapOncePerSpacing() throws {
        for (spacing, expected) in [(UInt64(1_000_000_000), 10), (0, 2_000)] {
            let program = try TranslationPrograms.inbound(parameters(heard: true, spacing: spacing))
            var m = machine()
            let packet = fromPeer(17, Packet.udp(5201, 1234, [1, 2]))
            for k in 0..<2_000 {
                m.now = 1_000_000_000 + UInt64(k) * 5_000_000
                m.packet = packet
                #expect(try m.run(program) == TranslationPrograms.pass)
                let noted = Self.time(m.maps[Self.heard]![TranslationPrograms.key(T.peerHoA)])!
                #expect(noted <= m.now && m.now - noted < max(spacing, 1), "packet \(k)")
            }
            #expect(m.writes[Self.heard] == expected, "spacing \(spacing)")
        }
    }

    @Test func theUplinkNotesFlowsFromTheOwnMoAToAPeersMoA() throws {
        let program = try MoAGuard.flows(parameters(guarded: true))
        var m = machine()
        m.now = 42
        let udp = toPeer(17, Packet.udp(5000, 6000, [1]))
        m.packet = udp
        #expect(try m.run(program) == TranslationPrograms.notMine)
        #expect(m.packet == udp)
        let peer = TranslationPrograms.key(T.peerMoA)
        #expect(Self.time(m.maps[Self.flows]![MoAGuard.flowKey(peer: peer, protocol: 17, peerPort: 6000, ownPort: 5000)]) == 42)
        m.packet = toPeer(6, Packet.tcp(40000, 22))
        _ = try m.run(program)
        #expect(m.maps[Self.flows]![MoAGuard.flowKey(peer: peer, protocol: 6, peerPort: 22, ownPort: 40000)] != nil)
        m.packet = toPeer(1, Packet.echo(type: 8))          // identifier 0x1234
        _ = try m.run(program)
        #expect(m.maps[Self.flows]![MoAGuard.flowKey(peer: peer, protocol: 1, peerPort: 0, ownPort: 0x1234)] != nil)
        #expect(m.maps[Self.flows]!.count == 3)
    }

    @Test func theUplinkNotesNothingElse() throws {
        let program = try MoAGuard.flows(parameters(guarded: true))
        let cases: [(String, [UInt8], UInt32, UInt32)] = [
            ("translated HoA traffic", toPeer(17, Packet.udp(5000, 6000, [])), TranslationPrograms.translatedMark, 0),
            ("forwarded (the engine's)", toPeer(17, Packet.udp(5000, 6000, [])), 0, 4),
            ("not a peer's MoA", toPeer(17, Packet.udp(5000, 6000, []), to: 0xC000_0283), 0, 0),
            ("not from the MoA", toPeer(17, Packet.udp(5000, 6000, []), from: 0xC000_020B), 0, 0),
            ("echo reply", toPeer(1, Packet.echo(type: 0)), 0, 0),
            ("GRE", toPeer(47, [0, 0, 8, 0, 0, 0, 0, 0]), 0, 0),
            ("cut ports", Array(toPeer(17, Packet.udp(5000, 6000, [])).prefix(14 + 22)), 0, 0),
            ("matd's signaling", toPeer(17, Packet.udp(7540, 7540, [])), 0, 0),
        ]
        for (name, packet, mark, ingress) in cases {
            var m = machine()
            m.packet = packet
            m.mark = mark
            m.ingressIndex = ingress
            #expect(try m.run(program) == TranslationPrograms.notMine, "\(name)")
            #expect(m.maps[Self.flows]!.isEmpty, "\(name)")
        }
    }

    @Test func theGuardLeavesMoAToMoATrafficAloneAndTranslatesTheRest() throws {
        let noting = try MoAGuard.flows(parameters(guarded: true)), inbound = try TranslationPrograms.inbound(parameters(guarded: true))
        var m = machine()
        for packet in [toPeer(17, Packet.udp(5000, 6000, [])), toPeer(1, Packet.echo(type: 8))] {
            m.packet = packet
            _ = try m.run(noting)
        }
        m.maps[Self.services]![MoAGuard.serviceKey(protocol: 17, version: 4, port: 7000)] = [1, 0, 0, 0]
        let left: [(String, [UInt8])] = [
            ("reply of the host's UDP flow", fromPeer(17, Packet.udp(6000, 5000, [9]))),
            ("reply to the host's echo request", fromPeer(1, Packet.echo(type: 0))),
            ("UDP service bound to the MoA", fromPeer(17, Packet.udp(6001, 7000, [9]))),
        ]
        for (name, packet) in left {
            var n = m
            n.packet = packet
            #expect(try n.run(inbound) == TranslationPrograms.notMine, "\(name)")
            #expect(n.packet == packet && n.mark == 0, "\(name)")
        }
        let translated: [(String, [UInt8])] = [
            ("another port of the peer", fromPeer(17, Packet.udp(6001, 5000, [9]))),
            ("TCP to the UDP service's port", fromPeer(6, Packet.tcp(6001, 7000))),
            ("the peer's echo request", fromPeer(1, Packet.echo(type: 8))),
            ("another echo's reply", fromPeer(1, [0, 0, 0, 0, 0x43, 0x21, 0, 1])),
        ]
        for (name, packet) in translated {
            var n = m
            n.packet = packet
            #expect(try n.run(inbound) == TranslationPrograms.pass, "\(name)")
            #expect(Packet.address(n.packet, at: 14 + 16) == T.ownHoA, "\(name)")
            #expect(Packet.transportChecksumValid(n.packet, at: 14), "\(name)")
        }
        // Without the guard the same reply is translated: what the guard is for.
        var plain = m
        plain.packet = fromPeer(17, Packet.udp(6000, 5000, [9]))
        #expect(try plain.run(try TranslationPrograms.inbound(T.parameters)) == TranslationPrograms.pass)
    }

    /// With the state map, the inbound program looks the flow map up only once the uplink's
    /// program has noted a flow, and the service map only while services are bound (what
    /// the maps hold is not looked at before): the two lookups a packet of a host without
    /// MoA-to-MoA traffic saves. The noting program sets the flag with its first flow.
    @Test func theStateMapSkipsTheGuardsLookupsWhileTheirMapsHoldNothing() throws {
        let state: Int32 = 9
        var p = parameters(guarded: true)
        p.moaGuard!.stateMap = state
        let noting = try MoAGuard.flows(p), inbound = try TranslationPrograms.inbound(p)
        var m = machine()
        m.maps[state] = [[0, 0, 0, 0]: [0, 0, 0, 0], [1, 0, 0, 0]: [0, 0, 0, 0]]
        let peer = TranslationPrograms.key(T.peerMoA)
        m.maps[Self.flows]![MoAGuard.flowKey(peer: peer, protocol: 17, peerPort: 6000, ownPort: 5000)] = [UInt8](repeating: 0, count: 8)
        m.maps[Self.services]![MoAGuard.serviceKey(protocol: 17, version: 4, port: 7000)] = [1, 0, 0, 0]
        let reply = fromPeer(17, Packet.udp(6000, 5000, [9])), toService = fromPeer(17, Packet.udp(6001, 7000, [9]))
        for packet in [reply, toService] {
            var n = m
            n.packet = packet
            #expect(try n.run(inbound) == TranslationPrograms.pass)   // not looked at
        }
        m.packet = toPeer(17, Packet.udp(5000, 6000, []))
        _ = try m.run(noting)
        #expect(m.maps[state]![[0, 0, 0, 0]] == [1, 0, 0, 0])
        m.maps[state]![[1, 0, 0, 0]] = [1, 0, 0, 0]
        for packet in [reply, toService] {
            var n = m
            n.packet = packet
            #expect(try n.run(inbound) == TranslationPrograms.notMine)
            #expect(n.packet == packet)
        }
        var other = m
        other.packet = fromPeer(17, Packet.udp(6001, 5000, [9]))
        #expect(try other.run(inbound) == TranslationPrograms.pass)
    }

    /// The outbound program marks what it translates when the guard is on, so the
    /// uplink's noting program, which sees it next, does not take it for the host's flow.
    @Test func translatedOutboundTrafficIsNoFlowOfTheMoA() throws {
        var m = machine()
        m.packet = Packet.ipv4(source: T.ownHoA, destination: T.peerHoA, protocol: 17, payload: Packet.udp(1234, 5201, [1]))
        #expect(try m.run(try TranslationPrograms.outbound(parameters(guarded: true))) == 7)
        #expect(m.mark == TranslationPrograms.translatedMark)
        #expect(try m.run(try MoAGuard.flows(parameters(guarded: true))) == TranslationPrograms.notMine)
        #expect(m.maps[Self.flows]!.isEmpty)
        var plain = machine()
        plain.packet = Packet.ipv4(source: T.ownHoA, destination: T.peerHoA, protocol: 17, payload: Packet.udp(1234, 5201, [1]))
        #expect(try plain.run(try TranslationPrograms.outbound(T.parameters)) == 7)
        #expect(plain.mark == 0)
    }
}
