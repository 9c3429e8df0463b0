/// An IP prefix: an address and how many leading bits of it count.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    /// The address as written; bits past `length` are kept, as `ip` keeps them.
    public var address: IPAddress
    /// The number of leading bits that count.
    public var length: Int

    /// A prefix; `length` must fit the family (0-32 or 0-128).
    public init?(_ address: IPAddress, length: Int) {
        guard length >= 0, length <= (address.family == .ipv4 ? 32 : 128) else { return nil }
        self.address = address
        self.length = length
    }

    /// Parses `198.51.100.0/24` or `2001:db8::/32`; a bare address is a host prefix.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.family == .ipv4 ? 32 : 128
        if parts.count == 1 {
            self.init(address, length: maximum)
        } else {
            guard parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), !parts[1].isEmpty,
                  let length = Int(parts[1]) else { return nil }
            self.init(address, length: length)
        }
    }

    public var description: String { "\(address)/\(length)" }
}


extension IPPrefix {
    /// Whether `candidate` lies inside this prefix.
    public func contains(_ candidate: IPAddress) -> Bool {
        switch (address, candidate) {
        case (.v4(let network), .v4(let host)):
            guard length > 0 else { return true }
            let mask = UInt32.max << (32 - UInt32(length))
            return network.value & mask == host.value & mask
        case (.v6(let network), .v6(let host)):
            let highBits = min(length, 64), lowBits = max(length - 64, 0)
            let highMask: UInt64 = highBits == 0 ? 0 : UInt64.max << (64 - UInt64(highBits))
            let lowMask: UInt64 = lowBits == 0 ? 0 : UInt64.max << (64 - UInt64(lowBits))
            return network.high & highMask == host.high & highMask && network.low & lowMask == host.low & lowMask
        default:
            return false
        }
    }
}
