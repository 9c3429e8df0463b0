#if canImport(Glibc)
import Glibc
#endif
import CMnl
import MATPacket

/// The kernel's neighbour table (ARP, NDP) through rtnetlink (libmnl): one entry read, and
/// resolution started for a next hop before any packet needs it (docs/datapath.md, "The
/// BPF datapath": a packet `bpf_redirect_neigh` hands to an unresolved neighbour is lost).
///
/// Not thread-safe: one owner uses it from one thread at a time. The socket lives in the
/// network namespace of the thread that creates it.
public final class Neighbours {
    private let socket: OpaquePointer
    private let buffer: UnsafeMutableRawBufferPointer
    private var sequence: UInt32 = 1

    /// One neighbour entry as the kernel has it.
    public struct Entry: Equatable, Sendable {
        /// NUD_* bits (`ip neigh`'s REACHABLE, STALE, ...).
        public var state: UInt16
        /// The link-layer address (a MAC: 6 bytes), if the entry has one.
        public var linkAddress: [UInt8]?

        public init(state: UInt16, linkAddress: [UInt8]?) {
            self.state = state
            self.linkAddress = linkAddress
        }

        /// Whether the kernel would hand a packet to `linkAddress` now, without asking first
        /// (REACHABLE, STALE, DELAY, PROBE, PERMANENT: the NUD_VALID states other than NOARP).
        public var resolved: Bool {
            state & UInt16(NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT) != 0 && linkAddress?.count == 6
        }
    }

    /// Opens a NETLINK_ROUTE socket.
    public init() throws(SystemError) {
        guard let socket = mnl_socket_open2(NETLINK_ROUTE, Int32(SOCK_CLOEXEC.rawValue)) else {
            throw SystemError("open rtnetlink socket for neighbours", errno: errno)
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let error = errno
            mnl_socket_close(socket)
            throw SystemError("bind rtnetlink socket for neighbours", errno: error)
        }
        self.socket = socket
        buffer = .allocate(byteCount: 8192, alignment: MemoryLayout<nlmsghdr>.alignment)
    }

    deinit {
        mnl_socket_close(socket)
        buffer.deallocate()
    }

    /// Has the kernel resolve `address` on the interface with index `interface` as if a
    /// packet were waiting for it (RTM_NEWNEIGH with NTF_USE, `ip neigh replace ADDR dev
    /// DEV use`): an entry is made if there is none and a solicitation sent unless the entry
    /// is fresh. Returns at once; the answer comes in the kernel's time.
    public func use(_ address: IPAddress, interface: UInt32) throws(SystemError) {
        let what = "neighbour \(address) on interface \(interface): resolve"
        let message = try header(Int32(RTM_NEWNEIGH), flags: Int32(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE),
                                 address: address, interface: interface, what: what)
        let request = mnl_nlmsg_get_payload(message)!.assumingMemoryBound(to: ndmsg.self)
        request.pointee.ndm_flags = UInt8(NTF_USE)   // no state: NTF_USE does not update the entry
        request.pointee.ndm_state = UInt16(NUD_NONE)
        let reply = try exchange(message, what: what)
        guard reply.pointee.nlmsg_type == UInt16(NLMSG_ERROR) else { throw SystemError(what, detail: "no acknowledgement") }
        let error = mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: nlmsgerr.self).pointee.error
        guard error == 0 else { throw SystemError(what, errno: -error) }
    }

    /// The entry of `address` on the interface with index `interface` (RTM_GETNEIGH);
    /// nil when the kernel has none.
    public func entry(_ address: IPAddress, interface: UInt32) throws(SystemError) -> Entry? {
        let what = "neighbour \(address) on interface \(interface)"
        let message = try header(Int32(RTM_GETNEIGH), flags: Int32(NLM_F_REQUEST), address: address, interface: interface, what: what)
        let reply = try exchange(message, what: what)
        if reply.pointee.nlmsg_type == UInt16(NLMSG_ERROR) {
            let error = mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: nlmsgerr.self).pointee.error
            if error == -ENOENT { return nil }
            throw SystemError(what, errno: -error)
        }
        let end = Int(reply.pointee.nlmsg_len)
        guard reply.pointee.nlmsg_type == UInt16(RTM_NEWNEIGH),
              end >= MemoryLayout<nlmsghdr>.size + MemoryLayout<ndmsg>.size else {
            throw SystemError(what, detail: "unexpected reply type \(reply.pointee.nlmsg_type)")
        }
        let base = UnsafeMutableRawPointer(reply)
        let state = mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: ndmsg.self).pointee.ndm_state
        var linkAddress: [UInt8]?
        var offset = MemoryLayout<nlmsghdr>.size + Self.align(MemoryLayout<ndmsg>.size)
        while offset < end {
            let attribute = UnsafePointer<nlattr>(OpaquePointer(base + offset))
            guard mnl_attr_ok(attribute, Int32(end - offset)) else { break }
            if mnl_attr_get_type(attribute) == UInt16(NDA_LLADDR) {
                let size = Int(mnl_attr_get_payload_len(attribute))
                linkAddress = Array(UnsafeRawBufferPointer(start: mnl_attr_get_payload(attribute), count: size))
            }
            offset += Self.align(Int(mnl_attr_get_len(attribute)))
        }
        return Entry(state: state, linkAddress: linkAddress)
    }

    /// A request of `type` about `address` on `interface` in the buffer.
    private func header(_ type: Int32, flags: Int32, address: IPAddress, interface: UInt32,
                        what: String) throws(SystemError) -> UnsafeMutablePointer<nlmsghdr> {
        let base = buffer.baseAddress!
        memset(base, 0, buffer.count)
        guard let message = mnl_nlmsg_put_header(base) else { throw SystemError(what, detail: "no buffer") }
        message.pointee.nlmsg_type = UInt16(type)
        message.pointee.nlmsg_flags = UInt16(flags)
        sequence &+= 1
        message.pointee.nlmsg_seq = sequence
        let request = mnl_nlmsg_put_extra_header(message, MemoryLayout<ndmsg>.size)!.assumingMemoryBound(to: ndmsg.self)
        let bytes: [UInt8]
        switch address {
        case .v4(let a):
            request.pointee.ndm_family = UInt8(AF_INET)
            bytes = a.bytes
        case .v6(let a):
            request.pointee.ndm_family = UInt8(AF_INET6)
            bytes = a.bytes
        }
        request.pointee.ndm_ifindex = Int32(bitPattern: interface)
        bytes.withUnsafeBytes { mnl_attr_put(message, UInt16(NDA_DST), $0.count, $0.baseAddress) }
        return message
    }

    /// Sends `message` and reads the one reply (an answer or an error message).
    private func exchange(_ message: UnsafeMutablePointer<nlmsghdr>,
                          what: String) throws(SystemError) -> UnsafeMutablePointer<nlmsghdr> {
        guard mnl_socket_sendto(socket, message, Int(message.pointee.nlmsg_len)) >= 0 else { throw SystemError(what, errno: errno) }
        let base = buffer.baseAddress!
        var count: Int
        repeat {
            count = mnl_socket_recvfrom(socket, base, buffer.count)
        } while count < 0 && errno == EINTR
        guard count >= MemoryLayout<nlmsghdr>.size else { throw SystemError(what, errno: count < 0 ? errno : EIO) }
        let reply = UnsafeMutablePointer<nlmsghdr>(OpaquePointer(base))
        guard Int(reply.pointee.nlmsg_len) <= count else { throw SystemError(what, detail: "cut reply") }
        return reply
    }

    private static func align(_ length: Int) -> Int { (length + 3) & ~3 }
}
