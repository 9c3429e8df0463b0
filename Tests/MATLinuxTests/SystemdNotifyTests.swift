#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import Testing

/// Stands in for systemd's notification socket: a bound AF_UNIX datagram socket that
/// collects what the notifier sends.
private final class NotifySocket {
    let fd: Int32
    /// The value `NOTIFY_SOCKET` would carry for this socket.
    let name: String
    private let path: String?

    /// Binds a socket at a fresh path in the temporary directory, or, if `abstract`, at a
    /// fresh abstract name.
    init(abstract: Bool) throws {
        let unique = "mat-notify-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes: [UInt8]
        if abstract {
            name = "@" + unique
            path = nil
            bytes = [0] + Array(unique.utf8)
        } else {
            name = "/tmp/\(unique).sock"
            path = name
            bytes = Array(name.utf8)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        // The abstract name is exactly its bytes; the path is measured with its NUL.
        let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (abstract ? 0 : 1)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        try #require(bound == 0, "bind \(name): errno \(errno)")
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        if let path { unlink(path) }
    }

    /// The next datagram, or nil if none arrives within two seconds.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// Whether a datagram is waiting, without waiting for one.
    var hasPending: Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) >= 0
    }
}

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
