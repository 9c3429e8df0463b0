@testable import MATNode
import MATPacket
import Testing

/// Which way signaling to a peer goes (``SignalRoutes``): direct first, through the relay
/// only for a peer allowed it whose direct signaling goes unanswered or whose own came
/// through the relay, and direct again after the hold.
@Suite struct SignalRoutesTests {
    let peer = IPAddress("198.51.100.20")!, other = IPAddress("198.51.100.21")!
    let wait = SignalRoutes.answerWait, hold = SignalRoutes.relayHold

    /// One decision: the route and the change it logs.
    struct Step: Equatable {
        var route: SignalRoutes.Route
        var change: SignalRoutes.Change? = nil
    }

    func step(_ routes: inout SignalRoutes, _ peer: IPAddress, wantsAnswer: Bool = true, at now: UInt64) -> Step {
        let (route, change) = routes.route(to: peer, wantsAnswer: wantsAnswer, now: now)
        return Step(route: route, change: change)
    }

    static let direct = Step(route: .direct), relay = Step(route: .relay)

    /// A peer whose record names no relay of this node's goes direct whatever happens:
    /// unanswered for long, or heard through the relay.
    @Test func aPeerNotAllowedTheRelayAlwaysGoesDirect() {
        var routes = SignalRoutes()
        let first = step(&routes, peer, at: 0), later = step(&routes, peer, at: 10 * wait)
        let heard = routes.heardThroughRelay(from: peer, now: 20 * wait)
        let after = step(&routes, peer, at: 21 * wait)
        #expect(first == Self.direct && later == Self.direct && !heard && after == Self.direct)
    }

    /// Two nodes on one relay with a working direct path: each answer keeps the signaling
    /// direct, however long the exchanges go on.
    @Test func answeredSignalingStaysDirect() {
        var routes = SignalRoutes()
        routes.allow(peer, true)
        for second in 0..<20 {
            let now = UInt64(second) * 2 * wait
            let asked = step(&routes, peer, at: now)
            let acknowledged = step(&routes, peer, wantsAnswer: false, at: now + wait / 2)
            #expect(asked == Self.direct && acknowledged == Self.direct, "at \(now)")
            routes.answered(by: peer)
        }
        #expect(!routes.routeIsRelay(peer, now: 40 * wait))
    }

    /// A probe unanswered: its retransmissions within the wait go direct, the first one
    /// after it through the relay (a first contact's third probe, at 1.5 s), and so does
    /// everything after, until the hold ends.
    @Test func directUnansweredForTheWaitGoesThroughTheRelay() {
        var routes = SignalRoutes()
        let allowed = routes.allow(peer, true), again = routes.allow(peer, true)
        #expect(allowed && !again)
        let steps = [step(&routes, peer, at: 0), step(&routes, peer, at: 500), step(&routes, peer, at: 1_500),
                     step(&routes, peer, wantsAnswer: false, at: 1_600)]
        #expect(steps == [Self.direct, Self.direct, Step(route: .relay, change: .unanswered), Self.relay])
        #expect(routes.routeIsRelay(peer, now: 1_600) && !routes.routeIsRelay(other, now: 1_600))
        // A late answer does not take it back: the relay works, direct was too slow.
        routes.answered(by: peer)
        let late = step(&routes, peer, at: 2_000)
        #expect(late == Self.relay)
        // Another peer's wait is its own.
        routes.allow(other, true)
        let others = step(&routes, other, at: 2_000)
        #expect(others == Self.direct)
    }

    /// An acknowledgement or a response wants no answer: its going unanswered moves nothing.
    @Test func whatWantsNoAnswerStartsNoWait() {
        var routes = SignalRoutes()
        routes.allow(peer, true)
        let steps = [step(&routes, peer, wantsAnswer: false, at: 0), step(&routes, peer, wantsAnswer: false, at: 10 * wait),
                     // The wait starts with the first message that wants an answer, not before.
                     step(&routes, peer, at: 10 * wait), step(&routes, peer, at: 11 * wait - 1),
                     step(&routes, peer, at: 11 * wait)]
        #expect(steps == [Self.direct, Self.direct, Self.direct, Self.direct, Step(route: .relay, change: .unanswered)])
    }

    /// A message that came through the relay sends the answers there at once, also when
    /// the peer's record (brought by the lookup of its key) comes after it.
    @Test func aPeerHeardThroughTheRelayIsAnsweredThroughIt() {
        var routes = SignalRoutes()
        let beforeRecord = routes.heardThroughRelay(from: peer, now: 0)
        routes.allow(peer, true)
        let answer = step(&routes, peer, wantsAnswer: false, at: 100)
        // Heard again while relayed: no change to log.
        let again = routes.heardThroughRelay(from: peer, now: 200)
        routes.allow(other, true)
        let otherHeard = routes.heardThroughRelay(from: other, now: 200)
        let toOther = step(&routes, other, at: 300)
        #expect(!beforeRecord && answer == Self.relay && !again && otherHeard && toOther == Self.relay)
    }

    /// After the hold with no new reason, direct is tried again (logged), and the relay
    /// taken again if it goes unanswered; a message heard through the relay renews the hold.
    @Test func afterTheHoldDirectIsTriedAgain() {
        var routes = SignalRoutes()
        routes.allow(peer, true)
        var steps = [step(&routes, peer, at: 0), step(&routes, peer, at: wait), step(&routes, peer, at: wait + hold - 1),
                     step(&routes, peer, at: wait + hold), step(&routes, peer, at: 2 * wait + hold)]
        #expect(steps == [Self.direct, Step(route: .relay, change: .unanswered), Self.relay,
                          Step(route: .direct, change: .holdEnded), Step(route: .relay, change: .unanswered)])
        routes.heardThroughRelay(from: peer, now: 3 * hold)
        steps = [step(&routes, peer, at: 4 * hold - 1), step(&routes, peer, at: 4 * hold)]
        #expect(steps == [Self.relay, Step(route: .direct, change: .holdEnded)])
    }

    /// A record that no longer names this node's relay sends the signaling direct at once.
    @Test func aPeerNoLongerAllowedGoesDirectAtOnce() {
        var routes = SignalRoutes()
        routes.allow(peer, true)
        routes.heardThroughRelay(from: peer, now: 0)
        let relayed = step(&routes, peer, at: 1)
        let taken = routes.allow(peer, false), again = routes.allow(peer, false)
        let direct = step(&routes, peer, at: 2)
        // And allowed again, it starts from direct.
        routes.allow(peer, true)
        let allowedAgain = step(&routes, peer, at: 3)
        #expect(relayed == Self.relay && taken && !again && direct == Self.direct && allowedAgain == Self.direct)
    }

    /// Bounded: senders heard through the relay whose records never come are forgotten
    /// before an allowed peer's state.
    @Test func strangersHeardThroughTheRelayAreForgottenFirst() {
        var routes = SignalRoutes(capacity: 4)
        routes.allow(peer, true)
        routes.heardThroughRelay(from: peer, now: 0)
        for index in 1...10 { routes.heardThroughRelay(from: IPAddress("198.51.100.\(100 + index)")!, now: 0) }
        #expect(routes.routeIsRelay(peer, now: 1))
    }
}
