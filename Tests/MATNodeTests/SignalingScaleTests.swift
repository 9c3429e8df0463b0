import Foundation
@testable import MATNode
import MATPacket
import MATSystem
import Testing

/// A move's alerts awaiting their acknowledgement at scale: a tick of the signaling costs
/// the alerts due, not a walk over every outstanding one (issue 9; docs/benchmarks.md,
/// "Scale"). 2,000 peers by default; `MAT_SCALE_BENCH_PEERS=100000` for the figures.
@Suite struct SignalingScaleTests {
    /// A machine with one alert out to each of `count` IPv6 peers, sent 1 ms apart from 0
    /// (so their resends spread over the schedule).
    static func machine(alerting count: Int) -> (SignalingMachine, FakeSignalingEnvironment) {
        var (machine, environment) = SignalingFixture.machine()
        environment.nodeAddresses = MoveScaleTests.after
        for index in 0..<count {
            _ = machine.announce(to: MoveScaleTests.hoa(index), at: MoveScaleTests.moa(index),
                                 now: UInt64(index % 1_000), environment: environment)
        }
        return (machine, environment)
    }

    /// The tick with few alerts due against the walk it replaced, on the same outstanding
    /// alerts, and every alert's whole schedule through ticks 10 ms apart: each sent six
    /// times and given up once, as before.
    @Test func aTickCostsTheAlertsDueNotEveryOutstandingOne() throws {
        let count = MoveScaleTests.peers
        var (machine, environment) = Self.machine(alerting: count)
        #expect(machine.outgoing.count == count)
        // At 1,000 ms the first resends (200 ms after each send) are all done but those of
        // the sends 0.6 s in are not due yet: ticks 1 ms apart find a peer or none due.
        _ = machine.tick(now: 1_000, environment: environment)
        let turns = 200
        var walked = 0
        let walkStart = MonotonicClock.nanoseconds()
        for turn in 0..<turns { walked += signalingTickWalk(machine.outgoing, now: 1_000 + UInt64(turn)).resend }
        let walk = Double(MonotonicClock.nanoseconds() - walkStart) / Double(turns)
        var sent = 0
        let tickStart = MonotonicClock.nanoseconds()
        for turn in 0..<turns { sent += machine.tick(now: 1_000 + UInt64(turn), environment: environment).count }
        let tick = Double(MonotonicClock.nanoseconds() - tickStart) / Double(turns)
        print(String(format: "signaling-scale: peers=%d tick_before_ms=%.3f tick_after_ms=%.4f ratio=%.0f",
                     count, walk / 1e6, tick / 1e6, walk / tick))
        #expect(sent > 0 && sent <= walked, "the ticks resent what was due (\(sent)), no more than the walk found due")
        #expect(tick * 4 < walk, "a tick with few alerts due costs a quarter of a walk over \(count) at most")

        // The rest of every schedule: 6 sends each, 5 of them resends, then given up, ten
        // warnings logged and one line for the rest once their 10 s are over.
        var now: UInt64 = 1_200
        var logged: [String] = [], firstGivenUp: UInt64?
        let collect = { (actions: [SignalingAction]) in
            for case .log(_, let line) in actions { logged.append(line) }
        }
        while !machine.outgoing.isEmpty, let next = machine.nextEventAt, now < 20_000 {
            now = max(now + 10, next)
            collect(machine.tick(now: now, environment: environment))
            if firstGivenUp == nil && machine.counters.updatesUnanswered > 0 { firstGivenUp = now }
        }
        #expect(machine.outgoing.isEmpty)
        #expect(machine.counters.updatesSent == UInt64(count))
        #expect(machine.counters.updatesRetransmitted == UInt64(5 * count))
        #expect(machine.counters.updatesUnanswered == UInt64(count))
        #expect(now >= 9_400 && now < 9_400 + 1_000 + 20, "given up 9.4 s after each first send (at \(now))")
        let summaryAt = try #require(machine.nextEventAt)
        #expect(summaryAt == (firstGivenUp ?? 0) + 10_000, "the summary when the first give-up's 10 s are over")
        collect(machine.tick(now: summaryAt, environment: environment))
        #expect(machine.nextEventAt == nil)
        #expect(logged.filter { $0.contains("did not acknowledge update seq") }.count == 10, "ten warnings, not \(count)")
        #expect(logged.last == "matd: and \(count - 10) more peer(s) did not acknowledge their update "
            + "(10 logged per 10 s; all counted in updates_unanswered)")
        #expect(logged.count == 11)
    }

    /// Ten lines a window, the rest counted; their number once the window is over, and a
    /// line after that opens the next window.
    @Test func aLineOncePerPeerIsLoggedTenTimesAWindowAndSummarised() {
        var limit = PerPeerLogLimit(perWindow: 10, window: 10_000)
        let first = (0..<1_000).map { limit.admit(now: UInt64($0)) }
        #expect(first.filter(\.write).count == 10 && first.allSatisfy { $0.summary == nil })
        #expect(limit.summaryDueAt == 10_000 && limit.takeSummary(now: 9_999) == nil)
        #expect(limit.takeSummary(now: 10_000) == 990 && limit.summaryDueAt == nil)
        #expect(limit.takeSummary(now: 30_000) == nil, "told once")
        let opening = limit.admit(now: 30_000)
        #expect(opening.write && opening.summary == nil, "a new window")
        for at in 30_001..<30_020 { _ = limit.admit(now: UInt64(at)) }
        let next = limit.admit(now: 40_000)
        #expect(next.write && next.summary == 10, "the window's summary comes before the next line")
    }

    /// Given-up alerts kept for a renumbering: at most the limit, the oldest dropped first,
    /// none past the window, and a peer alerted again forgotten.
    @Test func givenUpAlertsKeepTheNewestWithinTheirWindowAndLimit() {
        var kept = GivenUpAlerts()
        let moa = IPAddress("2001:db8:a::1")!
        for index in 0..<10 {
            kept.remember(MoveScaleTests.hoa(index), destination: moa, sequence: UInt64(index), now: UInt64(index),
                          window: 100, limit: 4)
        }
        #expect(Set(kept.entries.keys) == Set((6..<10).map(MoveScaleTests.hoa)), "the four newest")
        kept.forget(MoveScaleTests.hoa(9))
        kept.remember(MoveScaleTests.hoa(20), destination: moa, sequence: 20, now: 50, window: 100, limit: 4)
        #expect(Set(kept.entries.keys) == Set([6, 7, 8, 20].map(MoveScaleTests.hoa)), "room left by the forgotten one")
        kept.remember(MoveScaleTests.hoa(21), destination: moa, sequence: 21, now: 108, window: 100, limit: 4)
        #expect(Set(kept.entries.keys) == Set([8, 20, 21].map(MoveScaleTests.hoa)), "those given up over 100 ms before gone")
        kept.remember(MoveScaleTests.hoa(20), destination: moa, sequence: 22, now: 109, window: 100, limit: 4)
        #expect(kept.entries[MoveScaleTests.hoa(20)]?.sequence == 22 && kept.entries.count == 2, "given up again: its newest; 8 past its window")
    }

    /// 100,000 idle peers come due together (a start with restored mappings, 30 s on):
    /// once the 1,024 probe slots are taken, each further peer costs a look-up, not two
    /// walks over the outstanding probes; and which peers are probed follows their probes
    /// through expiry, answer and cancellation.
    @Test func probingManyPeersCostsNoWalkOverTheOutstandingProbes() {
        var probes = ReachabilityProbes()
        let count = 100_000
        let start = MonotonicClock.nanoseconds()
        var started = 0
        for index in 0..<count {
            let peer = MoveScaleTests.hoa(index)
            started += probes.start(peer, at: [MoveScaleTests.moa(index)], key: nil, now: 0).count
            _ = probes.isProbing(peer)
        }
        let seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        print(String(format: "signaling-scale: probes peers=%d started=%d seconds=%.3f", count, started, seconds))
        #expect(started == probes.capacity)
        #expect(seconds < 5, "\(count) peers asked for a probe took \(seconds) s (two walks of 1,024 each: about a minute)")
        #expect(probes.isProbing(MoveScaleTests.hoa(0)) && !probes.isProbing(MoveScaleTests.hoa(count - 1)))
        probes.cancel(MoveScaleTests.hoa(0))
        #expect(!probes.isProbing(MoveScaleTests.hoa(0)) && probes.outstanding.count == probes.capacity - 1)
        _ = probes.due(at: 0)
        let nonce = probes.outstanding.first { $0.value.peer == MoveScaleTests.hoa(1) }!.key
        #expect(probes.answered(nonce, by: MoveScaleTests.hoa(1), from: MoveScaleTests.moa(1)) != nil)
        #expect(!probes.isProbing(MoveScaleTests.hoa(1)) && probes.isProbing(MoveScaleTests.hoa(2)))
        var now: UInt64 = 0
        while probes.isProbing(MoveScaleTests.hoa(2)) && now < 10_000 {
            now += 100
            _ = probes.due(at: now)
            _ = probes.expired(at: now)
        }
        #expect(probes.outstanding.isEmpty && !probes.isProbing(MoveScaleTests.hoa(2)), "all expired at \(now) ms")
    }
}
