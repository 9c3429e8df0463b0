import MATPacket

/// An address prefix for access lists (`127.0.0.0/8`, `2001:db8::/32`).
public struct IMSPrefix: Hashable, Sendable, CustomStringConvertible {
    /// The prefix's address (bits past `length` are ignored).
    public var address: IPAddress
    /// The prefix length in bits.
    public var length: Int

    /// Parses `address/length` or a bare address (a host prefix); nil if malformed.
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

    /// `address/length`.
    public var description: String { "\(address)/\(length)" }
}
