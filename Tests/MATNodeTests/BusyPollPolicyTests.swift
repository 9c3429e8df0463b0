import Testing
@testable import MATNode

/// The engine's busy-poll window, with the clock (nanoseconds) in the test's hands.
@Suite struct BusyPollPolicyTests {
    @Test func anIdleEngineBlocks() {
        let policy = BusyPollPolicy(windowMicroseconds: 200)
        #expect(!policy.isSpinning(at: 0))
        #expect(!policy.isSpinning(at: 5_000_000_000))
        #expect(policy.pollTimeout(at: 5_000_000_000) == BusyPollPolicy.idleTimeoutMilliseconds)
        #expect(BusyPollPolicy.idleTimeoutMilliseconds > 0)
    }

    @Test func afterAPacketItSpinsForTheWindowThenBlocks() {
        var policy = BusyPollPolicy(windowMicroseconds: 200)
        policy.trafficSeen(at: 1_000_000)
        #expect(policy.pollTimeout(at: 1_000_000) == 0)
        #expect(policy.pollTimeout(at: 1_199_999) == 0)
        #expect(policy.pollTimeout(at: 1_200_000) == BusyPollPolicy.idleTimeoutMilliseconds)
        #expect(!policy.isSpinning(at: 9_000_000))
    }

    @Test func everyPacketRestartsTheWindow() {
        var policy = BusyPollPolicy(windowMicroseconds: 50)
        var now: UInt64 = 10_000_000
        // A packet every 40 us keeps it spinning for as long as they come.
        for _ in 0..<100 {
            policy.trafficSeen(at: now)
            now += 40_000
            #expect(policy.isSpinning(at: now))
        }
        // Then 50 us of nothing and it sleeps again.
        #expect(!policy.isSpinning(at: now + 10_000))
    }

    @Test func aZeroWindowNeverSpins() {
        var policy = BusyPollPolicy(windowMicroseconds: 0)
        policy.trafficSeen(at: 1_000)
        #expect(!policy.isSpinning(at: 1_000))
        #expect(policy.pollTimeout(at: 1_000) == BusyPollPolicy.idleTimeoutMilliseconds)
    }

    @Test func byDefaultItNeverSpins() {
        var policy = BusyPollPolicy()
        policy.trafficSeen(at: 1_000)
        #expect(!policy.isSpinning(at: 1_001))
    }

    @Test func theWindowIsCapped() {
        let policy = BusyPollPolicy(windowMicroseconds: 60_000_000)
        #expect(policy.window == BusyPollPolicy.maximumWindowMicroseconds * 1_000)
    }

    @Test func theEnvironmentSetsTheWindowOrKeepsTheDefault() {
        let standard = BusyPollPolicy.defaultWindowMicroseconds
        #expect(BusyPollPolicy.windowMicroseconds(fromEnvironment: nil) == standard)
        #expect(BusyPollPolicy.windowMicroseconds(fromEnvironment: "") == standard)
        #expect(BusyPollPolicy.windowMicroseconds(fromEnvironment: "fast") == standard)
        #expect(BusyPollPolicy.windowMicroseconds(fromEnvironment: "-5") == standard)
        #expect(BusyPollPolicy.windowMicroseconds(fromEnvironment: "0") == 0)
        #expect(BusyPollPolicy.windowMicroseconds(fromEnvironment: "50") == 50)
        #expect(BusyPollPolicy.windowMicroseconds(fromEnvironment: "99999999")
                == BusyPollPolicy.maximumWindowMicroseconds)
    }
}
