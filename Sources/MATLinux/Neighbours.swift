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
    private let socket: RouteRequestSocket

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
        socket = try RouteRequestSocket(for: "neighbours")
    }

    /// Has the kernel resolve `address` on the interface with index `interface` as if a
    /// packet were waiting for it (RTM_NEWNEIGH with NTF_USE, `ip neigh replace ADDR dev
    /// DEV use`): an entry is made if there is none and a solicitation sent unless the entry
    /// is fresh. Returns at once; the answer comes in the kernel's time.
    public func use(_ address: IPAddress, interface: UInt32) throws(SystemError) {
        let what = "neighbour \(address) on interface \(interface): resolve"
        let (message, request) = try header(Int32(RTM_NEWNEIGH), flags: Int32(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE),
                                            address: address, interface: interface, what: what)
        request.pointee.ndm_flags = UInt8(NTF_USE)   // no state: NTF_USE does not update the entry
        request.pointee.ndm_state = UInt16(NUD_NONE)
        let reply = try socket.exchange(message, what: what)
        guard let error = RouteRequestSocket.error(in: reply) else { throw SystemError(what, detail: "no acknowledgement") }
        guard error == 0 else { throw SystemError(what, errno: error) }
    }

    /// The entry of `address` on the interface with index `interface` (RTM_GETNEIGH);
    /// nil when the kernel has none.
    public func entry(_ address: IPAddress, interface: UInt32) throws(SystemError) -> Entry? {
        let what = "neighbour \(address) on interface \(interface)"
        let (message, _) = try header(Int32(RTM_GETNEIGH), flags: Int32(NLM_F_REQUEST), address: address, interface: interface, what: what)
        let reply = try socket.exchange(message, what: what)
        if let error = RouteRequestSocket.error(in: reply) {
            if error == ENOENT { return nil }
            throw SystemError(what, errno: error)
        }
        guard reply.pointee.nlmsg_type == UInt16(RTM_NEWNEIGH),
              Int(reply.pointee.nlmsg_len) >= MemoryLayout<nlmsghdr>.size + MemoryLayout<ndmsg>.size else {
            throw SystemError(what, detail: "unexpected reply type \(reply.pointee.nlmsg_type)")
        }
        let state = mnl_nlmsg_get_payload(reply)!.assumingMemoryBound(to: ndmsg.self).pointee.ndm_state
        var linkAddress: [UInt8]?
        RouteRequestSocket.forEachAttribute(of: reply, after: MemoryLayout<ndmsg>.size) { attribute in
            if mnl_attr_get_type(attribute) == UInt16(NDA_LLADDR) {
                let size = Int(mnl_attr_get_payload_len(attribute))
                linkAddress = Array(UnsafeRawBufferPointer(start: mnl_attr_get_payload(attribute), count: size))
            }
        }
        return Entry(state: state, linkAddress: linkAddress)
    }

    /// A request of `type` about `address` on `interface` in the socket's buffer.
    private func header(_ type: Int32, flags: Int32, address: IPAddress, interface: UInt32,
                        what: String) throws(SystemError) -> (UnsafeMutablePointer<nlmsghdr>, UnsafeMutablePointer<ndmsg>) {
        let (message, request) = try socket.request(type, flags: flags, header: ndmsg.self, what: what)
        request.pointee.ndm_family = UInt8(address.family == .ipv4 ? AF_INET : AF_INET6)
        request.pointee.ndm_ifindex = Int32(bitPattern: interface)
        RouteRequestSocket.bytes(address).withUnsafeBytes { mnl_attr_put(message, UInt16(NDA_DST), $0.count, $0.baseAddress) }
        return (message, request)
    }
}
