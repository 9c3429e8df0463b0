#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import Testing

/// Waiting for a command with a time limit (the `on-notify-peers` renewal's), through a
/// pidfd: no timer thread.
@Suite struct ChildProcessTests {
    @Test func aChildThatEndsInTimeIsWaitedFor() throws {
        let child = try ChildProcess.spawn(["/bin/sh", "-c", "exit 3"])
        let started = MonotonicClock.milliseconds()
        let ending = try child.wait(milliseconds: 10_000)
        #expect(ending == .exited(3))
        #expect(MonotonicClock.milliseconds() - started < 5_000, "returned when the child ended, not at the limit")
        #expect(kill(child.pid, 0) == -1 && errno == ESRCH, "and reaped")
    }

    @Test func aChildStillRunningAtTheLimitIsLeftRunningAndCanBeStopped() throws {
        let child = try ChildProcess.spawn(["/bin/sleep", "60"])
        let started = MonotonicClock.milliseconds()
        let ending = try child.wait(milliseconds: 200)
        let elapsed = MonotonicClock.milliseconds() - started
        #expect(ending == nil)
        #expect(elapsed >= 200 && elapsed < 5_000, "\(elapsed) ms")
        #expect(kill(child.pid, 0) == 0, "not waited for: its pid is still its own")
        child.terminate()
        #expect(try child.wait(milliseconds: 10_000) == .signalled(SIGTERM))
    }
}
