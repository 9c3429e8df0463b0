#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing

/// matd under a service manager's notification socket (systemd `Type=notify`, as the
/// shipped unit runs it): READY=1 once it carries traffic, a status line with its MoAs and
/// peers, watchdog pings while its threads turn, STOPPING=1 on SIGTERM.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct ServiceManagerLabTests {
    @Test func readyStatusWatchdogAndStoppingReachTheManager() throws {
        let lab = try Lab()
        defer { lab.close() }
        let manager = try NotifySocket(abstract: false)
        let daemon = try lab.spawn("vm", ["env", "NOTIFY_SOCKET=\(manager.name)", "WATCHDOG_USEC=1000000",
                                          LabPaths.matd, "run", "--config", lab.writeConfig("vm")])
        var messages: [String] = []
        _ = poll(seconds: 20, every: 0) {
            if let message = manager.receive() { messages.append(message) }
            return messages.filter({ $0 == "WATCHDOG=1" }).count >= 2
        }
        #expect(messages.first == "READY=1", "\(messages)")
        // READY=1 comes after the control socket answers.
        _ = try lab.matctl("vm", "status")
        #expect(messages.contains("STATUS=mobile 192.0.2.10, 2001:db8:a::10, 2 peer(s)"), "\(messages)")
        #expect(messages.filter { $0 == "WATCHDOG=1" }.count >= 2, "\(messages)\n\(daemon.stderr)")
        daemon.signal(SIGTERM)
        var last: String?
        while let message = manager.receive() { last = message }
        #expect(last == "STOPPING=1")
        #expect(daemon.wait(timeout: 15).status == 0)
    }

    /// mat-ims the same way: READY=1 once it listens, a status line, watchdog pings while
    /// it answers its own query, STOPPING=1.
    @Test func matIMSTellsTheManagerWhenItServes() throws {
        let ims = try LoopbackIMSConfig(prefix: "mat-ims-notify")
        defer { ims.remove() }
        let manager = try NotifySocket(abstract: true)
        let server = try Spawned(["env", "NOTIFY_SOCKET=\(manager.name)", "WATCHDOG_USEC=1000000", LabPaths.matIMS, "run",
                                  "--config", ims.path])
        #expect(manager.receive() == "READY=1", "\(server.stderr)")
        #expect(manager.receive() == "STATUS=serving 1 zone(s) on 127.0.0.1:\(ims.port)")
        var pings = 0
        let deadline = Date().addingTimeInterval(10)
        while pings < 3, Date() < deadline, let message = manager.receive() {
            #expect(message == "WATCHDOG=1")
            pings += 1
        }
        #expect(pings == 3, "\(server.stderr)")
        server.signal(SIGTERM)
        var last: String?
        while let message = manager.receive() { last = message }
        #expect(last == "STOPPING=1")
        #expect(server.wait(timeout: 15).status == 0)
    }

    /// With standard error on the journal (systemd sets JOURNAL_STREAM to its device and
    /// inode), every line carries its priority as `<N>`; `--log-level` drops the less
    /// severe. matd in the lab, mat-ims on loopback.
    @Test func journalLinesCarryPrioritiesAndLogLevelFilters() throws {
        let lab = try Lab()
        defer { lab.close() }
        // A shell makes the file standard error first, then names it in JOURNAL_STREAM.
        func journaled(_ log: String, _ command: [String]) -> [String] {
            ["bash", "-c", "exec 2>\"$1\"; export JOURNAL_STREAM=$(stat -c %d:%i \"$1\"); shift; exec \"$@\"", "journal", log]
                + command
        }
        func waitForControlSocket() {
            _ = poll(seconds: 20) { (try? lab.matctl("vm", "status")) != nil }
        }
        let matdLog = lab.path("matd-journal.log")
        let daemon = try lab.spawn("vm", journaled(matdLog, [LabPaths.matd, "run", "--config", lab.writeConfig("vm")]))
        waitForControlSocket()
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 15).status == 0)
        let lines = try String(contentsOfFile: matdLog, encoding: .utf8).split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("<6>matd: up on mat0") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("<5>matd: stopping, restoring the host") }, "\(lines)")
        #expect(lines.allSatisfy { $0.hasPrefix("<") }, "a line without its priority: \(lines)")

        let quietLog = lab.path("matd-quiet.log")
        let quiet = try lab.spawn("vm", journaled(quietLog, [LabPaths.matd, "run", "--log-level", "notice",
                                                             "--config", lab.writeConfig("vm")]))
        waitForControlSocket()
        quiet.signal(SIGTERM)
        #expect(quiet.wait(timeout: 15).status == 0)
        let quietLines = try String(contentsOfFile: quietLog, encoding: .utf8).split(separator: "\n")
        #expect(!quietLines.contains { $0.contains("matd: up on") } && quietLines.contains { $0.hasPrefix("<5>matd: stopping") },
                "\(quietLines)")
        let refused = try runCommand([LabPaths.matd, "run", "--log-level", "loud", "--config", lab.writeConfig("vm")])
        #expect(!refused.succeeded && refused.stderr.contains("--log-level loud"), "\(refused.summary)")

        // mat-ims the same way.
        let imsConfig = try LoopbackIMSConfig(prefix: "mat-ims-journal")
        defer { imsConfig.remove() }
        let port = imsConfig.port
        let imsLog = lab.path("ims-journal.log")
        let ims = try Spawned(journaled(imsLog, [LabPaths.matIMS, "run", "--config", imsConfig.path]))
        #expect(ims.waitForOutput(timeout: 10) { _ in
            (try? String(contentsOfFile: imsLog, encoding: .utf8))?.contains("listening on") == true
        })
        ims.signal(SIGTERM)
        #expect(ims.wait(timeout: 15).status == 0)
        let imsLines = try String(contentsOfFile: imsLog, encoding: .utf8).split(separator: "\n")
        #expect(imsLines.contains { $0.hasPrefix("<6>mat-ims: listening on 127.0.0.1:\(port)") }, "\(imsLines)")
        #expect(imsLines.contains { $0.hasPrefix("<5>mat-ims: stopping") }, "\(imsLines)")
    }
}
