import MATPacket

/// An IP address and port: where mat-ims listens, where it sends NOTIFY, and who sent a
/// request.
public struct IMSEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// The address.
    public var address: IPAddress
    /// The port (0 when listening: pick a free one).
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `192.0.2.1:53`, `[2001:db8::1]:53`, or an address alone (port `defaultPort`).
    public init?(_ text: String, defaultPort: UInt16 = 53) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let inner = String(text[text.index(after: text.startIndex)..<close])
            guard let v6 = IPv6Address(inner) else { return nil }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                self.init(address: .v6(v6), port: defaultPort)
                return
            }
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()) else { return nil }
            self.init(address: .v6(v6), port: port)
            return
        }
        if let address = IPAddress(text) {
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

/// An address prefix for access lists (`127.0.0.0/8`, `2001:db8::/32`).
public struct IMSPrefix: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var length: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.family == .ipv4 ? 32 : 128
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...maximum).contains(length) else { return nil }
            self.length = length
        } else {
            self.length = maximum
        }
        self.address = address
    }

    /// Whether `other` lies inside this prefix.
    public func contains(_ other: IPAddress) -> Bool {
        switch (address, other) {
        case (.v4(let p), .v4(let a)):
            guard length > 0 else { return true }
            let mask: UInt32 = length >= 32 ? .max : ~(UInt32.max >> UInt32(length))
            return p.value & mask == a.value & mask
        case (.v6(let p), .v6(let a)):
            if length == 0 { return true }
            if length <= 64 {
                let mask: UInt64 = length == 64 ? .max : ~(UInt64.max >> UInt64(length))
                return p.high & mask == a.high & mask
            }
            let mask: UInt64 = length >= 128 ? .max : ~(UInt64.max >> UInt64(length - 64))
            return p.high == a.high && p.low & mask == a.low & mask
        default:
            return false
        }
    }

    public var description: String { "\(address)/\(length)" }
}
