import Glibc
import MATPacket
import MATSystem

/// Why one exchange with one server failed.
public enum DNSSocketError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No acceptable answer before the deadline.
    case timeout
    /// The server's host or port said no (ICMP unreachable, TCP reset).
    case unreachable(errno: Int32)
    /// A socket call failed for a local reason.
    case system(call: String, errno: Int32)
    /// The TCP stream closed early or carried an answer to another question.
    case badStream

    /// One line for logs.
    public var description: String {
        switch self {
        case .timeout: "timeout"
        case .unreachable(let e): "unreachable (\(String(cString: strerror(e))))"
        case .system(let call, let e): "\(call): \(String(cString: strerror(e)))"
        case .badStream: "TCP stream closed or carried a mismatched answer"
        }
    }
}

/// Milliseconds of the monotonic clock, for deadlines only (never shown, never compared
/// with wall time).
func monotonicMilliseconds() -> Int64 { Int64(MonotonicClock.milliseconds()) }

/// A socket file descriptor that is closed when the value goes away.
final class SocketHandle {
    let fd: Int32

    /// Opens a non-blocking, close-on-exec socket of the server's family.
    init(for server: DNSServerAddress, type: Int32) throws(DNSSocketError) {
        let family = server.address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(call: "socket", errno: errno) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Starts connecting (UDP: fixes the peer, so the kernel drops datagrams from anyone
    /// else; TCP: begins the handshake) and, for TCP, waits for it until `deadline`.
    func connect(to server: DNSServerAddress, deadline: Int64) throws(DNSSocketError) {
        let result = withSocketAddress(server) { Glibc.connect(fd, $0, $1) }
        if result == 0 { return }
        let error = errno
        guard error == EINPROGRESS else { throw Self.classify("connect", error) }
        try wait(for: Int16(POLLOUT), until: deadline)
        var soError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) == 0 else {
            throw .system(call: "getsockopt", errno: errno)
        }
        guard soError == 0 else { throw Self.classify("connect", soError) }
    }

    /// Waits until the socket is ready for `events`, or throws `.timeout`.
    func wait(for events: Int16, until deadline: Int64) throws(DNSSocketError) {
        while true {
            let remaining = deadline - monotonicMilliseconds()
            guard remaining > 0 else { throw .timeout }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&pfd, 1, Int32(min(remaining, Int64(Int32.max))))
            if ready < 0 {
                if errno == EINTR { continue }
                throw .system(call: "poll", errno: errno)
            }
            if ready == 0 { throw .timeout }
            // Errors and hang-ups are reported by the read or write that follows.
            return
        }
    }

    /// Sends one datagram, or all of `bytes` on a stream, before `deadline`.
    func sendAll(_ bytes: [UInt8], deadline: Int64) throws(DNSSocketError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { buffer in
                send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent >= 0 {
                offset += sent
                continue
            }
            let error = errno
            if error == EINTR { continue }
            guard error == EAGAIN || error == EWOULDBLOCK else { throw Self.classify("send", error) }
            try wait(for: Int16(POLLOUT), until: deadline)
        }
    }

    /// Receives one datagram and the address it came from, waiting until `deadline`.
    func receiveDatagram(deadline: Int64) throws(DNSSocketError) -> (bytes: [UInt8], from: DNSServerAddress?) {
        var buffer = [UInt8](repeating: 0, count: 65_535)
        while true {
            let (received, source) = buffer.withUnsafeMutableBytes { raw in
                SocketAddress.receiving { recvfrom(fd, raw.baseAddress, raw.count, 0, $0, $1) }
            }
            if received >= 0 {
                return (Array(buffer[0..<received]), source.map { DNSServerAddress(address: $0.address, port: $0.port) })
            }
            let error = errno
            if error == EINTR { continue }
            guard error == EAGAIN || error == EWOULDBLOCK else { throw Self.classify("recvfrom", error) }
            try wait(for: Int16(POLLIN), until: deadline)
        }
    }

    /// Reads exactly `count` octets from a stream before `deadline`.
    func receiveExactly(_ count: Int, deadline: Int64) throws(DNSSocketError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let received = buffer.withUnsafeMutableBytes { raw in
                recv(fd, raw.baseAddress! + offset, count - offset, 0)
            }
            if received > 0 {
                offset += received
                continue
            }
            if received == 0 { throw .badStream }
            let error = errno
            if error == EINTR { continue }
            guard error == EAGAIN || error == EWOULDBLOCK else { throw Self.classify("recv", error) }
            try wait(for: Int16(POLLIN), until: deadline)
        }
        return buffer
    }

    private static func classify(_ call: String, _ error: Int32) -> DNSSocketError {
        switch error {
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ECONNRESET, EPIPE: .unreachable(errno: error)
        default: .system(call: call, errno: error)
        }
    }
}

/// Calls `body` with the kernel socket address of `server`.
func withSocketAddress<R>(_ server: DNSServerAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    SocketAddress.with(IPEndpoint(address: server.address, port: server.port), body)
}
