#if canImport(Glibc)
import Glibc
#endif

extension DatagramSocket {
    /// DSCP CS6 in the IPv4 TOS byte or the IPv6 traffic class (0xc0, ECN bits clear): the
    /// class routing protocols send in (RFC 4594 "network control"; BIRD and FRR set it on
    /// their sockets), which routers that honour DSCP queue ahead of bulk traffic.
    public static let networkControlTrafficClass: Int32 = 0xc0

    /// Marks every datagram the socket sends from now on as network control
    /// (``networkControlTrafficClass``): `IP_TOS` on an IPv4 socket, `IPV6_TCLASS` on an
    /// IPv6 one.
    public func markAsNetworkControl() throws(SystemError) {
        var value = Self.networkControlTrafficClass
        let (level, option, name) = trafficClassOption
        guard setsockopt(fileDescriptor, level, option, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SystemError("set \(name) to 0xc0 (DSCP CS6) on the UDP socket", errno: errno)
        }
    }

    /// The TOS byte (IPv4) or traffic class (IPv6) the socket's datagrams carry.
    public func trafficClass() throws(SystemError) -> Int32 {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        let (level, option, name) = trafficClassOption
        guard getsockopt(fileDescriptor, level, option, &value, &length) == 0 else {
            throw SystemError("read \(name) of the UDP socket", errno: errno)
        }
        return value
    }

    private var trafficClassOption: (level: Int32, option: Int32, name: String) {
        family == .ipv4 ? (Int32(IPPROTO_IP), IP_TOS, "IP_TOS") : (Int32(IPPROTO_IPV6), IPV6_TCLASS, "IPV6_TCLASS")
    }
}
