#if canImport(Glibc)
import Glibc
#endif
import CMnl
import MATPacket
import MATSystem

/// The MTU the kernel uses for datagrams to an address.
public enum RouteMTU {
    /// `IP_MTU` and `IPV6_MTU` (linux/in.h, linux/in6.h), which Glibc does not export.
    private static let ipMTU: Int32 = 14
    private static let ipv6MTU: Int32 = 24

    /// The MTU towards `address`: its route's, or the smaller path MTU the kernel learned
    /// from an ICMP "fragmentation needed" / "packet too big" (read as `IP_MTU` of a UDP
    /// socket connected to it; connecting sends nothing).
    public static func toward(_ address: IPAddress) throws(SystemError) -> Int {
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(domain, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("open UDP socket", errno: errno) }
        defer { close(fd) }
        let connected = SocketAddress.with(IPEndpoint(address: address, port: 9)) { connect(fd, $0, $1) }
        guard connected == 0 else { throw SystemError("route to \(address)", errno: errno) }
        var mtu: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        let read = address.family == .ipv4
            ? getsockopt(fd, Int32(IPPROTO_IP), ipMTU, &mtu, &size)
            : getsockopt(fd, Int32(IPPROTO_IPV6), ipv6MTU, &mtu, &size)
        guard read == 0, mtu > 0 else { throw SystemError("path MTU to \(address)", errno: errno) }
        return Int(mtu)
    }
}
