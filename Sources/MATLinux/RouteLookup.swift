#if canImport(Glibc)
import Glibc
#endif
import CMnl
import MATPacket

/// Asks the kernel how it would route one packet (`ip route get`), through libmnl.
///
/// Not thread-safe: one owner uses it from one thread at a time. The socket lives in the
/// network namespace of the thread that creates it.
public final class RouteLookup {
    private let socket: OpaquePointer
    private let buffer: UnsafeMutableRawBufferPointer
    private var sequence: UInt32 = 1

    /// Where the kernel would send a packet: the neighbour to hand it to and the device.
    public struct Hop: Hashable, Sendable, CustomStringConvertible {
        /// The gateway, or the destination itself when it is on the link.
        public var nextHop: IPAddress
        /// The output device's name.
        public var device: String

        public init(nextHop: IPAddress, device: String) {
            self.nextHop = nextHop
            self.device = device
        }

        public var description: String { "via \(nextHop) dev \(device)" }
    }

    /// Opens a NETLINK_ROUTE socket for lookups.
    public init() throws(SystemError) {
        guard let socket = mnl_socket_open2(NETLINK_ROUTE, Int32(SOCK_CLOEXEC.rawValue)) else {
            throw SystemError("open rtnetlink socket for route lookups", errno: errno)
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let error = errno
            mnl_socket_close(socket)
            throw SystemError("bind rtnetlink socket for route lookups", errno: error)
        }
        self.socket = socket
        buffer = .allocate(byteCount: 8192, alignment: MemoryLayout<nlmsghdr>.alignment)
    }

    deinit {
        mnl_socket_close(socket)
        buffer.deallocate()
    }

    /// The hop a packet from `source` to `destination` takes when it arrives on the
    /// device with index `inputInterface` and is forwarded (`ip route get D from S iif X`):
    /// the lookup a forwarded packet gets, which skips rules that match only locally
    /// generated traffic (`iif lo`). Nil when the kernel has no unicast route.
    public func forwardingHop(to destination: IPAddress, from source: IPAddress,
                              inputInterface: Int32) throws(SystemError) -> Hop? {
        let what = "route lookup \(destination) from \(source)"
        let base = buffer.baseAddress!
        memset(base, 0, buffer.count)
        guard let message = mnl_nlmsg_put_header(base) else { throw SystemError(what, detail: "no buffer") }
        message.pointee.nlmsg_type = UInt16(RTM_GETROUTE)
        message.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST)
        sequence &+= 1
        message.pointee.nlmsg_seq = sequence
        let route = mnl_nlmsg_put_extra_header(message, MemoryLayout<rtmsg>.size)!
            .assumingMemoryBound(to: rtmsg.self)
        let (family, length): (Int32, Int) = destination.family == .ipv4 ? (AF_INET, 4) : (AF_INET6, 16)
        route.pointee.rtm_family = UInt8(family)
        route.pointee.rtm_dst_len = UInt8(length * 8)
        route.pointee.rtm_src_len = UInt8(length * 8)
        Self.bytes(destination).withUnsafeBytes { mnl_attr_put(message, UInt16(RTA_DST.rawValue), length, $0.baseAddress) }
        Self.bytes(source).withUnsafeBytes { mnl_attr_put(message, UInt16(RTA_SRC.rawValue), length, $0.baseAddress) }
        mnl_attr_put_u32(message, UInt16(RTA_IIF.rawValue), UInt32(inputInterface))
        guard mnl_socket_sendto(socket, message, Int(message.pointee.nlmsg_len)) >= 0 else {
            throw SystemError(what, errno: errno)
        }
        var count: Int
        repeat {
            count = mnl_socket_recvfrom(socket, base, buffer.count)
        } while count < 0 && errno == EINTR
        guard count >= MemoryLayout<nlmsghdr>.size else { throw SystemError(what, errno: count < 0 ? errno : EIO) }
        let reply = UnsafeMutablePointer<nlmsghdr>(OpaquePointer(base))
        if reply.pointee.nlmsg_type == UInt16(NLMSG_ERROR) {
            let error = mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: nlmsgerr.self).pointee.error
            // No route at all (ENETUNREACH, EHOSTUNREACH) is an answer, not a failure.
            if error == -ENETUNREACH || error == -EHOSTUNREACH { return nil }
            throw SystemError(what, errno: -error)
        }
        guard reply.pointee.nlmsg_type == UInt16(RTM_NEWROUTE), Int(reply.pointee.nlmsg_len) <= count else {
            throw SystemError(what, detail: "unexpected reply type \(reply.pointee.nlmsg_type)")
        }
        let answer = mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: rtmsg.self).pointee
        guard answer.rtm_type == UInt8(RTN_UNICAST) else { return nil }
        var gateway: IPAddress?
        var outputInterface: UInt32?
        let end = Int(reply.pointee.nlmsg_len)
        var offset = Int(MemoryLayout<nlmsghdr>.size) + Self.align(MemoryLayout<rtmsg>.size)
        while offset < end {
            let attribute = UnsafePointer<nlattr>(OpaquePointer(base + offset))
            guard mnl_attr_ok(attribute, Int32(end - offset)) else { break }
            let payload = mnl_attr_get_payload(attribute)!
            let size = Int(mnl_attr_get_payload_len(attribute))
            switch Int32(mnl_attr_get_type(attribute)) {
            case Int32(RTA_GATEWAY.rawValue) where size == 4:
                gateway = .v4(IPv4Address(loadingFrom: payload, offset: 0))
            case Int32(RTA_GATEWAY.rawValue) where size == 16:
                gateway = .v6(IPv6Address(loadingFrom: payload, offset: 0))
            case Int32(RTA_OIF.rawValue) where size == 4:
                outputInterface = payload.load(as: UInt32.self)
            default:
                break
            }
            offset += Self.align(Int(mnl_attr_get_len(attribute)))
        }
        guard let outputInterface else { return nil }
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(outputInterface, &name) != nil else {
            throw SystemError("\(what): name of interface \(outputInterface)", errno: errno)
        }
        return Hop(nextHop: gateway ?? destination, device: String(cString: name))
    }

    private static func align(_ length: Int) -> Int { (length + 3) & ~3 }

    private static func bytes(_ address: IPAddress) -> [UInt8] {
        switch address {
        case .v4(let a): a.bytes
        case .v6(let a): a.bytes
        }
    }
}
