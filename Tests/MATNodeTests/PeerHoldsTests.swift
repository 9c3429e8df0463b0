import MATPacket
import Testing
@testable import MATNode

/// The mover's holds (``PeerHolds``): which peers a move holds, and each way a hold ends.
@Suite struct PeerHoldsTests {
    static let homes = NodeAddresses(homes: [IPAddress("198.51.100.10")!, IPAddress("2001:db8:100::10")!])
    static let siteA4 = homes.withMobile(from: [IPAddress("192.0.2.10")!])
    static let siteA = homes.withMobile(from: ["192.0.2.10", "2001:db8:a::10"].map { IPAddress($0)! })
    static let siteB = homes.withMobile(from: ["203.0.113.10", "2001:db8:b::10"].map { IPAddress($0)! })
    static let peer4 = (hoa: IPAddress("198.51.100.20")!, moa: IPAddress("192.0.2.130")!)
    static let peer6 = (hoa: IPAddress("2001:db8:100::20")!, moa: IPAddress("2001:db8:a::130")!)

    func released(_ ending: PeerHolds.Ending) -> IPAddress? {
        if case .release(let peer) = ending.command { return peer }
        return nil
    }

    @Test func aMoveToAnotherSiteHoldsEveryPeerBeforeTheEngineMoves() {
        let concerned = PeerHolds.concerned([Self.peer4, Self.peer6], from: Self.siteA, to: Self.siteB, force: false)
        #expect(concerned.map(\.hoa) == [Self.peer4.hoa, Self.peer6.hoa])
        var holds = PeerHolds()
        let commands = holds.hold(concerned.map(\.hoa), now: 1_000)
        #expect(commands.count == 2)
        for (command, peer) in zip(commands, [Self.peer4.hoa, Self.peer6.hoa]) {
            guard case .hold(let held) = command else { Issue.record("\(command) is no hold"); continue }
            #expect(held == peer)
        }
        #expect(holds.isHeld(Self.peer4.hoa) && holds.isHeld(Self.peer6.hoa))
    }

    /// An IPv6 address that comes up after the IPv4 one holds only the IPv6 peers; a
    /// forced move (a live migration, `matctl rebind`) holds every peer of a family with a MoA.
    @Test func onlyTheFamiliesWhoseMoAChangedAreHeldUnlessForced() {
        let peers = [Self.peer4, Self.peer6]
        #expect(PeerHolds.concerned(peers, from: Self.siteA4, to: Self.siteA, force: false).map(\.hoa) == [Self.peer6.hoa])
        #expect(PeerHolds.concerned(peers, from: Self.siteA, to: Self.siteA, force: false).isEmpty)
        #expect(PeerHolds.concerned(peers, from: Self.siteA, to: Self.siteA, force: true).count == 2)
        #expect(PeerHolds.concerned(peers, from: Self.siteA4, to: Self.siteA4, force: true).map(\.hoa) == [Self.peer4.hoa],
                "no IPv6 MoA: nothing to announce to the IPv6 peers")
    }

    @Test func aSignOfLifeEndsTheHold() {
        var holds = PeerHolds()
        _ = holds.hold([Self.peer4.hoa], now: 1_000)
        let ending = holds.end(Self.peer4.hoa, .signOfLife, now: 1_031)
        #expect(released(ending) == Self.peer4.hoa)
        #expect(ending.heldFor == 31)
        #expect(!holds.isHeld(Self.peer4.hoa))
        // The acknowledgement that follows releases again (nothing left in the engine) and
        // measures nothing.
        let ack = holds.end(Self.peer4.hoa, .acknowledged, now: 1_060)
        #expect(released(ack) == Self.peer4.hoa)
        #expect(ack.heldFor == nil)
    }

    @Test func anAcknowledgementEndsTheHold() {
        var holds = PeerHolds()
        _ = holds.hold([Self.peer4.hoa, Self.peer6.hoa], now: 500)
        let ending = holds.end(Self.peer6.hoa, .acknowledged, now: 560)
        #expect(released(ending) == Self.peer6.hoa)
        #expect(ending.heldFor == 60)
        #expect(holds.isHeld(Self.peer4.hoa), "the other peer waits for its own answer")
    }

    /// The timeout: the alert's retransmissions ran out (``RetransmitSchedule``), and the
    /// traffic is let go rather than held for good.
    @Test func anUnansweredAlertEndsTheHoldAtItsTimeout() {
        var holds = PeerHolds()
        _ = holds.hold([Self.peer4.hoa], now: 0)
        let ending = holds.end(Self.peer4.hoa, .unanswered, now: 7_500)
        #expect(released(ending) == Self.peer4.hoa)
        #expect(ending.heldFor == 7_500)
        #expect(holds.since.isEmpty)
    }

    @Test func aPeerThatCannotBeAlertedIsNotHeld() {
        var holds = PeerHolds()
        _ = holds.hold([Self.peer6.hoa], now: 10)
        let ending = holds.end(Self.peer6.hoa, .notAlerted, now: 10)
        #expect(released(ending) == Self.peer6.hoa)
        #expect(ending.heldFor == 0)
    }

    /// A first contact's hold is armed elsewhere; the signaling ends it the same way.
    @Test func aHoldNotArmedByAMoveIsReleasedAllTheSame() {
        var holds = PeerHolds()
        let ending = holds.end(Self.peer4.hoa, .acknowledged, now: 100)
        #expect(released(ending) == Self.peer4.hoa)
        #expect(ending.heldFor == nil)
    }

    @Test func aSecondMoveRestartsTheClock() {
        var holds = PeerHolds()
        _ = holds.hold([Self.peer4.hoa], now: 100)
        _ = holds.hold([Self.peer4.hoa], now: 400)
        #expect(holds.end(Self.peer4.hoa, .acknowledged, now: 450).heldFor == 50)
    }
}
