import Foundation
@testable import MATNode
import MATPacket
import MATSystem
import Testing

/// A `matctl rebind` waiting for its round's acknowledgements at scale (issue 9;
/// docs/benchmarks.md, "Scale"): each turn asks about the peers settled since the last,
/// not the set of every outstanding alert built anew. "before" builds that set and
/// compares the round with it, as `finishRebinds` did, in the same run. 2,000 peers by
/// default; `MAT_SCALE_BENCH_PEERS=100000` for the figures.
@Suite struct RebindScaleTests {
    /// The round's peers settle in random order, 1 % of them a turn: the rebind is done at
    /// the turn the last one settles, as before (or the turns that count the settled in
    /// slices after it), and over the wait it asks about each peer once plus once a turn,
    /// at most ``PendingRebind/lookedAtPerTurn`` a turn.
    @Test func aRebindsTurnCostsWhatSettledNotEveryOutstandingAlert() {
        let count = MoveScaleTests.peers
        let round = Set((0..<count).map(MoveScaleTests.hoa))
        var outstanding = round
        let rebind = PendingRebind(ticket: RebindTicket(), round: round, startedAt: 0)
        var settling = Array(round).shuffled()
        let perTurn = max(1, count / 100)
        var turns = 0, asked = 0, most = 0, before: UInt64 = 0, after: UInt64 = 0
        var doneBefore: Int?, doneAfter: Int?, extraTurns = 0
        while doneBefore == nil || doneAfter == nil, turns < 1_000 {
            for _ in 0..<min(perTurn, settling.count) { outstanding.remove(settling.removeLast()) }
            turns += 1
            let walkStart = MonotonicClock.nanoseconds()
            // What finishRebinds did: `signaling.awaiting` built from the outgoing alerts.
            let awaiting = Set(outstanding.map { $0 })
            let wasDone = round.isDisjoint(with: awaiting)
            let mid = MonotonicClock.nanoseconds()
            let done = rebind.isDone(alertsWaiting: 0, registering: false, isAwaiting: { outstanding.contains($0) })
            after += MonotonicClock.nanoseconds() - mid
            before += mid - walkStart
            asked += rebind.lastExamined
            most = max(most, rebind.lastExamined)
            if wasDone && doneBefore == nil { doneBefore = turns }
            if done && doneAfter == nil { doneAfter = turns }
            if !done && rebind.hasMoreToCount && doneBefore != nil { extraTurns += 1 }
        }
        print(String(format: "rebind-scale: peers=%d turns=%d turn_before_mean_ms=%.3f turn_after_mean_ms=%.4f ratio=%.0f "
                     + "asked_per_turn_mean=%.1f max=%d", count, turns, Double(before) / Double(turns) / 1e6,
                     Double(after) / Double(turns) / 1e6, Double(before) / Double(after), Double(asked) / Double(turns), most))
        #expect(doneAfter != nil && doneAfter == doneBefore.map { $0 + extraTurns }, "done once the last peer settled")
        #expect(extraTurns <= count / PendingRebind.lookedAtPerTurn, "\(extraTurns) turns counting after the last settled")
        #expect(asked <= count + turns, "asked about \(asked) peers over \(turns) turns")
        #expect(most <= PendingRebind.lookedAtPerTurn)
        #expect(after * 4 < before, "the turns cost a quarter of building the outstanding set at most")
    }
}
