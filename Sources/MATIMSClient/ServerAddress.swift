#if canImport(Glibc)
import Glibc
#endif
import MATPacket
import MATSystem

/// An IMS server to query or update: an IP address and a port.
public struct DNSServerAddress: Hashable, Sendable, CustomStringConvertible {
    /// The server's address; queries go straight to it, never through a resolver.
    public var address: IPAddress
    /// The server's port (53 for a standard deployment).
    public var port: UInt16

    /// Creates a server address.
    public init(address: IPAddress, port: UInt16 = 53) {
        self.address = address
        self.port = port
    }

    /// The server a kernel socket address names; nil for a family other than IPv4 and IPv6.
    init?(_ storage: sockaddr_storage) {
        guard let endpoint = SocketAddress.endpoint(of: storage) else { return nil }
        self.init(address: endpoint.address, port: endpoint.port)
    }

    /// Parses `192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1`, `[2001:db8::1]` or
    /// `[2001:db8::1]:5353`; the port defaults to 53. Nil for anything else.
    public init?(_ text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                  let v6 = IPv6Address(text[text.index(after: text.startIndex)..<close]) else { return nil }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                self.init(address: .v6(v6))
            } else {
                guard rest.hasPrefix(":"), let port = Self.port(rest.dropFirst()) else { return nil }
                self.init(address: .v6(v6), port: port)
            }
            return
        }
        if let v6 = IPv6Address(text) {
            self.init(address: .v6(v6))
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let v4 = IPv4Address(parts[0]) else { return nil }
        if parts.count == 2 {
            guard let port = Self.port(parts[1]) else { return nil }
            self.init(address: .v4(v4), port: port)
        } else {
            self.init(address: .v4(v4))
        }
    }

    /// `192.0.2.1:53` or `[2001:db8::1]:53`.
    public var description: String {
        switch address {
        case .v4(let v4): "\(v4):\(port)"
        case .v6(let v6): "[\(v6)]:\(port)"
        }
    }

    private static func port(_ text: Substring) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let value = UInt16(text), value != 0 else { return nil }
        return value
    }
}
