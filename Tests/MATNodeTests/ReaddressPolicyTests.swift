import Foundation
import MATConfig
import MATLinux
import MATPacket
import MATTestSupport
import Testing
@testable import MATNode

/// When a guest renews its address after live-migration announcements, with the clock in
/// the test's hands.
@Suite struct ReaddressPolicyTests {
    @Test func theFirstAnnouncementRunsAtOnceAndTheRestOfTheBurstIsDropped() {
        var policy = ReaddressPolicy()
        let first = policy.announced(on: "eth0", at: 10_000)
        #expect(first)
        // QEMU's default announcement rounds: 50 ms, then 100 ms more each.
        var runs = 0
        for offset: UInt64 in [50, 150, 300, 500, 750] where policy.announced(on: "eth0", at: 10_000 + offset) {
            runs += 1
        }
        #expect(runs == 0)
        let again = policy.finished(on: "eth0", at: 11_000)
        #expect(!again, "nothing came in past the holdoff")
    }

    @Test func theBurstIsDroppedEvenAfterTheRunEnded() {
        var policy = ReaddressPolicy()
        _ = policy.announced(on: "eth0", at: 10_000)
        _ = policy.finished(on: "eth0", at: 10_400)
        let late = policy.announced(on: "eth0", at: 10_900)
        #expect(!late, "the same migration's last rounds")
    }

    @Test func aLaterMigrationRunsAgain() {
        var policy = ReaddressPolicy()
        _ = policy.announced(on: "eth0", at: 10_000)
        _ = policy.finished(on: "eth0", at: 11_000)
        let next = policy.announced(on: "eth0", at: 10_000 + ReaddressPolicy.holdoff)
        #expect(next)
    }

    @Test func anAnnouncementDuringALongRunRunsOnceMoreWhenItEnds() {
        var policy = ReaddressPolicy()
        _ = policy.announced(on: "eth0", at: 10_000)
        let during = policy.announced(on: "eth0", at: 14_000)
        #expect(!during, "never two runs at once")
        let duringAgain = policy.announced(on: "eth0", at: 14_100)
        #expect(!duringAgain)
        let rerun = policy.finished(on: "eth0", at: 15_000)
        #expect(rerun, "the second migration gets its renewal")
        let done = policy.finished(on: "eth0", at: 16_000)
        #expect(!done, "and only one")
    }

    @Test func interfacesAreIndependent() {
        var policy = ReaddressPolicy()
        let eth0 = policy.announced(on: "eth0", at: 10_000)
        let eth1 = policy.announced(on: "eth1", at: 10_010)
        #expect(eth0 && eth1)
    }

    @Test func aRunIsStoppedAtItsStartPlusTheTimeoutAndOnlyWhileItRuns() {
        var policy = ReaddressPolicy()
        #expect(policy.deadline(of: "eth0") == nil)
        _ = policy.announced(on: "eth0", at: 10_000)
        #expect(policy.deadline(of: "eth0") == 10_000 + ReaddressPolicy.defaultTimeout)
        _ = policy.announced(on: "eth0", at: 14_000)
        #expect(policy.deadline(of: "eth0") == 10_000 + ReaddressPolicy.defaultTimeout, "a pending announcement moves no deadline")
        _ = policy.finished(on: "eth0", at: 15_000)
        #expect(policy.deadline(of: "eth0") == 15_000 + ReaddressPolicy.defaultTimeout, "the rerun's own")
        _ = policy.finished(on: "eth0", at: 16_000)
        #expect(policy.deadline(of: "eth0") == nil)
        var short = ReaddressPolicy(timeout: 300)
        _ = short.announced(on: "eth1", at: 10_000)
        #expect(short.deadline(of: "eth1") == 10_300)
    }

    @Test func aFinishWithoutARunChangesNothing() {
        var policy = ReaddressPolicy()
        let spurious = policy.finished(on: "eth0", at: 10_000)
        #expect(!spurious)
        let first = policy.announced(on: "eth0", at: 10_001)
        #expect(first)
    }
}

/// `on-notify-peers` in the configuration, and the driver running a real command.
@Suite struct ReaddresserTests {
    static let base = "[node]\nhome-address = 198.51.100.10\nuplink = eth0\ndomain-prefix = 198.51.100.0/24\n"

    @Test func theKeyIsACommandWithAnAbsolutePath() throws {
        let config = try NodeConfig(parsing: Self.base + "on-notify-peers = /usr/local/sbin/renew --quick\n")
        #expect(config.onNotifyPeers == ["/usr/local/sbin/renew", "--quick"])
        let none = try NodeConfig(parsing: Self.base)
        #expect(none.onNotifyPeers == nil)
        #expect(throws: ConfigError.self) { try NodeConfig(parsing: Self.base + "on-notify-peers = udhcpc -i\n") }
    }

    @Test func aBurstOfAnnouncementsRunsTheCommandOnceWithTheInterface() throws {
        let directory = try TemporaryDirectory(prefix: "readdress")
        defer { directory.remove() }
        let record = directory.file("runs")
        // sh -c SCRIPT NAME: the appended interface is $0.
        let wakeup = try Wakeup()
        let readdresser = try #require(Readdresser(command: ["/bin/sh", "-c", "echo \"$0\" >> \(record)"], wakeup: wakeup))
        let before = NodeAddresses(homes: [IPAddress("198.51.100.10")!]).withMobile(from: [IPAddress("192.0.2.50")!])
        for _ in 0..<5 { readdresser.announced(on: "eth0", addresses: before) }
        try waitUntil("a run of the command", seconds: 20) { access(record, F_OK) == 0 }
        // Give a wrongly started second run time to show up.
        usleep(300_000)
        let lines = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n")
        #expect(lines == ["eth0"])
        // The service hears of the end once, with the addresses of the announcement.
        var ready = pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)
        #expect(poll(&ready, 1, 10_000) == 1)
        let finished = readdresser.takeFinished()
        #expect(finished == [before])
        let again = readdresser.takeFinished()
        #expect(again.isEmpty)
        #expect(Readdresser(command: nil, wakeup: nil) == nil)
    }

    /// matd blocks SIGTERM and friends in every thread; the command must not inherit that,
    /// or it could not be stopped.
    @Test func theCommandStartsWithNoSignalBlocked() throws {
        let directory = try TemporaryDirectory(prefix: "readdress-mask")
        defer { directory.remove() }
        let record = directory.file("mask")
        var blocked = sigset_t()
        var previous = sigset_t()
        sigemptyset(&blocked)
        for number in [SIGTERM, SIGINT, SIGHUP, SIGUSR2] { sigaddset(&blocked, number) }
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let readdresser = try #require(Readdresser(command: ["/bin/sh", "-c", "grep SigBlk /proc/self/status > \(record).tmp && mv \(record).tmp \(record)"], wakeup: nil))
        readdresser.announced(on: "eth1", addresses: NodeAddresses())
        try waitUntil("the command's signal mask", seconds: 20) { access(record, F_OK) == 0 }
        let line = try String(contentsOfFile: record, encoding: .utf8)
        #expect(line.trimmingCharacters(in: .whitespacesAndNewlines) == "SigBlk:\t0000000000000000")
    }
    /// A command still running at its deadline is stopped by the thread that waits for it,
    /// and its end reported like any other.
    @Test func aCommandStillRunningAtTheTimeoutIsStoppedAndReported() throws {
        let directory = try TemporaryDirectory(prefix: "readdress-timeout")
        defer { directory.remove() }
        let record = directory.file("pid")
        let wakeup = try Wakeup()
        // exec: the SIGTERM reaches sleep itself, not a shell that would leave it behind.
        let readdresser = try #require(Readdresser(command: ["/bin/sh", "-c", "echo $$ > \(record).tmp && mv \(record).tmp \(record) && exec sleep 60"],
                                                   wakeup: wakeup, timeout: 1_000))
        let before = NodeAddresses(homes: [IPAddress("198.51.100.10")!]).withMobile(from: [IPAddress("192.0.2.50")!])
        let started = MonotonicClock.milliseconds()
        readdresser.announced(on: "eth0", addresses: before)
        var ready = pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)
        #expect(poll(&ready, 1, 10_000) == 1, "the run ended within 10 s")
        let elapsed = MonotonicClock.milliseconds() - started
        #expect(elapsed >= 1_000, "not before its timeout: \(elapsed) ms")
        #expect(readdresser.takeFinished() == [before])
        // No file: the stop came before the shell became sleep (a loaded machine), and
        // there is no sleep to look for.
        if let text = try? String(contentsOfFile: record, encoding: .utf8) {
            let pid = try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(kill(pid, 0) == -1 && errno == ESRCH, "the command was stopped and reaped")
        }
    }
}
