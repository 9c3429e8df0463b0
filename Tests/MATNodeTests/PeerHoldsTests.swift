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

    func familyEnded(_ command: PacketProcessor.Command?) -> AddressFamily? {
        if case .releaseFamily(let family)? = command { return family }
        return nil
    }

    /// A move of the peers' families at `now` that gathers them all at once.
    func held(_ peers: [IPAddress], now: UInt64) -> PeerHolds {
        var holds = PeerHolds()
        _ = holds.move(Set(peers.map(\.family)), now: now)
        holds.join(peers)
        for family in Set(peers.map(\.family)) {
            let end = holds.gathered(family)
            #expect(end == nil, "\(family) has held peers")
        }
        return holds
    }

    /// One command per family, whatever the number of peers, before the engine takes the
    /// new MoA; the peers join as they are gathered.
    @Test func aMoveToAnotherSiteHoldsEveryFamilyWholeBeforeTheEngineMoves() {
        let families = PeerHolds.families(from: Self.siteA, to: Self.siteB, force: false)
        #expect(families == [.ipv4, .ipv6])
        var holds = PeerHolds()
        let commands = holds.move(families, now: 1_000)
        #expect(commands.count == 2)
        for (command, family) in zip(commands, [AddressFamily.ipv4, .ipv6]) {
            guard case .holdFamily(let held) = command else { Issue.record("\(command) is no family hold"); continue }
            #expect(held == family)
        }
        #expect(!holds.isHeld(Self.peer4.hoa), "not gathered yet")
        holds.join([Self.peer4.hoa, Self.peer6.hoa])
        #expect(holds.isHeld(Self.peer4.hoa) && holds.isHeld(Self.peer6.hoa))
        #expect(holds.since[Self.peer6.hoa] == 1_000, "held from the move, not from when it was gathered")
    }

    /// An IPv6 address that comes up after the IPv4 one holds only the IPv6 peers; a
    /// forced move (a live migration, `matctl rebind`) holds every peer of a family with a MoA.
    @Test func onlyTheFamiliesWhoseMoAChangedAreHeldUnlessForced() {
        #expect(PeerHolds.families(from: Self.siteA4, to: Self.siteA, force: false) == [.ipv6])
        #expect(PeerHolds.families(from: Self.siteA, to: Self.siteA, force: false).isEmpty)
        #expect(PeerHolds.families(from: Self.siteA, to: Self.siteA, force: true) == [.ipv4, .ipv6])
        #expect(PeerHolds.families(from: Self.siteA4, to: Self.siteA4, force: true) == [.ipv4],
                "no IPv6 MoA: nothing to announce to the IPv6 peers")
        var holds = PeerHolds()
        _ = holds.move([.ipv6], now: 0)
        holds.join([Self.peer4.hoa, Self.peer6.hoa])
        #expect(!holds.isHeld(Self.peer4.hoa) && holds.isHeld(Self.peer6.hoa), "a family no move holds does not join")
    }

    @Test func aSignOfLifeEndsTheHold() {
        var holds = held([Self.peer4.hoa], now: 1_000)
        let ending = holds.end(Self.peer4.hoa, .signOfLife, now: 1_031)
        #expect(released(ending) == Self.peer4.hoa)
        #expect(ending.heldFor == 31)
        #expect(!holds.isHeld(Self.peer4.hoa))
        // The acknowledgement that follows releases again (nothing left in the engine) and
        // measures nothing.
        let ack = holds.end(Self.peer4.hoa, .acknowledged, now: 1_060)
        #expect(released(ack) == Self.peer4.hoa)
        #expect(ack.heldFor == nil && ack.familyEnd == nil)
    }

    @Test func anAcknowledgementEndsTheHold() {
        var holds = held([Self.peer4.hoa, Self.peer6.hoa], now: 500)
        let ending = holds.end(Self.peer6.hoa, .acknowledged, now: 560)
        #expect(released(ending) == Self.peer6.hoa)
        #expect(ending.heldFor == 60)
        #expect(holds.isHeld(Self.peer4.hoa), "the other peer waits for its own answer")
    }

    /// The timeout: the alert's retransmissions ran out (``RetransmitSchedule``), and the
    /// traffic is let go rather than held for good.
    @Test func anUnansweredAlertEndsTheHoldAtItsTimeout() {
        var holds = held([Self.peer4.hoa], now: 0)
        let ending = holds.end(Self.peer4.hoa, .unanswered, now: 7_500)
        #expect(released(ending) == Self.peer4.hoa)
        #expect(ending.heldFor == 7_500)
        #expect(holds.since.isEmpty)
    }

    @Test func aPeerThatCannotBeAlertedIsNotHeld() {
        var holds = held([Self.peer6.hoa], now: 10)
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
        var holds = held([Self.peer4.hoa], now: 100)
        _ = holds.move([.ipv4], now: 400)
        holds.join([Self.peer4.hoa])
        let ending = holds.end(Self.peer4.hoa, .acknowledged, now: 450)
        #expect(ending.heldFor == 50)
    }

    /// The family's hold ends with the last of its peers', and not before the move has
    /// gathered them all: a peer released early leaves the others held.
    @Test func theFamilysHoldEndsWithItsLastPeerOnceAllAreGathered() {
        let other6 = IPAddress("2001:db8:100::21")!
        var holds = PeerHolds()
        _ = holds.move([.ipv6], now: 0)
        holds.join([Self.peer6.hoa])
        let early = holds.end(Self.peer6.hoa, .signOfLife, now: 5)
        #expect(early.familyEnd == nil, "the move is still gathering")
        holds.join([other6])
        let gathered = holds.gathered(.ipv6)
        #expect(gathered == nil, "one peer is still held")
        let last = holds.end(other6, .acknowledged, now: 40)
        #expect(familyEnded(last.familyEnd) == .ipv6)
        #expect(holds.families.isEmpty)
        let again = holds.end(other6, .acknowledged, now: 41)
        #expect(again.familyEnd == nil, "ended once")
    }

    /// A family with no peer to hold is released as soon as the move has gathered.
    @Test func aFamilyWithNoPeerEndsWhenGathered() {
        var holds = PeerHolds()
        _ = holds.move([.ipv4, .ipv6], now: 0)
        holds.join([Self.peer6.hoa])
        let ended = holds.gathered(.ipv4)
        #expect(familyEnded(ended) == .ipv4)
        let again = holds.gathered(.ipv4)
        #expect(again == nil, "once")
        let ipv6 = holds.gathered(.ipv6)
        #expect(ipv6 == nil)
        #expect(holds.families.keys.sorted { $0.rawValue < $1.rawValue } == [.ipv6])
    }

    /// A second move of the family while the first still holds peers: the hold lasts
    /// until the new move has gathered and every peer of either is released.
    @Test func aSecondMoveKeepsTheFamilyHeldUntilItsOwnGatheringEnds() {
        let other6 = IPAddress("2001:db8:100::21")!
        var holds = held([Self.peer6.hoa, other6], now: 0)
        _ = holds.move([.ipv6], now: 100)
        holds.join([Self.peer6.hoa])
        let first = holds.end(Self.peer6.hoa, .acknowledged, now: 130)
        #expect(first.familyEnd == nil)
        let gathered = holds.gathered(.ipv6)
        #expect(gathered == nil, "the first move's other peer is still held")
        let last = holds.end(other6, .unanswered, now: 9_400)
        #expect(familyEnded(last.familyEnd) == .ipv6)
    }
}
