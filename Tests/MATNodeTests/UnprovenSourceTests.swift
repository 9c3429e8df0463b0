@testable import MATNode
import MATPacket
import Testing

/// A first contact's MoA (``PacketProcessor/Command/limitUntilProven(_:)``): the IMS names
/// it, but a dead peer's old MoA may be another host's now, so what comes from it is not
/// delivered as the peer's until the probe signed with the peer's key is answered there.
@Suite struct UnprovenSourceTests {
    typealias Fixture = PacketProcessorTests
    let fixture = PacketProcessorTests()

    func handle(_ processor: inout PacketProcessor, _ packet: [UInt8]) -> (Bool, [UInt8]) {
        var copy = packet
        let count = copy.count
        let forwarded = copy.withUnsafeMutableBytes { processor.handle($0.baseAddress!, length: count, checksum: .complete) }
        return (forwarded, copy)
    }

    @Test func packetsFromAnUnprovenMoAAreNotThePeersUntilItsProbeIsAnswered() throws {
        var processor = try fixture.processor()
        let moa = IPAddress.v4(Fixture.moaPeer)
        let applied = processor.apply(.limitUntilProven(moa))
        #expect(applied == nil)
        let inbound = fixture.udp(Fixture.moaPeer, Fixture.moaMe)
        for _ in 0..<3 {
            let (forwarded, _) = handle(&processor, inbound)
            #expect(!forwarded, "not delivered as \(Fixture.hoaPeer)'s before the probe is answered")
        }
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] == 3)
        #expect(processor.counters.inboundPackets == 0)
        #expect(processor.lastLimited == nil, "an inbound packet is not kept to be sent later")
        // What came in still counts as received: the path's limit lets three times it go.
        #expect(processor.unvalidated[moa]?.received == 3 * 32)
        let (sent, _) = handle(&processor, fixture.udp(Fixture.hoaMe, Fixture.hoaPeer))
        #expect(sent)

        let ended = processor.apply(.endLimit(moa, validated: true))
        #expect(ended == nil)
        let (forwarded, translated) = handle(&processor, inbound)
        #expect(forwarded && translated == fixture.udp(Fixture.hoaPeer, Fixture.hoaMe), "the probe was answered: the peer's now")
    }

    @Test func aMovingPeersAnnouncedMoAStillDelivers() throws {
        // A MoA a signed alert announced is limited for what goes there only: the peer
        // sends from its new address at once, and the key holder vouched for it.
        var processor = try fixture.processor()
        let applied = processor.apply(.limitUntilValidated(.v4(Fixture.moaPeer), received: 1184))
        #expect(applied == nil)
        let (forwarded, translated) = handle(&processor, fixture.udp(Fixture.moaPeer, Fixture.moaMe))
        #expect(forwarded && translated == fixture.udp(Fixture.hoaPeer, Fixture.hoaMe))
    }

    @Test func anUnprovenMoAKeepsWhatWasReceivedBeforeAndOtherMoAsDeliver() throws {
        var processor = try fixture.processor()
        let moa = IPAddress.v4(Fixture.moaPeer)
        let r1 = processor.apply(.limitUntilValidated(moa, received: 40))
        #expect(r1 == nil)
        let r2 = processor.apply(.limitUntilProven(moa))
        #expect(r2 == nil)
        #expect(processor.unvalidated[moa]?.received == 40)
        #expect(processor.unvalidated[moa]?.deliversInbound == false)
        let r3 = processor.apply(.limitUntilProven(.v4(IPv4Address(203, 0, 113, 7))))
        #expect(r3 == nil)
        let (forwarded, _) = handle(&processor, fixture.udp(Fixture.moaPeer, Fixture.moaMe))
        #expect(!forwarded)
        let r4 = processor.apply(.endLimit(moa, validated: false))
        #expect(r4 == nil)
        #expect(processor.unvalidated[moa] == nil)
    }
}
