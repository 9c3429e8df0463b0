#if canImport(Glibc)
import Glibc
#endif
import CMnl
import MATPacket

/// One NETLINK_ROUTE socket for request-and-reply exchanges (a route lookup, a neighbour
/// entry, a tc filter), through libmnl: the socket, its buffer and its sequence numbers,
/// shared by ``RouteLookup`` and ``Neighbours``, which each build their own request in it,
/// and the BPF datapath's tc attach, which sends requests ``TrafficControl`` built.
///
/// Not thread-safe: one owner uses it from one thread at a time. The socket lives in the
/// network namespace of the thread that creates it.
final class RouteRequestSocket {
    private let socket: OpaquePointer
    private let buffer: UnsafeMutableRawBufferPointer
    private var sequence: UInt32 = 1

    /// Opens and binds the socket; `purpose` names it in errors ("route lookups").
    init(for purpose: String) throws(SystemError) {
        guard let socket = mnl_socket_open2(NETLINK_ROUTE, Int32(SOCK_CLOEXEC.rawValue)) else {
            throw SystemError("open rtnetlink socket for \(purpose)", errno: errno)
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let error = errno
            mnl_socket_close(socket)
            throw SystemError("bind rtnetlink socket for \(purpose)", errno: error)
        }
        self.socket = socket
        buffer = .allocate(byteCount: 8192, alignment: MemoryLayout<nlmsghdr>.alignment)
    }

    deinit {
        mnl_socket_close(socket)
        buffer.deallocate()
    }

    /// A new request of `type` with `flags` and a zeroed family header of `Header` in the
    /// buffer (what was there before is gone), with the next sequence number.
    func request<Header>(_ type: Int32, flags: Int32, header: Header.Type,
                         what: String) throws(SystemError) -> (UnsafeMutablePointer<nlmsghdr>, UnsafeMutablePointer<Header>) {
        let base = buffer.baseAddress!
        memset(base, 0, buffer.count)
        guard let message = mnl_nlmsg_put_header(base) else { throw SystemError(what, detail: "no buffer") }
        message.pointee.nlmsg_type = UInt16(type)
        message.pointee.nlmsg_flags = UInt16(flags)
        sequence &+= 1
        message.pointee.nlmsg_seq = sequence
        let extra = mnl_nlmsg_put_extra_header(message, MemoryLayout<Header>.size)!.assumingMemoryBound(to: Header.self)
        return (message, extra)
    }

    /// Sends `message` and reads the one reply (an answer or an error message) into the
    /// buffer; the reply is whole (its length within what was read).
    func exchange(_ message: UnsafeMutablePointer<nlmsghdr>, what: String) throws(SystemError) -> UnsafeMutablePointer<nlmsghdr> {
        guard mnl_socket_sendto(socket, message, Int(message.pointee.nlmsg_len)) >= 0 else { throw SystemError(what, errno: errno) }
        let base = buffer.baseAddress!
        let count = receiveRetryingInterrupts(socket, into: buffer)
        guard count >= MemoryLayout<nlmsghdr>.size else { throw SystemError(what, errno: count < 0 ? errno : EIO) }
        let reply = UnsafeMutablePointer<nlmsghdr>(OpaquePointer(base))
        guard Int(reply.pointee.nlmsg_len) <= count else { throw SystemError(what, detail: "cut reply") }
        return reply
    }

    /// Sends `bytes`, one whole request built elsewhere (``TrafficControl``), with the next
    /// sequence number, and reads the one reply into the buffer.
    func exchange(bytes: [UInt8], what: String) throws(SystemError) -> UnsafeMutablePointer<nlmsghdr> {
        try exchange(put(bytes, what: what), what: what)
    }

    /// Sends `bytes`, a dump request built elsewhere, and calls `body` with each message of
    /// the answer (each whole: its length within what was read) until the kernel says done.
    func dump(bytes: [UInt8], what: String, _ body: (UnsafeRawBufferPointer) -> Void) throws(SystemError) {
        let message = try put(bytes, what: what)
        guard mnl_socket_sendto(socket, message, Int(message.pointee.nlmsg_len)) >= 0 else { throw SystemError(what, errno: errno) }
        let base = buffer.baseAddress!, header = MemoryLayout<nlmsghdr>.size
        while true {
            let count = receiveRetryingInterrupts(socket, into: buffer)
            guard count >= 0 else { throw SystemError(what, errno: errno) }
            var offset = 0
            while offset + header <= count {
                let reply = UnsafeMutablePointer<nlmsghdr>(OpaquePointer(base + offset))
                let length = Int(reply.pointee.nlmsg_len)
                guard length >= header, offset + length <= count else { throw SystemError(what, detail: "cut reply") }
                switch Int32(reply.pointee.nlmsg_type) {
                case NLMSG_DONE: return
                case NLMSG_ERROR:
                    let error = Self.error(in: reply) ?? EIO
                    if error == 0 { return }
                    throw SystemError(what, errno: error)
                default: body(UnsafeRawBufferPointer(start: base + offset, count: length))
                }
                offset += (length + 3) & ~3
            }
        }
    }

    /// `bytes` copied into the buffer as a request with the next sequence number.
    private func put(_ bytes: [UInt8], what: String) throws(SystemError) -> UnsafeMutablePointer<nlmsghdr> {
        guard bytes.count >= MemoryLayout<nlmsghdr>.size, bytes.count <= buffer.count else { throw SystemError(what, detail: "no buffer") }
        let base = buffer.baseAddress!
        bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let message = UnsafeMutablePointer<nlmsghdr>(OpaquePointer(base))
        sequence &+= 1
        message.pointee.nlmsg_seq = sequence
        return message
    }

    /// The kernel's error number in an NLMSG_ERROR reply (0: an acknowledgement), nil for
    /// another kind of reply.
    static func error(in reply: UnsafeMutablePointer<nlmsghdr>) -> Int32? {
        guard reply.pointee.nlmsg_type == UInt16(NLMSG_ERROR) else { return nil }
        return -mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: nlmsgerr.self).pointee.error
    }

    /// Calls `body` with each attribute of `reply` after its family header of `headerSize`
    /// bytes, stopping at the first one that does not fit.
    static func forEachAttribute(of reply: UnsafeMutablePointer<nlmsghdr>, after headerSize: Int,
                                 _ body: (UnsafePointer<nlattr>) -> Void) {
        let base = UnsafeMutableRawPointer(reply)
        let end = Int(reply.pointee.nlmsg_len)
        var offset = MemoryLayout<nlmsghdr>.size + align(headerSize)
        while offset < end {
            let attribute = UnsafePointer<nlattr>(OpaquePointer(base + offset))
            guard mnl_attr_ok(attribute, Int32(end - offset)) else { break }
            body(attribute)
            offset += align(Int(mnl_attr_get_len(attribute)))
        }
    }

    private static func align(_ length: Int) -> Int { (length + 3) & ~3 }

    /// The address's bytes in network order, as netlink attributes carry them.
    static func bytes(_ address: IPAddress) -> [UInt8] {
        switch address {
        case .v4(let a): a.bytes
        case .v6(let a): a.bytes
        }
    }
}
