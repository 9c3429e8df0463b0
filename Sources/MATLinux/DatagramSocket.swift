#if canImport(Glibc)
import Glibc
#endif
// SOCK_STREAM, SOCK_DGRAM and the SOCK_ flags come from a header this target's C modules
// include too: in a clean build the compiler can credit them to one of those modules, and
// a file that does not import it cannot see them (seen with MATLinux depending on MATLog).
import CMnl
import MATPacket

/// A non-blocking UDP socket bound to a port on every address of one family.
public final class DatagramSocket {
    /// The descriptor, for `poll`.
    public let fileDescriptor: Int32
    /// The address family it sends and receives.
    public let family: AddressFamily

    /// Binds `port` on the wildcard address of `family` (IPv6 only for `.ipv6`, so an
    /// IPv4 socket on the same port can coexist). No `SO_REUSEADDR`: once bound, nobody
    /// else binds the port on any address of the family. When another socket holds it,
    /// the error names `role` (the setting that chose the port) and the holders
    /// (``PortHolders``).
    public init(family: AddressFamily, port: UInt16, role: String? = nil) throws(SystemError) {
        self.family = family
        let domain = family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(domain, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("open UDP socket", errno: errno) }
        var on: Int32 = 1
        if family == .ipv6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        let any: IPAddress = family == .ipv4 ? .v4(IPv4Address(0)) : .v6(IPv6Address(high: 0, low: 0))
        let bound = SocketAddress.with(IPEndpoint(address: any, port: port)) { bind(fd, $0, $1) }
        guard bound == 0 else {
            let error = errno
            close(fd)
            let what = "bind UDP port \(port) (\(family)\(role.map { ", \($0)" } ?? ""))"
            let holders = error == EADDRINUSE && port != 0 ? PortHolders.udp(port: port) : []
            guard !holders.isEmpty else { throw SystemError(what, errno: error) }
            throw SystemError(what, detail: "\(String(cString: strerror(error))): held by "
                              + holders.map(\.description).joined(separator: "; ")
                              + "\(role.map { "; stop that or set another \($0)" } ?? "")")
        }
        fileDescriptor = fd
    }

    deinit { close(fileDescriptor) }

    /// Sends one datagram; the kernel picks the source address by route.
    public func send(_ bytes: [UInt8], to address: IPAddress, port: UInt16) throws(SystemError) {
        let sent = bytes.withUnsafeBytes { buffer in
            SocketAddress.with(IPEndpoint(address: address, port: port)) {
                sendto(fileDescriptor, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT), $0, $1)
            }
        }
        guard sent == bytes.count else { throw SystemError("send to \(address) port \(port)", errno: errno) }
    }

    /// Receives one datagram into `buffer`; nil when none is waiting. A datagram larger
    /// than the buffer is reported with its full length, so the caller can drop it.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError)
        -> (length: Int, source: IPAddress, port: UInt16)? {
        let (count, endpoint) = SocketAddress.receiving {
            recvfrom(fileDescriptor, buffer.baseAddress, buffer.count, Int32(MSG_TRUNC), $0, $1)
        }
        if count < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw SystemError("receive UDP", errno: errno)
        }
        guard let source = endpoint else { return nil }
        return (count, source.address, source.port)
    }
}
