import Foundation
@testable import MATNode
import MATPacket
import MATSystem
import Testing

/// The UDP encapsulation's turns at scale (issue 9; docs/benchmarks.md, "Scale"): the first
/// turn after a start with every learned peer restored, and a change of behind-NAT, each
/// taken a slice a turn instead of all peers in one. "before" is the one-turn path on the
/// same types, in the same run. 2,000 peers by default; `MAT_SCALE_BENCH_PEERS=100000` for
/// the figures.
@Suite struct EncapScaleTests {
    static func milliseconds(_ nanoseconds: UInt64) -> String { String(format: "%.3f", Double(nanoseconds) / 1e6) }

    static func timed<T>(_ body: () -> T) -> (T, UInt64) {
        let start = MonotonicClock.nanoseconds()
        let value = body()
        return (value, MonotonicClock.nanoseconds() - start)
    }

    /// Every restored peer noted at once: each turn looks at one slice of them, and after
    /// the last the settled MoAs and the policy's peers are what one turn made of them.
    @Test func aStartWithManyRestoredPeersIsLookedAtASliceATurn() {
        let count = MoveScaleTests.peers, slice = MappingService.encapSlice
        let restored = Set((0..<count).map(MoveScaleTests.hoa))
        let pairs = Dictionary(uniqueKeysWithValues: (0..<count).map { (MoveScaleTests.hoa($0), MoveScaleTests.moa($0)) })
        let moaOf = { (hoa: IPAddress) -> IPAddress? in pairs[hoa] }

        var oneTurn = SettledMoAs()
        var oneTurnPolicy = EncapPolicy(setting: .auto)
        let (_, before) = Self.timed {
            let (appeared, vanished) = oneTurn.update(restored.lazy.map { (hoa: $0, moa: moaOf($0)) })
            return oneTurnPolicy.follow(appeared: appeared, vanished: vanished, now: 0)
        }

        var settled = SettledMoAs()
        var policy = EncapPolicy(setting: .auto)
        settled.note(restored)
        var turns = 0, longest: UInt64 = 0, largest = 0
        while settled.hasPending {
            let (taken, took) = Self.timed { () -> Int in
                policy.reserveCapacity(more: settled.pendingCount)
                let hoas = settled.nextSlice(slice)
                let (appeared, vanished) = settled.update(hoas.lazy.map { (hoa: $0, moa: moaOf($0)) })
                _ = policy.follow(appeared: appeared, vanished: vanished, now: UInt64(turns))
                return hoas.count
            }
            turns += 1
            longest = max(longest, took)
            largest = max(largest, taken)
        }
        print("encap-scale: peers=\(count) first_turn_before_ms=\(Self.milliseconds(before)) "
            + "first_turn_longest_after_ms=\(Self.milliseconds(longest)) turns=\(turns) slice=\(slice)")
        #expect(largest <= slice, "a turn looked at \(largest) peers")
        #expect(turns == (count + slice - 1) / slice, "\(turns) turns")
        #expect(settled.moas == oneTurn.moas && settled.moas.count == count)
        #expect((0..<count).allSatisfy { policy.mode(of: MoveScaleTests.moa($0)) == .direct })
    }

    /// This node goes behind NAT with every peer tracked (`auto`): each tick probes one
    /// slice of them, all of them once in the end, as the one call did at once.
    @Test func aChangeOfBehindNATIsDecidedASliceATick() {
        let count = MoveScaleTests.peers
        let moas = Set((0..<count).map(MoveScaleTests.moa))
        var oneCall = EncapPolicy(setting: .auto, makeNonce: { [1] })
        var policy = EncapPolicy(setting: .auto, makeNonce: { [1] })
        _ = oneCall.follow(appeared: moas, vanished: [], now: 0)
        _ = policy.follow(appeared: moas, vanished: [], now: 0)

        let (all, before) = Self.timed { oneCall.track(moas, behindNAT: true, now: 10) }
        let (restarted, restartTook) = Self.timed { policy.restart(behindNAT: true, now: 10) }
        var probed: Set<IPAddress> = [], ticks = 0, longest = restartTook, largest = 0
        while policy.isRestarting {
            let (actions, took) = Self.timed { policy.tick(now: 10) }
            let probes = actions.compactMap { action -> IPAddress? in
                if case .sendProbe(let moa, _) = action { moa } else { nil }
            }
            probed.formUnion(probes)
            ticks += 1
            longest = max(longest, took)
            largest = max(largest, probes.count)
            #expect(policy.nextDeadline == (policy.isRestarting ? 0 : 1_010))
        }
        print("encap-scale: peers=\(count) nat_change_before_ms=\(Self.milliseconds(before)) "
            + "nat_change_longest_tick_after_ms=\(Self.milliseconds(longest)) ticks=\(ticks) slice=\(policy.restartSlice)")
        #expect(restarted.isEmpty && policy.behindNAT)
        #expect(largest <= policy.restartSlice, "a tick probed \(largest) peers")
        #expect(probed == moas && all.count == count)
        #expect(moas.allSatisfy { policy.mode(of: $0) == .probing })
    }

    /// A restart in slices of 2 while peers come and go: a MoA that vanished before its
    /// slice is neither probed nor stopped again, one that came back is decided for once,
    /// and one in UDP is stopped when its slice comes.
    @Test func aRestartFollowsThePeersThatComeAndGoMeanwhile() {
        let moas = (0..<6).map(MoveScaleTests.moa)
        let counter = EncapPolicyTests.Counter()
        var policy = EncapPolicy(setting: .auto, probes: 1, restartSlice: 2, makeNonce: { [counter] in counter.next() })
        // Behind NAT from the start: the first MoA's probe goes unanswered, so it is in UDP.
        _ = policy.restart(behindNAT: true, now: 0)
        _ = policy.follow(appeared: [moas[0]], vanished: [], now: 0)
        #expect(policy.tick(now: 1_000) == [.startEncap(moas[0]), .keepalive(moas[0])])
        _ = policy.restart(behindNAT: false, now: 1_000)
        _ = policy.follow(appeared: moas[1...], vanished: [], now: 1_000)
        #expect(policy.mode(of: moas[0]) == .encapsulated, "until its slice comes")
        #expect(policy.tick(now: 1_000) == [.stopEncap(moas[0])])
        #expect(policy.mode(of: moas[0]) == .direct && !policy.isRestarting,
                "going out of NAT: the one peer in UDP went back to direct in its slice")
        _ = policy.restart(behindNAT: true, now: 2_000)
        #expect(policy.isRestarting && policy.mode(of: moas[3]) == .direct, "not decided for yet: as it was")
        _ = policy.follow(appeared: [], vanished: [moas[3]], now: 2_000)
        #expect(policy.mode(of: moas[3]) == nil)
        var probed: [IPAddress] = []
        while policy.isRestarting {
            let actions = policy.tick(now: 2_000)
            #expect(actions.count <= 2)
            for case .sendProbe(let moa, _) in actions { probed.append(moa) }
        }
        #expect(probed.sorted() == [0, 1, 2, 4, 5].map { moas[$0] }.sorted(), "each once, not the one gone")
        #expect(moas.enumerated().allSatisfy { policy.mode(of: $0.element) == ($0.offset == 3 ? nil : .probing) })
    }

    /// 100,000 MoAs in UDP, each MTU looked up at 0: a refresh once a second looks up at
    /// most its limit, the earliest first, each MoA once in 98 refreshes, and a MoA
    /// forgotten meanwhile never.
    @Test func aRefreshOfThePathMTUsLooksUpItsLimitAtMost() {
        var refresh = PathMTURefresh()
        let count = 100_000
        for index in 0..<count { refresh.lookedUp(MoveScaleTests.moa(index), now: UInt64(index % 1_000)) }
        refresh.forget(MoveScaleTests.moa(5))
        var taken: [IPAddress: Int] = [:], largest = 0, second: UInt64 = 1
        while refresh.count > 0 {
            second += 1
            let due = refresh.take(now: second * 1_000)
            largest = max(largest, due.count)
            for moa in due { taken[moa, default: 0] += 1 }
        }
        #expect(largest == PathMTURefresh.perRefresh, "a refresh looked up \(largest)")
        #expect(taken.count == count - 1 && taken.values.allSatisfy { $0 == 1 } && taken[MoveScaleTests.moa(5)] == nil)
        #expect(second - 1 == UInt64((count - 1 + PathMTURefresh.perRefresh - 1) / PathMTURefresh.perRefresh))
        // Looked up again when it came due: due a second later, not before.
        refresh.lookedUp(MoveScaleTests.moa(1), now: 500)
        #expect(refresh.take(now: 1_499).isEmpty && refresh.take(now: 1_500) == [MoveScaleTests.moa(1)])
    }

    /// Every MoA in UDP (100,000 for the figures) and a peer going in, then out again, a
    /// round at a time: the engine's turn hands the fast path and the service the one that
    /// changed, and the service's ticks apply it, where before the engine diffed its whole
    /// set (after copying it: the service held it) and the service compared two whole sets
    /// every tick while its own copy differed in storage. "before" is that way, on the same
    /// types in the same run.
    @Test func aChangeOfTheMoAsInUDPCostsWhatChanged() {
        let count = MoveScaleTests.peers, rounds = 32
        var oldEndpoints = EncapEndpoints(), endpoints = EncapEndpoints()
        for index in 0..<count {
            oldEndpoints.start(MoveScaleTests.moa(index), port: 4_500, now: 0)
            endpoints.start(MoveScaleTests.moa(index), port: 4_500, now: 0)
        }
        var oldPublished = Set(oldEndpoints.moas), oldHost = oldPublished
        var published = EncapMoAChanges(), host: Set<IPAddress> = []
        published.note(endpoints.takeChanges(), in: endpoints)
        published.take().apply(to: &host)
        var engineBefore: UInt64 = 0, engineAfter: UInt64 = 0, serviceBefore: UInt64 = 0, serviceAfter: UInt64 = 0
        for round in 0..<rounds {
            let moa = MoveScaleTests.moa(count + round / 2), starts = round % 2 == 0
            // The service decides the peer goes in UDP: its own set at once, the engine's by command.
            if starts {
                serviceBefore += Self.timed { oldHost.insert(moa) }.1
                serviceAfter += Self.timed { host.insert(moa) }.1
            }
            let (oldChanged, oldTurn) = Self.timed { () -> Set<IPAddress> in
                let before = oldPublished
                if starts { oldEndpoints.start(moa, port: 4_500, now: 0) } else { oldEndpoints.stop(moa) }
                oldPublished = Set(oldEndpoints.moas)
                return oldPublished.symmetricDifference(before)
            }
            let (changed, turn) = Self.timed { () -> Set<IPAddress> in
                if starts { endpoints.start(moa, port: 4_500, now: 0) } else { endpoints.stop(moa) }
                let changed = endpoints.takeChanges()
                published.note(changed, in: endpoints)
                return changed
            }
            engineBefore += oldTurn
            engineAfter += turn
            // The tick after the turn, and an idle one.
            for _ in 0..<2 {
                serviceBefore += Self.timed { if oldPublished != oldHost { oldHost = oldPublished } }.1
                serviceAfter += Self.timed { published.take().apply(to: &host) }.1
            }
            #expect(changed == [moa] && oldChanged == changed, "round \(round)")
            #expect(host == endpoints.moas && oldHost == oldEndpoints.moas && host == oldHost, "round \(round)")
            #expect(published.count == endpoints.moas.count)
        }
        print("encap-scale: peers=\(count) rounds=\(rounds) engine_turns_before_ms=\(Self.milliseconds(engineBefore)) "
            + "engine_turns_after_ms=\(Self.milliseconds(engineAfter)) service_ticks_before_ms=\(Self.milliseconds(serviceBefore)) "
            + "service_ticks_after_ms=\(Self.milliseconds(serviceAfter))")
        #expect(engineAfter * 4 < engineBefore, "the engine's turns cost \(engineAfter) ns, the whole-set way \(engineBefore) ns")
        #expect(serviceAfter * 4 < serviceBefore, "the service's ticks cost \(serviceAfter) ns, the whole-set way \(serviceBefore) ns")
    }

    /// Random UDP paths heard, started, stopped and expired, the engine taking the changes
    /// now and then and the service applying them later: the service's set is the engine's
    /// after each take, and the changes hold every MoA a whole-set diff would.
    @Test(arguments: [1, 2, 3, 4])
    func theServiceFollowsTheEnginesMoAsByTheirChanges(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var endpoints = EncapEndpoints(lifetime: 10_000), published = EncapMoAChanges()
        var host: Set<IPAddress> = [], lastTaken: Set<IPAddress> = []
        var now: UInt64 = 0
        for step in 0..<2_000 {
            let moa = MoveScaleTests.moa(random.below(20))
            switch random.below(6) {
            case 0, 1: endpoints.heard(moa, port: 40_000, now: now)
            case 2: endpoints.start(moa, port: 4_500, now: now)
            case 3: endpoints.stop(moa)
            default:
                now += UInt64(random.below(4_000))
                _ = endpoints.expire(now: now)
            }
            if random.below(3) == 0 {
                let changed = endpoints.takeChanges()
                #expect(endpoints.moas.symmetricDifference(lastTaken).isSubset(of: changed), "seed \(seed) step \(step)")
                lastTaken = endpoints.moas
                published.note(changed, in: endpoints)
                if random.below(2) == 0 {
                    let taken = published.take(), before = host
                    #expect(taken.apply(to: &host) == (host != before), "seed \(seed) step \(step)")
                    #expect(host == endpoints.moas && taken.count == host.count, "seed \(seed) step \(step)")
                    #expect(published.take().changed.isEmpty)
                }
            }
        }
    }
}
