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
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, messages.filter({ $0 == "WATCHDOG=1" }).count < 2 {
            if let message = manager.receive() { messages.append(message) }
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

    /// mat-ims the same way: READY=1 once it listens, a status line, STOPPING=1.
    @Test func matIMSTellsTheManagerWhenItServes() throws {
        let directory = NSTemporaryDirectory() + "mat-ims-notify-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = 20_000 + Int.random(in: 0..<20_000)
        let config = """
            [server]
            listen = 127.0.0.1:\(port)
            state-directory = \(directory)/state
            [zone]
            name = mat.example.
            ns = ns.mat.example.
            glue = ns.mat.example. 192.0.2.132

            """
        try config.write(toFile: directory + "/ims.conf", atomically: true, encoding: .utf8)
        let manager = try NotifySocket(abstract: true)
        let server = try Spawned(["env", "NOTIFY_SOCKET=\(manager.name)", LabPaths.matIMS, "run",
                                  "--config", directory + "/ims.conf"])
        #expect(manager.receive() == "READY=1", "\(server.stderr)")
        #expect(manager.receive() == "STATUS=serving 1 zone(s) on 127.0.0.1:\(port)")
        server.signal(SIGTERM)
        #expect(manager.receive() == "STOPPING=1")
        #expect(server.wait(timeout: 15).status == 0)
    }
}
