import Foundation
@testable import MATNode
import MATPacket
import MATSystem
import Testing

/// ``ProofFreshness`` at scale (issue 9; docs/benchmarks.md, "Scale"): a step costs the
/// peers due and those probed, not a walk over every tracked peer; a mass lapse (a node
/// stopped past F with its peers restored) lapses ``ProofFreshness/lapsesPerStep`` a step.
/// "before" is the walk it replaced (`ProofFreshnessWalk`), on the same peers in the same
/// run. 2,000 peers by default; `MAT_SCALE_BENCH_PEERS=100000` for the figures.
@Suite struct ProofFreshnessScaleTests {
    static func nanoseconds(_ body: () -> Void) -> UInt64 {
        let start = MonotonicClock.nanoseconds()
        body()
        return MonotonicClock.nanoseconds() - start
    }

    /// Every proof lapses at F together; then steps 100 ms apart probe the lapsed peers as
    /// the bucket allows. Each step looks at its limit of lapses and the peers it probes
    /// (the walk at every peer, twice, and sorted them), and as many are probed.
    @Test func aMassLapseCostsAStepItsLimitNotEveryPeer() {
        let count = MoveScaleTests.peers, lifetime: UInt64 = 40_000
        var walk = ProofFreshnessWalk(lifetime: lifetime)
        var proofs = ProofFreshness(lifetime: lifetime)
        for index in 0..<count {
            _ = walk.track(MoveScaleTests.hoa(index), moas: [MoveScaleTests.moa(index)], now: 0)
            _ = proofs.track(MoveScaleTests.hoa(index), moas: [MoveScaleTests.moa(index)], now: 0)
        }
        let steps = 30
        var walkLapses = 0, walkProbes: [Int] = [], walkTimes: [UInt64] = []
        for step in 0..<steps {
            var result = ProofFreshness.Step()
            walkTimes.append(Self.nanoseconds { result = walk.step(at: lifetime + UInt64(step) * 100) })
            walkLapses += result.lapses.count
            walkProbes.append(result.probes.count)
        }
        var lapses = 0, probes: [Int] = [], probed = Set<IPAddress>(), times: [UInt64] = []
        var mostExamined = 0, lapseSteps = 0
        for step in 0..<steps {
            var result = ProofFreshness.Step()
            times.append(Self.nanoseconds { result = proofs.step(at: lifetime + UInt64(step) * 100) })
            lapses += result.lapses.count
            if !result.lapses.isEmpty { lapseSteps += 1 }
            probes.append(result.probes.count)
            probed.formUnion(result.probes)
            mostExamined = max(mostExamined, proofs.lastExamined)
        }
        // The steps once every proof has lapsed: each probes its 100 of the lapsed peers.
        let settled = lapseSteps..<steps
        let walkSettled = settled.map { walkTimes[$0] }.reduce(0, +) / UInt64(settled.count)
        let stepSettled = settled.map { times[$0] }.reduce(0, +) / UInt64(settled.count)
        print(String(format: "proof-freshness-scale: peers=%d steps=%d lapse_steps=%d longest_step_before_ms=%.3f "
                     + "longest_step_after_ms=%.3f later_step_before_ms=%.3f later_step_after_ms=%.4f ratio=%.0f most_examined=%d",
                     count, steps, lapseSteps, Double(walkTimes.max()!) / 1e6, Double(times.max()!) / 1e6,
                     Double(walkSettled) / 1e6, Double(stepSettled) / 1e6, Double(walkSettled) / Double(stepSettled),
                     mostExamined))
        #expect(lapses == count && walkLapses == count, "every proof lapsed")
        #expect(lapseSteps == (count + ProofFreshness.lapsesPerStep - 1) / ProofFreshness.lapsesPerStep)
        #expect(probes == walkProbes, "as many probed a step as the bucket allowed before")
        #expect(probed.count == probes.reduce(0, +), "each peer probed once")
        // The lapses and refresh times of a step, and the peers it probed (a second's burst
        // at most).
        let bound = ProofFreshness.lapsesPerStep + ProofFreshness.refreshesPerStep + Int(ProofFreshness.defaultRoundsPerSecond)
        #expect(mostExamined <= bound, "a step looked at \(mostExamined) peers (\(count) tracked)")
        #expect(stepSettled * 4 < walkSettled, "a later step costs a quarter of a walk over \(count) at most")
    }

    /// Random mappings, signed words, data, rounds ended or not started and peers gone,
    /// over time: with no lapse limit and a bucket that never runs dry, each step lapses
    /// and probes what the walk does.
    @Test func theStepsDecideAsTheWalkOverRandomSchedules() {
        var random = SystemRandomNumberGenerator()
        let hoas = (0..<12).map(MoveScaleTests.hoa), moas = (0..<6).map(MoveScaleTests.moa)
        for _ in 0..<30 {
            var walk = ProofFreshnessWalk(lifetime: 10_000, roundsPerSecond: 1_000_000)
            var proofs = ProofFreshness(lifetime: 10_000, roundsPerSecond: 1_000_000)
            var now: UInt64 = 0
            for _ in 0..<500 {
                now += UInt64.random(in: 0...700, using: &random)
                let hoa = hoas.randomElement(using: &random)!, moa = moas.randomElement(using: &random)!
                switch Int.random(in: 0..<12, using: &random) {
                case 0...1:
                    let mapped = moas.filter { _ in Int.random(in: 0..<3, using: &random) == 0 }
                    #expect(proofs.track(hoa, moas: mapped, now: now) == walk.track(hoa, moas: mapped, now: now))
                case 2...3: #expect(proofs.signed(hoa, from: moa, now: now) == walk.signed(hoa, from: moa, now: now))
                case 4...5:
                    proofs.dataArrived(from: hoa, now: now)
                    walk.dataArrived(from: hoa, now: now)
                case 6:
                    proofs.roundEnded(hoa)
                    walk.roundEnded(hoa)
                case 7:
                    proofs.roundNotStarted(hoa)
                    walk.roundNotStarted(hoa)
                case 8: #expect(proofs.forget(hoa) == walk.forget(hoa))
                default:
                    let step = proofs.step(at: now, lapseLimit: .max), walked = walk.step(at: now)
                    #expect(step.lapses == walked.lapses, "at \(now)")
                    #expect(Set(step.probes) == Set(walked.probes) && step.probes.count == walked.probes.count, "at \(now)")
                }
                #expect(proofs.lapsed == walk.lapsed && proofs.awaitingProbe == walk.awaitingProbe)
            }
        }
    }
}
