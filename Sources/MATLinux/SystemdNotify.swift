#if canImport(Glibc)
import Glibc
#endif
// SOCK_STREAM, SOCK_DGRAM and the SOCK_ flags come from a header this target's C modules
// include too: in a clean build the compiler can credit them to one of those modules, and
// a file that does not import it cannot see them (seen with MATLinux depending on MATLog).
import CMnl
import MATLog

/// A client of systemd's service notification protocol (sd_notify(3)), so a daemon run
/// with `Type=notify` can say when it is ready, what it is doing and that it is alive,
/// without linking libsystemd.
///
/// The manager passes a datagram socket in `NOTIFY_SOCKET`: a path, or an abstract name
/// written with a leading `@`. Each message is one datagram of `KEY=VALUE` lines. When the
/// variable is unset (run by hand, in tests, under another supervisor) every call does
/// nothing, so the daemon calls it unconditionally.
public struct SystemdNotifier: Sendable {
    /// Where the messages go: the bytes of `sun_path` (an abstract name starts with NUL and
    /// has no terminating one, so its length is part of the name).
    private struct Destination: Sendable {
        var path: [UInt8]
        var isAbstract: Bool

        /// The socket as `NOTIFY_SOCKET` spelled it, for error messages.
        var display: String {
            isAbstract ? "@" + String(decoding: path.dropFirst(), as: UTF8.self) : String(decoding: path, as: UTF8.self)
        }
    }

    private let destination: Destination?
    /// A `NOTIFY_SOCKET` this client cannot use (not a path or `@name`, or too long); kept
    /// to fail every send with a message instead of silently dropping the notifications.
    private let unusableSocket: String?

    /// How often the manager expects `watchdog()`: `WATCHDOG_USEC`, when it is set and
    /// meant for this process (`WATCHDOG_PID` unset or equal to our pid). nil when the
    /// unit has no `WatchdogSec=`. Send at about half this interval, as systemd advises.
    public let watchdogInterval: Duration?

    /// Whether messages are sent at all (`NOTIFY_SOCKET` was set).
    public var isEnabled: Bool { destination != nil || unusableSocket != nil }

    /// A notifier configured from `environment` (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
    /// `WATCHDOG_PID`); `processID` is the pid `WATCHDOG_PID` must name.
    public init(environment: [String: String], processID: Int32 = getpid()) {
        let socket = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        destination = socket.flatMap(Self.destination(for:))
        unusableSocket = destination == nil ? socket : nil

        let pidMatches = environment["WATCHDOG_PID"].map { Int32($0) == processID } ?? true
        if pidMatches, let text = environment["WATCHDOG_USEC"], let micros = UInt64(text), micros > 0,
           micros <= UInt64(Int64.max) {
            watchdogInterval = .microseconds(Int64(micros))
        } else {
            watchdogInterval = nil
        }
    }

    /// A notifier configured from this process's environment.
    public init() {
        var environment: [String: String] = [:]
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        self.init(environment: environment)
    }

    /// `READY=1`: start-up is complete; systemd now starts the units ordered after this one.
    public func ready() throws(SystemError) { try send("READY=1") }

    /// `STATUS=...`: a one-line state for `systemctl status`. Line breaks would start new
    /// assignments in the protocol, so they become spaces.
    public func status(_ text: String) throws(SystemError) {
        let line = String(text.map { $0.isNewline ? " " : $0 })
        try send("STATUS=\(line)")
    }

    /// `STOPPING=1`: shutdown has begun (restoring the host may take a moment).
    public func stopping() throws(SystemError) { try send("STOPPING=1") }

    /// `WATCHDOG=1`: the daemon is alive; due every `watchdogInterval`.
    public func watchdog() throws(SystemError) { try send("WATCHDOG=1") }

    /// Sends one notification (`notify { try $0.ready() }`) and logs a failure as a warning
    /// from `program` instead of throwing it: a daemon must not stop because its manager's
    /// socket went away, nor lose the notification silently. matd and mat-ims both send
    /// through this.
    public func report(_ program: String, _ notify: (SystemdNotifier) throws -> Void) {
        do {
            try notify(self)
        } catch {
            Log.write(.warning, "\(program): notifying the service manager: \(error)")
        }
    }

    /// Sends `message` (newline-separated `KEY=VALUE` assignments) as one datagram.
    public func send(_ message: String) throws(SystemError) {
        if let unusableSocket {
            throw SystemError("notify systemd", detail: "unusable NOTIFY_SOCKET \(unusableSocket)")
        }
        guard let destination else { return }

        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("notify systemd: open socket", errno: errno) }
        defer { close(fd) }

        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: destination.path) }
        // A path is measured with its terminating NUL (already zero in the fresh address);
        // an abstract name is exactly its bytes, so a trailing NUL would name another socket.
        let pathLength = destination.path.count + (destination.isAbstract ? 0 : 1)
        let addressLength = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + pathLength)

        var bytes = Array(message.utf8)
        let sent = bytes.withUnsafeMutableBytes { payload in
            withUnsafeMutablePointer(to: &address) { addressPointer in
                var vector = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var header = msghdr()
                    header.msg_name = UnsafeMutableRawPointer(addressPointer)
                    header.msg_namelen = addressLength
                    header.msg_iov = vectorPointer
                    header.msg_iovlen = 1
                    // MSG_NOSIGNAL: a manager that went away must not kill the daemon with SIGPIPE.
                    return retryingOnInterrupt { sendmsg(fd, &header, Int32(MSG_NOSIGNAL)) }
                }
            }
        }
        guard sent >= 0 else { throw SystemError("notify systemd at \(destination.display)", errno: errno) }
    }

    /// Parses `NOTIFY_SOCKET`: `/path` or `@abstract`; nil for anything else (systemd also
    /// knows `vsock:`, which a daemon on the host never gets) or a name too long for `sun_path`.
    private static func destination(for socket: String) -> Destination? {
        var bytes = Array(socket.utf8)
        let isAbstract: Bool
        switch bytes.first {
        case UInt8(ascii: "@"):
            bytes[0] = 0
            isAbstract = true
        case UInt8(ascii: "/"):
            isAbstract = false
        default:
            return nil
        }
        let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        guard bytes.count < capacity || (isAbstract && bytes.count == capacity) else { return nil }
        return Destination(path: bytes, isAbstract: isAbstract)
    }
}

private func retryingOnInterrupt(_ call: () -> Int) -> Int {
    while true {
        let result = call()
        if result >= 0 || errno != EINTR { return result }
    }
}
