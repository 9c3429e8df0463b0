#if canImport(Glibc)
import Glibc
#endif
import CMnl

/// Listens on rtnetlink for the link, address and route changes that reveal movement,
/// through libmnl.
///
/// The socket is non-blocking: poll `fileDescriptor` for `POLLIN`, then call
/// `readEvents()`. The socket lives in the network namespace of the thread that creates
/// the monitor. Not thread-safe: one owner reads from one thread at a time.
public final class NetlinkMonitor {
    private let socket: OpaquePointer
    private let buffer: UnsafeMutableRawBufferPointer

    /// Bytes the receive buffer holds: more than any one rtnetlink notification (libmnl's
    /// MNL_SOCKET_BUFFER_SIZE, at most 8 KiB, is too tight for link messages of some
    /// devices). A datagram that still does not fit counts as lost (`.overflow`).
    static let receiveBufferBytes = 32 * 1024

    /// Most datagrams one `readEvents()` call takes, so that a flood of events cannot keep
    /// the caller from its other work; the descriptor stays readable for the rest.
    static let maximumReadsPerCall = 1024

    /// Multicast groups: links, IPv4 and IPv6 addresses, IPv4 and IPv6 routes.
    static let groups = UInt32(RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
                               | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)

    /// Opens a NETLINK_ROUTE socket via libmnl (`mnl_socket_open2`), non-blocking and
    /// close-on-exec, bound to groups RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
    /// | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE.
    ///
    /// `receiveBufferSize`, when given, sets the kernel's socket receive buffer
    /// (SO_RCVBUFFORCE when privileged, so a large value is not capped by
    /// `net.core.rmem_max`; SO_RCVBUF otherwise). The kernel doubles the value and enforces
    /// a minimum; tests use a tiny one to force an overflow.
    public init(receiveBufferSize: Int32? = nil) throws(SystemError) {
        let flags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard let socket = mnl_socket_open2(NETLINK_ROUTE, flags) else {
            throw SystemError("open rtnetlink socket", errno: errno)
        }
        if var size = receiveBufferSize {
            let fd = mnl_socket_get_fd(socket)
            let length = socklen_t(MemoryLayout<Int32>.size)
            if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, length) != 0,
               setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, length) != 0 {
                let error = errno
                mnl_socket_close(socket)
                throw SystemError("set rtnetlink receive buffer to \(size) bytes", errno: error)
            }
        }
        guard mnl_socket_bind(socket, Self.groups, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let error = errno
            mnl_socket_close(socket)
            throw SystemError("bind rtnetlink socket to link, address and route groups", errno: error)
        }
        self.socket = socket
        buffer = .allocate(byteCount: Self.receiveBufferBytes, alignment: MemoryLayout<nlmsghdr>.alignment)
    }

    deinit {
        mnl_socket_close(socket)
        buffer.deallocate()
    }

    /// The socket's descriptor, to poll for `POLLIN`. The monitor owns it: do not close it.
    public var fileDescriptor: Int32 { mnl_socket_get_fd(socket) }

    /// Reads everything waiting without blocking and returns the events in order (empty
    /// when nothing waits).
    ///
    /// When the kernel dropped messages (ENOBUFS), or a datagram was too big for the
    /// receive buffer, the result holds `.overflow` once, where the loss was noticed, and
    /// the events still queued follow it: the caller must re-dump its state. Other errors
    /// throw. One call takes at most `maximumReadsPerCall` datagrams; if more wait, the
    /// descriptor stays readable.
    public func readEvents() throws(SystemError) -> [NetlinkEvent] {
        var events: [NetlinkEvent] = []
        var overflowed = false
        for _ in 0..<Self.maximumReadsPerCall {
            let count = mnl_socket_recvfrom(socket, buffer.baseAddress, buffer.count)
            if count >= 0 {
                events += NetlinkEvent.parse(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
                continue
            }
            let error = errno
            switch error {
            case EAGAIN:
                return events
            case EINTR:
                continue
            case ENOBUFS, ENOSPC:
                // ENOSPC is libmnl's word for a datagram truncated by MSG_TRUNC.
                if !overflowed {
                    overflowed = true
                    events.append(.overflow)
                }
            default:
                throw SystemError("read rtnetlink events", errno: error)
            }
        }
        return events
    }
}
