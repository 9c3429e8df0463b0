/// An IP address and a port: where a server listens (mat-ims, matd's `metrics-listen`),
/// where mat-ims sends NOTIFY, and who sent a request.
public struct IPEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// The address.
    public var address: IPAddress
    /// The port (0 when listening: pick a free one).
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `192.0.2.1:53`, `[2001:db8::1]:53`, or an address alone (port `defaultPort`;
    /// nil: the port must be given).
    public init?(_ text: String, defaultPort: UInt16?) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let inner = String(text[text.index(after: text.startIndex)..<close])
            guard let v6 = IPv6Address(inner) else { return nil }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                guard let defaultPort else { return nil }
                self.init(address: .v6(v6), port: defaultPort)
                return
            }
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()) else { return nil }
            self.init(address: .v6(v6), port: port)
            return
        }
        if let address = IPAddress(text) {
            guard let defaultPort else { return nil }
            self.init(address: address, port: defaultPort)
            return
        }
        guard let colon = text.lastIndex(of: ":"),
              let v4 = IPv4Address(String(text[..<colon])),
              let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        self.init(address: .v4(v4), port: port)
    }

    /// Whether the address is a loopback address (127.0.0.0/8 or ::1).
    public var isLoopback: Bool {
        switch address {
        case .v4(let a): a.value >> 24 == 127
        case .v6(let a): a.high == 0 && a.low == 1
        }
    }

    public var description: String {
        switch address {
        case .v4(let a): "\(a):\(port)"
        case .v6(let a): "[\(a)]:\(port)"
        }
    }
}
