@testable import MATNode
import MATPacket
import Testing

/// A move's hold of a whole family in the engine (``FamilyHolds``, one command instead of
/// one per peer): which packets it drops, and how each peer's hold ends within it.
@Suite struct FamilyHoldsTests {
    typealias Fixture = PacketProcessorTests
    let fixture = PacketProcessorTests()
    static let other = IPv4Address(198, 51, 100, 21), otherMoA = IPv4Address(192, 0, 2, 131)
    static let newcomer = IPv4Address(198, 51, 100, 22), newcomerMoA = IPv4Address(192, 0, 2, 132)

    func sends(_ processor: inout PacketProcessor, to peer: IPv4Address) -> Bool {
        var packet = fixture.udp(Fixture.hoaMe, peer)
        let count = packet.count
        return packet.withUnsafeMutableBytes { processor.handle($0.baseAddress!, length: count, checksum: .complete) }
    }

    func mapping(_ hoa: IPv4Address, _ moa: IPv4Address, sequence: UInt64 = 0) -> PeerMapping {
        PeerMapping(hoa: .v4(hoa), moas: [MoABinding(address: .v4(moa))], sequence: sequence)
    }

    func processor() throws -> PacketProcessor {
        var processor = try fixture.processor()
        let added = processor.apply(.replaceMapping(mapping(Self.other, Self.otherMoA)))
        #expect(added == nil)
        return processor
    }

    var awaitingBinding: Int { Int(EngineDropReason.awaitingBinding.rawValue) }

    @Test func everyMappedPeerOfTheFamilyIsHeldUntilItsOwnRelease() throws {
        var processor = try processor()
        _ = processor.apply(.holdFamily(.ipv4))
        let r2 = sends(&processor, to: Fixture.hoaPeer)
        let r3 = sends(&processor, to: Self.other)
        #expect(!r2 && !r3)
        #expect(processor.counters.engineDrops[awaitingBinding] == 2)
        #expect(processor.lastHeld == .v4(Self.other), "kept for its release, as a held peer's")
        _ = processor.apply(.release(.v4(Fixture.hoaPeer)))
        let r4 = sends(&processor, to: Fixture.hoaPeer)
        #expect(r4, "released: its packets go")
        let r5 = sends(&processor, to: Self.other)
        #expect(!r5, "the other waits for its own answer")
        _ = processor.apply(.releaseFamily(.ipv4))
        let r6 = sends(&processor, to: Self.other)
        #expect(r6)
        #expect(processor.familyHolds.isEmpty)
    }

    /// The hold is for the family that moved, and for mapped peers: a packet to a HoA with
    /// no mapping is refused as before (and asked of the IMS), not kept as a held peer's.
    @Test func anotherFamilyAndAnUnmappedHoAAreNotHeld() throws {
        var processor = try processor()
        _ = processor.apply(.holdFamily(.ipv6))
        let r7 = sends(&processor, to: Fixture.hoaPeer)
        #expect(r7)
        _ = processor.apply(.holdFamily(.ipv4))
        let r8 = sends(&processor, to: Self.newcomer)
        #expect(!r8)
        #expect(processor.counters.engineDrops[awaitingBinding] == 0)
        #expect(processor.lastMiss == .v4(Self.newcomer))
        #expect(processor.familyHolds.families == [.ipv4, .ipv6])
    }

    /// A peer mapped after the move began was not alerted by it and is not held by it; one
    /// whose mapping went and came back (a removal before an older sequence goes in) still is.
    @Test func aPeerMappedAfterTheMoveIsNotItsButOneMappedAgainIs() throws {
        var processor = try processor()
        _ = processor.apply(.holdFamily(.ipv4))
        let r9 = processor.apply(.replaceMapping(mapping(Self.newcomer, Self.newcomerMoA)))
        #expect(r9 == nil)
        let r10 = sends(&processor, to: Self.newcomer)
        #expect(r10)
        _ = processor.apply(.removeMapping(.v4(Self.other)))
        let r11 = processor.apply(.replaceMapping(mapping(Self.other, Self.otherMoA)))
        #expect(r11 == nil)
        let r12 = sends(&processor, to: Self.other)
        #expect(!r12)
        // A mapping replaced in place (a peer's move) changes nothing either.
        let moved = processor.apply(.replaceMapping(mapping(Fixture.hoaPeer, IPv4Address(192, 0, 2, 140), sequence: 5)))
        #expect(moved == nil)
        let r13 = sends(&processor, to: Fixture.hoaPeer)
        #expect(!r13)
    }

    /// A second move holds every peer again, those released after the first too.
    @Test func aSecondMoveHoldsTheReleasedPeersAgain() throws {
        var processor = try processor()
        _ = processor.apply(.holdFamily(.ipv4))
        _ = processor.apply(.release(.v4(Self.other)))
        let r14 = sends(&processor, to: Self.other)
        #expect(r14)
        _ = processor.apply(.holdFamily(.ipv4))
        let r15 = sends(&processor, to: Self.other)
        #expect(!r15)
    }

    /// A first contact's own hold (per peer) stands within a family's hold, and its
    /// release ends both.
    @Test func aPeersOwnHoldAndTheFamilysEndWithItsRelease() throws {
        var processor = try processor()
        _ = processor.apply(.holdFamily(.ipv4))
        _ = processor.apply(.replaceMapping(mapping(Self.newcomer, Self.newcomerMoA)))
        _ = processor.apply(.hold(.v4(Self.newcomer)))
        let r16 = sends(&processor, to: Self.newcomer)
        #expect(!r16)
        _ = processor.apply(.release(.v4(Self.newcomer)))
        let r17 = sends(&processor, to: Self.newcomer)
        #expect(r17)
    }

    /// In UDP encapsulation a family-held peer's packet is left to the translation, which
    /// holds it, as a held peer's.
    @Test func anEncapsulatedPacketOfAHeldFamilyIsNotSentAround() throws {
        var processor = try processor()
        let packet = fixture.udp(Fixture.hoaMe, Self.other)
        let before = packet.withUnsafeBytes { processor.encapsulationDestination($0.baseAddress!, length: packet.count) }
        #expect(before == .v4(Self.otherMoA))
        _ = processor.apply(.holdFamily(.ipv4))
        let held = packet.withUnsafeBytes { processor.encapsulationDestination($0.baseAddress!, length: packet.count) }
        #expect(held == nil)
        _ = processor.apply(.release(.v4(Self.other)))
        let released = packet.withUnsafeBytes { processor.encapsulationDestination($0.baseAddress!, length: packet.count) }
        #expect(released == .v4(Self.otherMoA))
    }
}
