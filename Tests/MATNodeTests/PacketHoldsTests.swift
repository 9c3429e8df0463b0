import MATPacket
import Testing
@testable import MATNode

/// Which dropped packets the engine keeps during a hold or an unvalidated path's check,
/// and which go when that ends (``PacketHolds``).
@Suite struct PacketHoldsTests {
    static let peer = IPAddress.v4(IPv4Address(198, 51, 100, 20))
    static let other = IPAddress.v4(IPv4Address(198, 51, 100, 30))
    static let moa = IPAddress("192.0.2.130")!
    static let otherMoA = IPAddress("203.0.113.7")!

    /// The flow of a UDP datagram to `peer` from source port `port`.
    func flow(_ port: UInt16, to peer: IPAddress = Self.peer) -> PacketFlow {
        guard case .v4(let destination) = peer else { fatalError("an IPv4 peer") }
        let packet: [UInt8] = [0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 198, 51, 100, 10] + destination.bytes
            + [UInt8(port >> 8), UInt8(port & 0xFF), 0x13, 0x89, 0, 8, 0, 0]
        return packet.withUnsafeBytes { PacketFlow(packet: $0.baseAddress!, length: $0.count, peer: peer) }
    }

    @Test func aHeldPeersPacketsGoWhenItIsReleasedOldestFirst() {
        var holds = PacketHolds()
        let first = holds.keep(flow(1), waitingFor: nil, length: 100)
        let second = holds.keep(flow(2), waitingFor: nil, length: 200)
        let third = holds.keep(flow(3, to: Self.other), waitingFor: nil, length: 300)
        #expect(Set([first, second, third]).count == 3)
        let released = holds.ended(by: .release(Self.peer))
        #expect(released == [first, second])
        #expect(holds.slots[second].length == 200, "the engine reads the length after the slot is freed")
        #expect(holds.count == 1, "the other peer's packet stays")
        let again = holds.ended(by: .release(Self.peer))
        #expect(again.isEmpty, "a second release sends nothing twice")
    }

    /// Right after the switch one segment per flow goes, the newest: its ACK restarts the
    /// backed-off sender, and the older ones of the flow were overtaken anyway.
    @Test func oneSegmentPerFlowIsReleasedTheNewest() {
        var holds = PacketHolds()
        let first = holds.keep(flow(1), waitingFor: nil, length: 100)
        let newer = holds.keep(flow(1), waitingFor: nil, length: 1500)
        #expect(newer == first)
        #expect(holds.count == 1)
        let released = holds.ended(by: .release(Self.peer))
        #expect(released == [first])
        #expect(holds.slots[first].length == 1500)
    }

    @Test func fullSlotsGiveWayOldestFirst() {
        var holds = PacketHolds(slotCount: 3)
        let slots = (1...3).map { holds.keep(flow(UInt16($0)), waitingFor: nil, length: 100) }
        #expect(holds.count == 3)
        let fourth = holds.keep(flow(4), waitingFor: nil, length: 100)
        #expect(fourth == slots[0], "the one kept longest ago goes")
        let fifth = holds.keep(flow(5), waitingFor: nil, length: 100)
        #expect(fifth == slots[1])
        // A flow already kept takes its own slot, even with all full.
        let renewed = holds.keep(flow(3), waitingFor: nil, length: 100)
        #expect(renewed == slots[2])
        #expect(holds.count == 3)
        let released = holds.ended(by: .release(Self.peer))
        #expect(released == [slots[0], slots[1], slots[2]], "in the order they were last kept")
    }

    @Test func aReleaseLeavesPacketsWaitingForAPathCheck() {
        var holds = PacketHolds()
        let limited = holds.keep(flow(1), waitingFor: Self.moa, length: 100)
        let held = holds.keep(flow(2), waitingFor: nil, length: 100)
        #expect(holds.ended(by: .release(Self.peer)) == [held])
        #expect(holds.ended(by: .endLimit(Self.moa, validated: true)) == [limited])
        #expect(holds.count == 0)
    }

    @Test func aValidatedMoAGetsItsPacketsAndNoOtherMoAs() {
        var holds = PacketHolds()
        let mine = holds.keep(flow(1), waitingFor: Self.moa, length: 100)
        _ = holds.keep(flow(2, to: Self.other), waitingFor: Self.otherMoA, length: 100)
        #expect(holds.ended(by: .endLimit(Self.moa, validated: true)) == [mine])
        #expect(holds.count == 1)
    }

    /// A MoA that did not answer its check gets nothing: its packets are thrown away, not
    /// sent when the mapping goes back to the old MoA (they were translated for the new one
    /// only when sent, but the flow has moved on by then).
    @Test func anUnvalidatedMoAsPacketsAreThrownAway() {
        var holds = PacketHolds()
        let dropped = holds.keep(flow(1), waitingFor: Self.moa, length: 100)
        let held = holds.keep(flow(2), waitingFor: nil, length: 100)
        #expect(holds.ended(by: .endLimit(Self.moa, validated: false)).isEmpty)
        #expect(holds.slots[dropped].flow == nil && holds.slots[dropped].waitingFor == nil)
        #expect(holds.ended(by: .endLimit(Self.moa, validated: true)).isEmpty, "nothing is left for it")
        #expect(holds.ended(by: .release(Self.peer)) == [held])
    }

    @Test func otherCommandsEndNothing() {
        var holds = PacketHolds()
        _ = holds.keep(flow(1), waitingFor: nil, length: 100)
        _ = holds.keep(flow(2), waitingFor: Self.moa, length: 100)
        for command: PacketProcessor.Command in [.hold(Self.peer), .removeMapping(Self.peer),
                                                 .limitUntilValidated(Self.moa, received: 0), .release(Self.other)] {
            #expect(holds.ended(by: command).isEmpty)
        }
        #expect(holds.count == 2)
    }
}
