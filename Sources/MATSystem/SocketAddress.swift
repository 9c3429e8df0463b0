#if canImport(Glibc)
import Glibc
#endif
import MATPacket

/// Conversions between `IPEndpoint` and the kernel's socket addresses (`sockaddr_in`,
/// `sockaddr_in6`), for every socket of the project.
public enum SocketAddress {
    /// The endpoint in the socket address at `raw`; nil for a family other than IPv4 and
    /// IPv6. A v4-mapped IPv6 address (a dual-stack socket's IPv4 peer) comes back as IPv4.
    public static func endpoint(at raw: UnsafeRawPointer) -> IPEndpoint? {
        switch Int32(raw.load(as: sockaddr.self).sa_family) {
        case AF_INET:
            let sin = raw.load(as: sockaddr_in.self)
            return IPEndpoint(address: .v4(IPv4Address(UInt32(bigEndian: sin.sin_addr.s_addr))),
                              port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = raw.load(as: sockaddr_in6.self)
            let address = withUnsafeBytes(of: sin6.sin6_addr) { IPv6Address(loadingFrom: $0.baseAddress!, offset: 0) }
            let port = UInt16(bigEndian: sin6.sin6_port)
            if address.high == 0, address.low >> 32 == 0xFFFF {
                return IPEndpoint(address: .v4(IPv4Address(UInt32(truncatingIfNeeded: address.low))), port: port)
            }
            return IPEndpoint(address: .v6(address), port: port)
        default:
            return nil
        }
    }

    /// The endpoint in `storage` (see ``endpoint(at:)``).
    public static func endpoint(of storage: sockaddr_storage) -> IPEndpoint? {
        withUnsafeBytes(of: storage) { endpoint(at: $0.baseAddress!) }
    }

    /// Calls `body` with room for a socket address and its length, for a call that fills
    /// them (`recvfrom`, `accept`, `getsockname`), and returns its result with the endpoint
    /// it left there: nil when it left none (it failed, or another family).
    public static func receiving<R>(_ body: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> R)
        -> (result: R, endpoint: IPEndpoint?) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, &length) }
        }
        return (result, endpoint(of: storage))
    }

    /// Writes `endpoint` as a socket address at the start of `storage` and returns its
    /// length; the bytes past that length are left as they were (the kernel reads no
    /// further). For a hot path that keeps its destination in storage of its own: no
    /// allocation, 16 or 28 bytes written.
    @inlinable
    public static func write(_ endpoint: IPEndpoint, to storage: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t {
        let raw = UnsafeMutableRawPointer(storage)
        switch endpoint.address {
        case .v4(let v4):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = endpoint.port.bigEndian
            sin.sin_addr.s_addr = v4.value.bigEndian
            raw.storeBytes(of: sin, as: sockaddr_in.self)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6(let v6):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = endpoint.port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { v6.store(to: $0.baseAddress!, offset: 0) }
            raw.storeBytes(of: sin6, as: sockaddr_in6.self)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    /// `endpoint` as a socket address in a `sockaddr_storage`, with its length.
    public static func storage(for endpoint: IPEndpoint) -> (sockaddr_storage, socklen_t) {
        var storage = sockaddr_storage()
        let length = write(endpoint, to: &storage)
        return (storage, length)
    }

    /// Calls `body` with `endpoint` as a socket address and its length; the address lives
    /// on the stack (``write(_:to:)``), so a per-packet send may use it.
    @inlinable
    public static func with<R>(_ endpoint: IPEndpoint, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var storage = sockaddr_storage()
        let length = write(endpoint, to: &storage)
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
