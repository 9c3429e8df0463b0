import MATNode
import MATPacket
import Testing

/// The UDP encapsulation's direction and hold decisions (``PacketProcessor/encapsulationDestination(_:length:)``,
/// ``PacketProcessor/carriedPeerMoA(_:length:)``): which application packets go in UDP and
/// where, and which carried packets are the peer's.
@Suite struct PacketProcessorEncapTests {
    typealias Fixture = PacketProcessorTests
    let fixture = PacketProcessorTests()
    static let hoaMe6 = IPv6Address("2001:db8:100::10")!, hoaPeer6 = IPv6Address("2001:db8:100::20")!
    static let moaPeer6 = IPv6Address("2001:db8:c::20")!

    func processor6() throws -> PacketProcessor {
        var table = MappingTable(hashSeed: 1)
        try table.insert(PeerMapping(hoa: .v6(Self.hoaPeer6), moas: [MoABinding(address: .v6(Self.moaPeer6))]))
        return PacketProcessor(table: table, addresses: NodeAddresses(home6: Self.hoaMe6))
    }

    /// A bare IPv6 header (payload length 0, no next header), enough for the decisions.
    func ipv6(_ source: IPv6Address, _ destination: IPv6Address) -> [UInt8] {
        [0x60, 0, 0, 0, 0, 0, 59, 64] + source.bytes + destination.bytes
    }

    func destination(_ processor: borrowing PacketProcessor, _ packet: [UInt8]) -> IPAddress? {
        packet.withUnsafeBytes { processor.encapsulationDestination($0.baseAddress!, length: packet.count) }
    }

    func peerMoA(_ processor: borrowing PacketProcessor, _ packet: [UInt8]) -> IPAddress? {
        packet.withUnsafeBytes { processor.carriedPeerMoA($0.baseAddress!, length: packet.count) }
    }

    @Test func aPacketFromOurHoAToAMappedPeerGoesToItsMoA() throws {
        let processor = try fixture.processor()
        #expect(destination(processor, fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)) == .v4(Fixture.moaPeer))
        let six = try processor6()
        #expect(destination(six, ipv6(Self.hoaMe6, Self.hoaPeer6)) == .v6(Self.moaPeer6))
    }

    @Test func anythingElseIsLeftToTheTranslation() throws {
        let processor = try fixture.processor()
        #expect(destination(processor, fixture.udp(Fixture.moaMe, Fixture.hoaPeer)) == nil, "not from our HoA")
        #expect(destination(processor, fixture.udp(Fixture.hoaMe, Fixture.plainHost)) == nil, "no mapping")
        #expect(destination(processor, Array(fixture.udp(Fixture.hoaMe, Fixture.hoaPeer).prefix(19))) == nil, "truncated")
        let six = try processor6()
        #expect(destination(six, Array(ipv6(Self.hoaMe6, Self.hoaPeer6).prefix(39))) == nil, "truncated")
        #expect(destination(six, fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)) == nil, "no IPv4 HoA")
    }

    /// A held peer's packets are left to the processor, which drops and keeps them as on
    /// the direct path; released, they go in UDP again.
    @Test func aHeldPeersPacketsDoNotGoInUDPUntilItIsReleased() throws {
        var processor = try fixture.processor()
        let held = processor.apply(.hold(.v4(Fixture.hoaPeer)))
        #expect(held == nil)
        #expect(destination(processor, fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)) == nil)
        let released = processor.apply(.release(.v4(Fixture.hoaPeer)))
        #expect(released == nil)
        #expect(destination(processor, fixture.udp(Fixture.hoaMe, Fixture.hoaPeer)) == .v4(Fixture.moaPeer))
    }

    @Test func aCarriedPacketNamesItsPeersMoAOnlyWhenItIsForOurHoA() throws {
        let processor = try fixture.processor()
        #expect(peerMoA(processor, fixture.udp(Fixture.hoaPeer, Fixture.hoaMe)) == .v4(Fixture.moaPeer))
        #expect(peerMoA(processor, fixture.udp(Fixture.hoaPeer, Fixture.moaMe)) == nil, "not for our HoA")
        #expect(peerMoA(processor, fixture.udp(Fixture.plainHost, Fixture.hoaMe)) == nil, "from no peer's HoA")
        #expect(peerMoA(processor, Array(fixture.udp(Fixture.hoaPeer, Fixture.hoaMe).prefix(19))) == nil, "truncated")
        let six = try processor6()
        #expect(peerMoA(six, ipv6(Self.hoaPeer6, Self.hoaMe6)) == .v6(Self.moaPeer6))
        #expect(peerMoA(six, ipv6(Self.hoaPeer6, Self.hoaPeer6)) == nil, "not for our HoA")
        #expect(peerMoA(six, Array(ipv6(Self.hoaPeer6, Self.hoaMe6).prefix(39))) == nil, "truncated")
    }
}
