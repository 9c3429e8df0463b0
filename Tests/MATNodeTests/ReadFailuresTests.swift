import Testing
@testable import MATNode

/// A failing TUN read (``ReadFailures``): counted, logged at most once a second, and
/// followed by a pause, so a device that keeps failing is never a silent busy loop.
@Suite struct ReadFailuresTests {
    /// The engine's loop against a device that fails every read, driven by a clock the
    /// test moves: each failure costs its pause before the next read.
    func failEveryRead(for milliseconds: UInt64, from start: UInt64 = 50_000) -> [ReadFailures.Decision] {
        var failures = ReadFailures()
        var now = start
        var decisions: [ReadFailures.Decision] = []
        while now < start + milliseconds {
            let decision = failures.failed(now: now)
            decisions.append(decision)
            now += UInt64(decision.pauseMicroseconds) / 1_000
        }
        return decisions
    }

    @Test func everyFailureIsCounted() {
        var failures = ReadFailures()
        for expected in 1...5 as ClosedRange<UInt64> {
            let decision = failures.failed(now: 7)
            #expect(decision.count == expected)
        }
        #expect(failures.count == 5)
    }

    @Test func theFirstFailureIsLoggedAtOnceEvenRightAfterBoot() {
        var failures = ReadFailures()
        let logged = [0, 999, 1_000].map { failures.failed(now: $0).log }
        #expect(logged == [true, false, true])
    }

    /// 5 s of a device failing every read: about 100 reads a second (the pause), each
    /// counted, and one log line a second, each naming the count so far.
    @Test func aDeviceThatKeepsFailingLogsOnceASecondAndPausesBetweenReads() {
        let decisions = failEveryRead(for: 5_000)
        #expect(decisions.allSatisfy { $0.pauseMicroseconds == 10_000 })
        #expect(decisions.count == 500, "a read every 10 ms, no more")
        #expect(decisions.map(\.count) == Array(1...500))
        let logged = decisions.enumerated().filter { $0.element.log }.map(\.offset)
        #expect(logged == [0, 100, 200, 300, 400], "one log line per second: \(logged)")
    }

    /// Failures that come and go: a new burst after a quiet spell is logged at once.
    @Test func aBurstAfterAQuietSecondIsLoggedAtOnce() {
        var failures = ReadFailures()
        let logged = [10_000, 10_500, 12_000].map { failures.failed(now: $0).log }
        #expect(logged == [true, false, true])
        #expect(failures.count == 3)
    }
}
