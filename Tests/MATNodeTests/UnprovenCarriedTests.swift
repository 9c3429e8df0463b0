@testable import MATNode
import MATPacket
import Testing

/// Packets carried in UDP encapsulation follow the TUN path's rule for a first contact's
/// MoA (``PacketProcessor/admitsCarried(from:length:)``, used by the engine's encap
/// receive path): nothing from it is delivered as the peer's before its probe is
/// answered; a moving peer's announced MoA still delivers.
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
}
