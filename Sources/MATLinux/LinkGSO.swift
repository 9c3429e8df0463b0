#if canImport(Glibc)
import Glibc
#endif
import CMnl
import MATSystem

/// The largest GSO super-packet the kernel builds for a device (`IFLA_GSO_MAX_SIZE`, what
/// `ip link set DEV gso_max_size N` sets). libnl has no setter for it, so this is one
/// RTM_NEWLINK through libmnl, acknowledged.
public enum LinkGSO {
    /// Sets `name`'s GSO maximum size to `bytes`.
    public static func setMaximumSize(_ bytes: UInt32, of name: String) throws(SystemError) {
        let index = if_nametoindex(name)
        guard index != 0 else { throw SystemError("find interface \(name)", errno: errno) }
        guard let socket = mnl_socket_open(NETLINK_ROUTE) else { throw SystemError("open rtnetlink", errno: errno) }
        defer { mnl_socket_close(socket) }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            throw SystemError("bind rtnetlink", errno: errno)
        }
        let size = 512
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        memset(buffer, 0, size)
        let header = mnl_nlmsg_put_header(buffer)!
        header.pointee.nlmsg_type = UInt16(RTM_NEWLINK)
        header.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_ACK)
        header.pointee.nlmsg_seq = UInt32(truncatingIfNeeded: WallClock.seconds())
        let info = mnl_nlmsg_put_extra_header(header, MemoryLayout<ifinfomsg>.size)!
            .assumingMemoryBound(to: ifinfomsg.self)
        info.pointee.ifi_family = UInt8(AF_UNSPEC)
        info.pointee.ifi_index = Int32(index)
        mnl_attr_put_u32(header, UInt16(IFLA_GSO_MAX_SIZE), bytes)
        guard mnl_socket_sendto(socket, header, Int(header.pointee.nlmsg_len)) >= 0 else {
            throw SystemError("set gso_max_size of \(name)", errno: errno)
        }
        let received = mnl_socket_recvfrom(socket, buffer, size)
        guard received > 0 else { throw SystemError("set gso_max_size of \(name)", errno: errno) }
        let reply = buffer.assumingMemoryBound(to: nlmsghdr.self)
        if reply.pointee.nlmsg_type == UInt16(NLMSG_ERROR) {
            let error = (buffer + MemoryLayout<nlmsghdr>.size).load(as: Int32.self)
            guard error == 0 else { throw SystemError("set gso_max_size of \(name)", errno: -error) }
        }
    }
}
