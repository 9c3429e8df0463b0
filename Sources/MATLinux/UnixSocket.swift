#if canImport(Glibc)
import Glibc
#endif

/// A Unix-domain stream socket: the control socket's listener and its client side.
public struct UnixSocket: ~Copyable {
    /// The open descriptor; closed when the value goes away.
    public let fileDescriptor: Int32

    private init(fileDescriptor: Int32) { self.fileDescriptor = fileDescriptor }

    deinit { close(fileDescriptor) }

    /// Listens at `path` with mode 0600. A stale socket file from a dead process is
    /// replaced; a live one (something answers) is an error, so two daemons cannot share it.
    public static func listen(at path: String) throws(SystemError) -> UnixSocket {
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

    /// Connects to the socket at `path`.
    public static func connect(to path: String) throws(SystemError) -> UnixSocket {
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

    /// Waits for a client. Returns nil when the listener was shut down.
    public func accept() throws(SystemError) -> UnixSocket? {
        while true {
            let client = Glibc.accept(fileDescriptor, nil, nil)
            if client >= 0 {
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                return UnixSocket(fileDescriptor: client)
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EINVAL, EBADF: return nil
            default: throw SystemError("accept on control socket", errno: errno)
            }
        }
    }

    /// Makes blocked `accept` calls return nil.
    public func shutdownListener() { Glibc.shutdown(fileDescriptor, Int32(SHUT_RDWR)) }

    /// Gives up on reads and writes that take longer than `seconds`.
    public func setTimeout(seconds: Int) {
        var value = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fileDescriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fileDescriptor, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Reads up to the first newline (not included), at most `limit` bytes.
    public func readLine(limit: Int) throws(SystemError) -> [UInt8] {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < limit {
            let count = read(fileDescriptor, &byte, 1)
            if count == 1 {
                if byte == UInt8(ascii: "\n") { return line }
                line.append(byte)
            } else if count == 0 {
                return line
            } else if errno != EINTR {
                throw SystemError("read from control socket", errno: errno)
            }
        }
        throw SystemError("read from control socket", detail: "line longer than \(limit) bytes")
    }

    /// Writes all of `bytes`.
    public func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { write(fileDescriptor, $0.baseAddress! + offset, $0.count - offset) }
            if count > 0 {
                offset += count
            } else if errno != EINTR {
                throw SystemError("write to control socket", errno: errno)
            }
        }
    }

    private static func make(_ operation: String) throws(SystemError) -> UnixSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(operation, errno: errno) }
        return UnixSocket(fileDescriptor: fd)
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
