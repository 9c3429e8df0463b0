#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATTestSupport
import Testing

@Suite("SystemdNotify")
struct SystemdNotifyTests {
    @Test("each message reaches the socket as one datagram", arguments: [false, true])
    func messagesArrive(abstract: Bool) throws {
        let manager = try NotifySocket(abstract: abstract)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": manager.name])
        #expect(notifier.isEnabled)

        try notifier.ready()
        #expect(manager.receive() == "READY=1")
        try notifier.status("3 peers, registered at 192.0.2.10")
        #expect(manager.receive() == "STATUS=3 peers, registered at 192.0.2.10")
        try notifier.watchdog()
        #expect(manager.receive() == "WATCHDOG=1")
        try notifier.stopping()
        #expect(manager.receive() == "STOPPING=1")
        #expect(!manager.hasPending)
    }

    @Test("a status with line breaks stays one assignment")
    func statusIsOneLine() throws {
        let manager = try NotifySocket(abstract: true)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": manager.name])
        try notifier.status("moved\nREADY=1\r\nagain")
        #expect(manager.receive() == "STATUS=moved READY=1 again")
    }

    @Test("without NOTIFY_SOCKET every call does nothing")
    func unsetIsNoOp() throws {
        for environment in [[:], ["NOTIFY_SOCKET": ""]] as [[String: String]] {
            let notifier = SystemdNotifier(environment: environment)
            #expect(!notifier.isEnabled)
            try notifier.ready()
            try notifier.status("idle")
            try notifier.watchdog()
            try notifier.stopping()
        }
    }

    @Test("a socket nobody listens on, or one it cannot address, is an error")
    func unreachableSocketThrows() {
        let missing = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/tmp/mat-notify-test-\(getpid())-none.sock"])
        #expect(throws: SystemError.self) { try missing.ready() }
        let vsock = SystemdNotifier(environment: ["NOTIFY_SOCKET": "vsock:2:1234"])
        #expect(vsock.isEnabled)
        #expect(throws: SystemError.self) { try vsock.ready() }
        let tooLong = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)])
        #expect(throws: SystemError.self) { try tooLong.ready() }
    }

    @Test("the watchdog interval comes from WATCHDOG_USEC when WATCHDOG_PID is ours or unset")
    func watchdogInterval() {
        let pid: Int32 = 4242
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000"], processID: pid).watchdogInterval
            == .seconds(30))
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "1500", "WATCHDOG_PID": "4242"], processID: pid)
            .watchdogInterval == .microseconds(1500))
        // Set for another process (a child inherited the environment): not ours to keep.
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "1500", "WATCHDOG_PID": "4243"], processID: pid)
            .watchdogInterval == nil)
        for bad in ["0", "", "-5", "soon", "18446744073709551615"] {
            #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": bad], processID: pid).watchdogInterval == nil)
        }
        #expect(SystemdNotifier(environment: [:], processID: pid).watchdogInterval == nil)
    }
}
