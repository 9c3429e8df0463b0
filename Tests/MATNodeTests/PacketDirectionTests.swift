@testable import MATNode
import MATPacket
import Testing

/// Which way a packet read from the TUN device goes, as ``PacketProcessor/handle(_:length:checksum:)``
/// decides from its addresses alone: an application's packet from the HoA goes out, a
/// packet to the MoA from elsewhere was diverted in from the uplink, and at home
/// (MoA == HoA) the source tells them apart.
@Suite struct PacketDirectionTests {
    typealias Fixture = PacketProcessorTests
    let fixture = PacketProcessorTests()

    func handle(_ processor: inout PacketProcessor, _ packet: inout [UInt8]) -> Bool {
        let count = packet.count
        return packet.withUnsafeMutableBytes { processor.handle($0.baseAddress!, length: count, checksum: .complete) }
    }

    func atHome() throws -> PacketProcessor {
        var processor = try fixture.processor()
        processor.addresses.mobile4 = Fixture.hoaMe
        return processor
    }

    @Test func atHomeTheHoAsPacketsGoOut() throws {
        var processor = try atHome()
        var packet = fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)
        #expect(handle(&processor, &packet))
        #expect(packet == fixture.udp(Fixture.hoaMe, Fixture.moaPeer))
        #expect(processor.counters.outboundPackets == 1 && processor.counters.inboundPackets == 0)
    }

    @Test func atHomeAPeersPacketToTheHoAComesIn() throws {
        var processor = try atHome()
        var packet = fixture.udp(Fixture.moaPeer, Fixture.hoaMe)
        #expect(handle(&processor, &packet))
        #expect(packet == fixture.udp(Fixture.hoaPeer, Fixture.hoaMe))
        #expect(processor.counters.inboundPackets == 1 && processor.counters.outboundPackets == 0)
    }

    /// Diverted in from a host that is no peer: inbound, and the receive rule leaves it
    /// untranslated; it is not mistaken for an application's packet and sent out.
    @Test func aPacketToTheMoAFromANonPeerIsInboundAndRefused() throws {
        var processor = try fixture.processor()
        var packet = fixture.udp(Fixture.plainHost, Fixture.moaMe)
        let untouched = packet
        #expect(!handle(&processor, &packet))
        #expect(packet == untouched)
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unknownPeer.rawValue)] == 1)
        #expect(processor.lastMiss == nil, "no IMS lookup for what came in")
    }

    /// Neither from the HoA nor to the MoA: outbound, refused as not the HoA's.
    @Test func aPacketFromElsewhereToElsewhereIsOutboundAndRefused() throws {
        var processor = try fixture.processor()
        var packet = fixture.udp(IPv4Address(198, 51, 100, 11), Fixture.hoaPeer)
        #expect(!handle(&processor, &packet))
        #expect(processor.counters.engineDrops[Int(EngineDropReason.notFromHomeAddress.rawValue)] == 1)
    }

    /// The HoA's packet to a HoA with no mapping is outbound: it is noted for a lookup.
    @Test func anOutboundPacketWithoutAMappingAsksForOne() throws {
        var processor = try fixture.processor()
        let unknown = IPv4Address(198, 51, 100, 99)
        var packet = fixture.udp(Fixture.hoaMe, unknown)
        #expect(!handle(&processor, &packet))
        #expect(processor.lastMiss == .v4(unknown))
    }

    /// While a peer is held, only what goes to it waits; what it sends comes in, and
    /// packets to other peers go out.
    @Test func aHoldStopsOnlyTheOutboundDirectionToThatPeer() throws {
        var processor = try fixture.processor()
        let other = IPv4Address(198, 51, 100, 30), otherMoA = IPv4Address(192, 0, 2, 140)
        let added = processor.apply(.replaceMapping(PeerMapping(hoa: .v4(other), moas: [MoABinding(address: .v4(otherMoA))])))
        #expect(added == nil)
        _ = processor.apply(.hold(.v4(Fixture.hoaPeer)))
        var toHeld = fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)
        #expect(!handle(&processor, &toHeld))
        #expect(processor.lastHeld == .v4(Fixture.hoaPeer))
        var fromHeld = fixture.udp(Fixture.moaPeer, Fixture.moaMe)
        #expect(handle(&processor, &fromHeld))
        var toOther = fixture.udp(Fixture.hoaMe, other)
        #expect(handle(&processor, &toOther))
        #expect(toOther == fixture.udp(Fixture.moaMe, otherMoA))
    }
}
