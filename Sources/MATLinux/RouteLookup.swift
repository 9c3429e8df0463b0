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
    private let socket: RouteRequestSocket

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
        socket = try RouteRequestSocket(for: "route lookups")
    }

    /// The hop a packet from `source` to `destination` takes when it arrives on the
    /// device with index `inputInterface` and is forwarded (`ip route get D from S iif X`):
    /// the lookup a forwarded packet gets, which skips rules that match only locally
    /// generated traffic (`iif lo`). Nil when the kernel has no unicast route.
    public func forwardingHop(to destination: IPAddress, from source: IPAddress,
                              inputInterface: Int32) throws(SystemError) -> Hop? {
        let what = "route lookup \(destination) from \(source)"
        let (message, route) = try socket.request(Int32(RTM_GETROUTE), flags: Int32(NLM_F_REQUEST), header: rtmsg.self, what: what)
        let (family, length): (Int32, Int) = destination.family == .ipv4 ? (AF_INET, 4) : (AF_INET6, 16)
        route.pointee.rtm_family = UInt8(family)
        route.pointee.rtm_dst_len = UInt8(length * 8)
        route.pointee.rtm_src_len = UInt8(length * 8)
        RouteRequestSocket.bytes(destination).withUnsafeBytes { mnl_attr_put(message, UInt16(RTA_DST.rawValue), length, $0.baseAddress) }
        RouteRequestSocket.bytes(source).withUnsafeBytes { mnl_attr_put(message, UInt16(RTA_SRC.rawValue), length, $0.baseAddress) }
        mnl_attr_put_u32(message, UInt16(RTA_IIF.rawValue), UInt32(inputInterface))
        let reply = try socket.exchange(message, what: what)
        if let error = RouteRequestSocket.error(in: reply) {
            // No route at all (ENETUNREACH, EHOSTUNREACH) is an answer, not a failure.
            if error == ENETUNREACH || error == EHOSTUNREACH { return nil }
            throw SystemError(what, errno: error)
        }
        guard reply.pointee.nlmsg_type == UInt16(RTM_NEWROUTE) else {
            throw SystemError(what, detail: "unexpected reply type \(reply.pointee.nlmsg_type)")
        }
        let answer = mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: rtmsg.self).pointee
        guard answer.rtm_type == UInt8(RTN_UNICAST) else { return nil }
        var gateway: IPAddress?
        var outputInterface: UInt32?
        RouteRequestSocket.forEachAttribute(of: reply, after: MemoryLayout<rtmsg>.size) { attribute in
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
        }
        guard let outputInterface else { return nil }
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(outputInterface, &name) != nil else {
            throw SystemError("\(what): name of interface \(outputInterface)", errno: errno)
        }
        return Hop(nextHop: gateway ?? destination, device: String(cString: name))
    }
}
