@testable import MATNode
import MATPacket
import Testing

/// The engine's decisions that are not translation: direction, holds, and table changes
/// the table refuses (reported back, never dropped).
@Suite struct PacketProcessorCommandTests {
    typealias Fixture = PacketProcessorTests
    let fixture = PacketProcessorTests()

    func handle(_ processor: inout PacketProcessor, _ packet: inout [UInt8]) -> Bool {
        let count = packet.count
        return packet.withUnsafeMutableBytes { processor.handle($0.baseAddress!, length: count, checksum: .complete) }
    }

    @Test func directionComesFromTheAddresses() throws {
        var processor = try fixture.processor()
        var outbound = fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)
        #expect(handle(&processor, &outbound))
        #expect(outbound == fixture.udp(Fixture.moaMe, Fixture.moaPeer))
        var inbound = fixture.udp(Fixture.moaPeer, Fixture.moaMe)
        #expect(handle(&processor, &inbound))
        #expect(inbound == fixture.udp(Fixture.hoaPeer, Fixture.hoaMe))
        #expect(processor.counters.outboundPackets == 1 && processor.counters.inboundPackets == 1)
    }

    @Test func aHeldPeersPacketsAreDroppedUntilReleased() throws {
        var processor = try fixture.processor()
        let applied = processor.apply(.hold(.v4(Fixture.hoaPeer)))
        #expect(applied == nil)
        var packet = fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)
        #expect(!handle(&processor, &packet))
        #expect(processor.counters.engineDrops[Int(EngineDropReason.awaitingBinding.rawValue)] == 1)
        // Inbound traffic from the held peer still flows: the hold is for what we send.
        var inbound = fixture.udp(Fixture.moaPeer, Fixture.moaMe)
        #expect(handle(&processor, &inbound))
        let released = processor.apply(.release(.v4(Fixture.hoaPeer)))
        #expect(released == nil)
        packet = fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)
        #expect(handle(&processor, &packet))
    }

    @Test func aMoAOfAnotherHoAIsRefusedAndReported() throws {
        var processor = try fixture.processor()
        let intruder = PeerMapping(hoa: .v4(IPv4Address(198, 51, 100, 99)), moas: [MoABinding(address: .v4(Fixture.moaPeer))])
        let refused = processor.apply(.replaceMapping(intruder))
        let refusal = try #require(refused)
        #expect(refusal.offered == intruder)
        #expect(refusal.current == nil)
        #expect(refusal.error == .moaOwnedByAnotherHoA(moa: .v4(Fixture.moaPeer), owner: .v4(Fixture.hoaPeer),
                                                       hoa: .v4(IPv4Address(198, 51, 100, 99))))
        #expect(processor.counters.refusedMappings == 1)
        #expect(processor.table.count == 1)
    }

    @Test func aStaleSequenceIsRefusedWithTheMappingKept() throws {
        var processor = try fixture.processor()
        let newer = PeerMapping(hoa: .v4(Fixture.hoaPeer), moas: [MoABinding(address: .v4(IPv4Address(192, 0, 2, 140)))],
                                sequence: 9)
        let applied = processor.apply(.replaceMapping(newer))
        #expect(applied == nil)
        let older = PeerMapping(hoa: .v4(Fixture.hoaPeer), moas: [MoABinding(address: .v4(Fixture.moaPeer))], sequence: 3)
        let refused = processor.apply(.replaceMapping(older))
        let refusal = try #require(refused)
        #expect(refusal.current == newer)
        #expect(refusal.error == .staleSequence(hoa: .v4(Fixture.hoaPeer), stored: 9, offered: 3))
        #expect(processor.table.mapping(for: .v4(Fixture.hoaPeer)) == newer)
    }
}

/// A MoA a peer announced but has not proven: at most three times what came from it goes to it.
@Suite struct PathBudgetTests {
    typealias Fixture = PacketProcessorTests
    let fixture = PacketProcessorTests()

    func handle(_ processor: inout PacketProcessor, _ packet: [UInt8]) -> Bool {
        var copy = packet
        let count = copy.count
        return copy.withUnsafeMutableBytes { processor.handle($0.baseAddress!, length: count, checksum: .complete) }
    }

    @Test func sendingWaitsForBytesFromTheMoAAndStaysWithinThreeTimesThem() throws {
        var processor = try fixture.processor()
        let moa = IPAddress.v4(Fixture.moaPeer)
        let limited = processor.apply(.limitUntilValidated(moa, received: 0))
        #expect(limited == nil)
        let flows = (0..<4).map { fixture.udp(Fixture.hoaMe, Fixture.hoaPeer, sourcePort: 5000 + UInt16($0)) }  // 32 bytes each
        #expect(!handle(&processor, flows[0]), "nothing received yet: nothing may go")
        #expect(processor.counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] == 1)
        // The engine keeps the refused packet for the moment the MoA answers.
        #expect(processor.lastLimited == PacketProcessor.LimitedPacket(peer: .v4(Fixture.hoaPeer), moa: moa))
        processor.lastLimited = nil
        #expect(handle(&processor, fixture.udp(Fixture.moaPeer, Fixture.moaMe)))   // 32 bytes in
        for flow in flows.prefix(3) { #expect(handle(&processor, flow)) }          // 96 bytes out
        #expect(!handle(&processor, flows[3]), "a fourth would pass three times what came in")
        #expect(processor.lastLimited?.moa == moa)
        #expect(processor.unvalidated[moa]?.received == 32)
        #expect(processor.unvalidated[moa]?.sent == 96)
        let ended = processor.apply(.endLimit(moa, validated: true))
        #expect(ended == nil)
        for _ in 0..<10 { #expect(handle(&processor, flows[0])) }
    }

    /// A bulk connection's ACKs in the round trip of the check cannot take it all: a probe
    /// (or a ping, or another connection) still gets through.
    @Test func noFlowSpendsMoreThanHalfOfTheAllowance() throws {
        var processor = try fixture.processor()
        let moa = IPAddress.v4(Fixture.moaPeer)
        let limited = processor.apply(.limitUntilValidated(moa, received: 1184))     // 3552 bytes may go
        #expect(limited == nil)
        let bulk = fixture.udp(Fixture.hoaMe, Fixture.hoaPeer, sourcePort: 6000)
        var bulkSent = 0
        while handle(&processor, bulk) { bulkSent += 1 }
        #expect(bulkSent == 1776 / 32)
        let probe = fixture.udp(Fixture.hoaMe, Fixture.hoaPeer, sourcePort: 6001)
        for _ in 0..<5 { #expect(handle(&processor, probe)) }
        #expect(!handle(&processor, bulk), "the bulk flow stays at its half")
        #expect(processor.unvalidated[moa]?.sent == UInt64(bulkSent + 5) * 32)
    }

    /// Flows past the tracked ones share one account, which also gets at most half.
    @Test func untrackedFlowsShareOneHalf() throws {
        var processor = try fixture.processor()
        let moa = IPAddress.v4(Fixture.moaPeer)
        let limited = processor.apply(.limitUntilValidated(moa, received: 100_000))
        #expect(limited == nil)
        let tracked = PacketProcessor.PathBudget.trackedFlows
        for port in 0..<tracked { #expect(handle(&processor, fixture.udp(Fixture.hoaMe, Fixture.hoaPeer, sourcePort: UInt16(port)))) }
        var untrackedSent = 0
        while handle(&processor, fixture.udp(Fixture.hoaMe, Fixture.hoaPeer, sourcePort: UInt16(tracked + untrackedSent))) {
            untrackedSent += 1
        }
        #expect(untrackedSent == 150_000 / 32)
        #expect(processor.unvalidated[moa]?.sent == UInt64(tracked + untrackedSent) * 32)
    }

    @Test func theAnnouncingUpdateCountsAsReceived() throws {
        var processor = try fixture.processor()
        let limited = processor.apply(.limitUntilValidated(.v4(Fixture.moaPeer), received: 40))
        #expect(limited == nil)
        let flows = (0..<4).map { fixture.udp(Fixture.hoaMe, Fixture.hoaPeer, sourcePort: 5000 + UInt16($0)) }  // 120 bytes allowed
        for flow in flows.prefix(3) { #expect(handle(&processor, flow)) }
        #expect(!handle(&processor, flows[3]))
    }

    @Test func otherPeersAreNotLimited() throws {
        var processor = try fixture.processor()
        let limited = processor.apply(.limitUntilValidated(.v4(IPv4Address(203, 0, 113, 7)), received: 0))
        #expect(limited == nil)
        #expect(handle(&processor, fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)))
    }
}
