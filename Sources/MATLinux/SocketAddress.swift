#if canImport(Glibc)
import Glibc
#endif
import MATPacket

/// Conversions between `IPAddress` and the kernel's socket addresses, for every socket
/// type of this module.
enum SocketAddress {
    /// The address and port in `storage`; nil for a family other than IPv4 and IPv6.
    static func address(of storage: sockaddr_storage) -> (IPAddress, UInt16)? {
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: storage) { raw -> (IPAddress, UInt16)? in
            switch family {
            case AF_INET:
                let address = raw.load(as: sockaddr_in.self)
                return (.v4(IPv4Address(UInt32(bigEndian: address.sin_addr.s_addr))), UInt16(bigEndian: address.sin_port))
            case AF_INET6:
                let address = raw.load(as: sockaddr_in6.self)
                let bytes = withUnsafeBytes(of: address.sin6_addr) { Array($0) }
                let v6 = bytes.withUnsafeBytes { IPv6Address(loadingFrom: $0.baseAddress!, offset: 0) }
                return (.v6(v6), UInt16(bigEndian: address.sin6_port))
            default:
                return nil
            }
        }
    }

    /// Calls `body` with `address` and `port` as a `sockaddr_in` or `sockaddr_in6`.
    static func with<R>(_ address: IPAddress, port: UInt16,
                        _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch address {
        case .v4(let v4):
            var socketAddress = sockaddr_in()
            socketAddress.sin_family = sa_family_t(AF_INET)
            socketAddress.sin_port = port.bigEndian
            socketAddress.sin_addr.s_addr = v4.value.bigEndian
            return withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let v6):
            var socketAddress = sockaddr_in6()
            socketAddress.sin6_family = sa_family_t(AF_INET6)
            socketAddress.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &socketAddress.sin6_addr) { v6.store(to: $0.baseAddress!, offset: 0) }
            return withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }
}
