#if canImport(Glibc)
import Glibc
#endif
// SOCK_STREAM, SOCK_DGRAM and the SOCK_ flags come from a header this target's C modules
// include too: in a clean build the compiler can credit them to one of those modules, and
// a file that does not import it cannot see them (seen with MATLinux depending on MATLog).
import CMnl
import MATPacket

/// A stream socket: a Unix-domain one (the control socket's listener and its client side)
/// or a TCP listener (the metrics endpoint) and the connections it accepts.
public struct StreamSocket: ~Copyable {
    /// The open descriptor; closed when the value goes away.
    public let fileDescriptor: Int32

    private init(fileDescriptor: Int32) { self.fileDescriptor = fileDescriptor }

    deinit { close(fileDescriptor) }

    /// Listens at `path` with mode 0600. A stale socket file from a dead process is
    /// replaced; a live one (something answers) is an error, so two daemons cannot share it.
    public static func listen(at path: String) throws(SystemError) -> StreamSocket {
        if (try? connect(to: path)) != nil {
            throw SystemError("listen on \(path)", detail: "another process is already listening there")
        }
        unlink(path)
        let socket = try make("listen on \(path)")
        var address = try socketAddress(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket.fileDescriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else { throw SystemError("bind \(path)", errno: errno) }
        guard chmod(path, 0o600) == 0 else { throw SystemError("chmod 0600 \(path)", errno: errno) }
        guard Glibc.listen(socket.fileDescriptor, 16) == 0 else { throw SystemError("listen on \(path)", errno: errno) }
        return socket
    }

    /// Listens on TCP `port` of `address` (close-on-exec, address reuse on, so a restart
    /// does not wait for old connections in TIME_WAIT).
    public static func listen(on address: IPAddress, port: UInt16) throws(SystemError) -> StreamSocket {
        let what = "listen on TCP \(address) port \(port)"
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(what, errno: errno) }
        let socket = StreamSocket(fileDescriptor: fd)
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        guard SocketAddress.with(IPEndpoint(address: address, port: port), { bind(fd, $0, $1) }) == 0 else {
            throw SystemError(what, errno: errno)
        }
        guard Glibc.listen(fd, 16) == 0 else { throw SystemError(what, errno: errno) }
        return socket
    }

    /// Connects to the socket at `path`.
    public static func connect(to path: String) throws(SystemError) -> StreamSocket {
        let socket = try make("connect to \(path)")
        var address = try socketAddress(path)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(socket.fileDescriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { throw SystemError("connect to \(path)", errno: errno) }
        return socket
    }

    /// Takes a waiting client, non-blocking and close-on-exec. Returns nil when none is
    /// waiting (the listener is non-blocking, see `setNonBlocking`) or the listener was shut down.
    public func accept() throws(SystemError) -> StreamSocket? {
        while true {
            let client = Glibc.accept(fileDescriptor, nil, nil)
            if client >= 0 {
                // accept4 is not in Glibc's Swift module; nothing runs between the two calls.
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                return StreamSocket(fileDescriptor: client)
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EINVAL, EBADF: return nil
            // Out of descriptors or memory: the client stays queued; the caller retries later.
            default: throw SystemError("accept", errno: errno)
            }
        }
    }

    /// Makes reads, writes and `accept` return at once instead of waiting.
    public func setNonBlocking() {
        _ = fcntl(fileDescriptor, F_SETFL, fcntl(fileDescriptor, F_GETFL) | O_NONBLOCK)
    }

    /// Reads what is waiting into `buffer`: the byte count, 0 at end of stream, nil when
    /// nothing is waiting on a non-blocking socket.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        while true {
            let count = recv(fileDescriptor, buffer.baseAddress, buffer.count, 0)
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN: return nil
            default: throw SystemError("read from stream socket", errno: errno)
            }
        }
    }

    /// Writes what the socket takes now: the byte count, nil when it takes nothing yet. A
    /// peer that hung up is an error (EPIPE), never a SIGPIPE.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int? {
        while true {
            let count = Glibc.send(fileDescriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN: return nil
            default: throw SystemError("write to stream socket", errno: errno)
            }
        }
    }

    /// Gives up on reads and writes that take longer than `seconds`.
    public func setTimeout(seconds: Int) {
        var value = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fileDescriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fileDescriptor, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Reads up to the first newline (not included), at most `limit` bytes, on a blocking
    /// socket. The protocol has one line per direction, so reading past it loses nothing.
    public func readLine(limit: Int) throws(SystemError) -> [UInt8] {
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while line.count <= limit {
            let count = chunk.withUnsafeMutableBytes { read(fileDescriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                if let newline = chunk[0..<count].firstIndex(of: UInt8(ascii: "\n")) {
                    line.append(contentsOf: chunk[0..<newline])
                    break
                }
                line.append(contentsOf: chunk[0..<count])
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw SystemError("read from control socket", errno: errno)
            }
        }
        guard line.count <= limit else {
            throw SystemError("read from control socket", detail: "line longer than \(limit) bytes")
        }
        return line
    }

    /// Writes all of `bytes` on a blocking socket. A peer that hung up is an error (EPIPE),
    /// never a SIGPIPE.
    public func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes {
                Glibc.send(fileDescriptor, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if count > 0 {
                offset += count
            } else if errno != EINTR {
                throw SystemError("write to stream socket", errno: errno)
            }
        }
    }

    private static func make(_ operation: String) throws(SystemError) -> StreamSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(operation, errno: errno) }
        return StreamSocket(fileDescriptor: fd)
    }

    private static func socketAddress(_ path: String) throws(SystemError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw SystemError("socket path \(path)", detail: "must be 1-\(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        return address
    }
}
