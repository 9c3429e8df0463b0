@testable import MATNode
import MATPacket
import Testing

/// Packets carried in UDP encapsulation follow the TUN path's rule for a first contact's
/// MoA (``PacketProcessor/admitsCarried(from:length:)``, used by the engine's encap
/// receive path): nothing from it is delivered as the peer's before its probe is
/// answered; a moving peer's announced MoA still delivers. The same holds through a relay
/// (``PacketProcessor/admitsRelayed(_:length:from:port:relay:endpoints:)``), where the MoA
/// judged is the peer's, which the relay stands for, not the relay's address.
@Suite struct UnprovenCarriedTests {
    typealias Fixture = PacketProcessorTests
    let fixture = PacketProcessorTests()
    var moa: IPAddress { .v4(Fixture.moaPeer) }

    @Test func aFirstContactsMoADeliversNoCarriedPacketUntilItsProbeIsAnswered() throws {
        var processor = try fixture.processor()
        let unchecked = processor.admitsCarried(from: moa, length: 60)
        #expect(unchecked, "nothing under check: delivered")
        let applied = processor.apply(.limitUntilProven(moa))
        #expect(applied == nil)
        for _ in 0..<3 {
            let admitted = processor.admitsCarried(from: moa, length: 60)
            #expect(!admitted, "not the peer's before its probe is answered")
        }
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] == 3)
        #expect(processor.unvalidated[moa]?.received == 3 * 60, "what came counts for the path's allowance")
        let other = processor.admitsCarried(from: .v4(IPv4Address(203, 0, 113, 7)), length: 60)
        #expect(other, "another MoA is not affected")
        let ended = processor.apply(.endLimit(moa, validated: true))
        #expect(ended == nil)
        let afterProbe = processor.admitsCarried(from: moa, length: 60)
        #expect(afterProbe, "the probe was answered: the peer's now")
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] == 3)
    }

    @Test func aMovingPeersAnnouncedMoAStillDeliversCarriedPackets() throws {
        var processor = try fixture.processor()
        let applied = processor.apply(.limitUntilValidated(moa, received: 1184))
        #expect(applied == nil)
        let admitted = processor.admitsCarried(from: moa, length: 100)
        #expect(admitted)
        #expect(processor.unvalidated[moa]?.received == 1284)
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] == 0)
    }

    static let relay = RelayTable.Binding(address: .v4(IPv4Address(203, 0, 113, 1)), port: 7541)

    /// The peer's MoA reached in UDP (learned from its keepalive), as the relay path needs.
    var endpoints: EncapEndpoints {
        var endpoints = EncapEndpoints()
        endpoints.heard(moa, port: 40_000, now: 0)
        return endpoints
    }

    func relayed(_ processor: inout PacketProcessor, _ packet: [UInt8], from source: IPAddress = relay.address,
                 port: UInt16 = relay.port, endpoints: EncapEndpoints) -> RelayedAdmission {
        packet.withUnsafeBytes {
            processor.admitsRelayed($0.baseAddress!, length: packet.count, from: source, port: port,
                                    relay: Self.relay, endpoints: endpoints)
        }
    }

    @Test func aFirstContactsPacketsThroughTheRelayAreNotThePeersUntilItsProbeIsAnswered() throws {
        var processor = try fixture.processor()
        let packet = fixture.udp(Fixture.hoaPeer, Fixture.hoaMe)
        let endpoints = endpoints
        let unchecked = relayed(&processor, packet, endpoints: endpoints)
        #expect(unchecked == .deliver, "nothing under check: delivered")
        // The relay's address is not the MoA judged: limiting it changes nothing.
        _ = processor.apply(.limitUntilProven(Self.relay.address))
        let relayLimited = relayed(&processor, packet, endpoints: endpoints)
        #expect(relayLimited == .deliver)
        #expect(processor.unvalidated[Self.relay.address]?.received == 0)
        _ = processor.apply(.endLimit(Self.relay.address, validated: true))
        let applied = processor.apply(.limitUntilProven(moa))
        #expect(applied == nil)
        for _ in 0..<3 {
            let admission = relayed(&processor, packet, endpoints: endpoints)
            #expect(admission == .unproven, "the peer's MoA is under check: not the peer's through the relay either")
        }
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] == 3)
        #expect(processor.unvalidated[moa]?.received == UInt64(3 * packet.count),
                "what came through the relay counts for the peer's path allowance")
        let ended = processor.apply(.endLimit(moa, validated: true))
        #expect(ended == nil)
        let afterProbe = relayed(&processor, packet, endpoints: endpoints)
        #expect(afterProbe == .deliver, "the probe was answered: the peer's now")
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] == 3)
    }

    @Test func aRelayedPacketNotFromTheRelayOrForAPeerNotInUDPIsRefusedAndNotCredited() throws {
        var processor = try fixture.processor()
        let applied = processor.apply(.limitUntilProven(moa))
        #expect(applied == nil)
        let packet = fixture.udp(Fixture.hoaPeer, Fixture.hoaMe)
        let endpoints = endpoints
        let otherPort = relayed(&processor, packet, port: 7540, endpoints: endpoints)
        #expect(otherPort == .refused, "the relay's address but another port")
        let notTheRelay = relayed(&processor, packet, from: moa, endpoints: endpoints)
        #expect(notTheRelay == .refused, "not from the relay")
        let notInUDP = relayed(&processor, packet, endpoints: EncapEndpoints())
        #expect(notInUDP == .refused, "a peer this node does not reach in UDP")
        let notMine = fixture.udp(Fixture.hoaPeer, IPv4Address(198, 51, 100, 11))
        let notForUs = relayed(&processor, notMine, endpoints: endpoints)
        #expect(notForUs == .refused, "not for this node's HoA")
        let unknown = fixture.udp(IPv4Address(198, 51, 100, 99), Fixture.hoaMe)
        let unmapped = relayed(&processor, unknown, endpoints: endpoints)
        #expect(unmapped == .refused, "no mapping for the inner source HoA")
        #expect(processor.unvalidated[moa]?.received == 0, "refused before the MoA's check: nothing credited")
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] == 0)
    }
}
