import Foundation
@testable import MATNode
import MATPacket
import MATSystem
import Testing

/// The relay fallback at scale (issue 9; docs/benchmarks.md, "Scale"): which peers in UDP
/// go through the relay is followed at the cost of what changed and what came due, not a
/// look at every peer in UDP on each engine check. "before" is the walk it replaced
/// (`relayFallbackWalk`), on the same fallback in the same run. 2,000 peers by default;
/// `MAT_SCALE_BENCH_PEERS=100000` for the figures.
@Suite struct RelayFallbackScaleTests {
    /// `count` peers gone in UDP over 100 s (peer `i` at `since(i)`), every even one with a
    /// keepalive 20 s later, all settled at 100 s.
    static func fallback(_ count: Int) -> RelayFallback {
        var fallback = RelayFallback(keepaliveInterval: 15_000)
        for index in 0..<count { fallback.encapsulated(MoveScaleTests.moa(index), now: since(index, of: count)) }
        for index in stride(from: 0, to: count, by: 2) {
            fallback.heard(MoveScaleTests.moa(index), now: since(index, of: count) + 20_000)
        }
        _ = fallback.follow(now: 100_000, limit: .max)
        return fallback
    }

    static func since(_ index: Int, of count: Int) -> UInt64 { UInt64(index) * 100_000 / UInt64(count) }

    /// Checks 10 ms apart over 2 s, a few peers due in each: each check looks at those
    /// alone (the walk at every peer) and decides as the walk does.
    @Test func aCheckLooksAtThePeersDueNotEveryPeerInUDP() {
        let count = MoveScaleTests.peers
        let moas = (0..<count).map(MoveScaleTests.moa)
        var fallback = Self.fallback(count)
        var previous = fallback.relayedMoAs
        #expect(!previous.isEmpty && previous == Set(moas.filter { fallback.relayed($0, now: 100_000) }))
        let checks = 200
        var walked: [RelayFallback.Transitions] = []
        let walkStart = MonotonicClock.nanoseconds()
        for check in 0..<checks {
            walked.append(relayFallbackWalk(fallback, moas: moas, previous: &previous, now: 100_000 + UInt64(check) * 10))
        }
        let walk = Double(MonotonicClock.nanoseconds() - walkStart) / Double(checks)
        var followed: [RelayFallback.Transitions] = [], examined = 0, most = 0
        let followStart = MonotonicClock.nanoseconds()
        for check in 0..<checks {
            followed.append(fallback.follow(now: 100_000 + UInt64(check) * 10))
            examined += fallback.lastExamined
            most = max(most, fallback.lastExamined)
        }
        let follow = Double(MonotonicClock.nanoseconds() - followStart) / Double(checks)
        print(String(format: "relay-fallback-scale: peers=%d check_before_ms=%.3f check_after_ms=%.4f ratio=%.0f "
                     + "examined_per_check_mean=%.1f max=%d", count, walk / 1e6, follow / 1e6, walk / follow,
                     Double(examined) / Double(checks), most))
        #expect(followed == walked, "the same peers to the relay at the same checks")
        #expect(walked.reduce(0) { $0 + $1.relayed.count } > 0, "some peers went to the relay meanwhile")
        // Due in these 2 s: the odd peers gone in UDP 55-57 s in, and the even ones 35-37 s
        // in (their keepalive 20 s later): 2 % of them.
        let due = count * 2 / 100 + 2
        #expect(examined <= due, "the checks looked at \(examined) peers, \(due) were due")
        #expect(follow * 4 < walk, "a check costs a quarter of a walk over \(count) at most")
    }

    /// Every peer in UDP silent since the same moment: at most the limit go to the relay a
    /// check, the rest at the next ones, all in the end.
    @Test func peersDueTogetherGoToTheRelayALimitACheck() {
        var fallback = RelayFallback(keepaliveInterval: 15_000)
        let count = 5_000, limit = 1_024
        for index in 0..<count { fallback.encapsulated(MoveScaleTests.moa(index), now: 0) }
        #expect(fallback.follow(now: 0, limit: limit).isEmpty && fallback.lastExamined == count, "the changes settled whole")
        #expect(!fallback.needsFollow(now: 44_999) && fallback.nextDeadline == 45_000)
        var checks = 0
        while fallback.needsFollow(now: 45_000) {
            let changes = fallback.follow(now: 45_000, limit: limit)
            #expect(changes.relayed.count <= limit && fallback.lastExamined <= limit)
            checks += 1
        }
        #expect(checks == (count + limit - 1) / limit && fallback.relayedMoAs.count == count)
    }

    /// Random keepalives, stops, restarts and "at once" over time: the fallback, with no
    /// limit, decides at each check what the walk decides.
    @Test func theFallbackFollowsAsTheWalkOverRandomSchedules() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            var fallback = RelayFallback(keepaliveInterval: 1_000)
            var inUDP = Set<IPAddress>(), previous = Set<IPAddress>()
            var now: UInt64 = 0
            for _ in 0..<400 {
                now += UInt64.random(in: 0...300, using: &random)
                let moa = MoveScaleTests.moa(Int.random(in: 0..<40, using: &random))
                switch Int.random(in: 0..<10, using: &random) {
                case 0...2:
                    fallback.encapsulated(moa, now: now)
                    inUDP.insert(moa)
                case 3...5: fallback.heard(moa, now: now)
                case 6:
                    fallback.stopped(moa)
                    inUDP.remove(moa)
                case 7: fallback.relayAtOnce(moa, Bool.random(using: &random))
                default:
                    let walked = relayFallbackWalk(fallback, moas: inUDP, previous: &previous, now: now)
                    #expect(fallback.follow(now: now, limit: .max) == walked)
                    #expect(fallback.relayedMoAs == previous)
                }
            }
        }
    }
}
