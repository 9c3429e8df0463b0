/// An IPv4 address held as a 32-bit integer whose most significant byte is the first
/// byte on the wire (so `192.0.2.1` is `0xC000_0201`).
///
/// A plain value type with no heap storage, so it can be compared, hashed and copied in
/// the packet path for free.
public struct IPv4Address: PacketAddress, Comparable, CustomStringConvertible {
    /// IPv4.
    public static var family: AddressFamily { .ipv4 }

    /// The address in host byte order, first wire byte most significant.
    public var value: UInt32

    /// Wraps a host-order 32-bit value.
    @inlinable
    public init(_ value: UInt32) { self.value = value }

    /// Builds an address from its four dotted-quad bytes.
    @inlinable
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text (`198.51.100.10`). Returns nil on anything else,
    /// including leading zeros, which some parsers read as octal.
    public init?(_ text: Substring) {
        var result: UInt32 = 0
        var octets = 0
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard octets < 4, !part.isEmpty, part.count <= 3,
                  part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  part.count == 1 || part.first != "0",
                  let octet = UInt8(part) else { return nil }
            result = result << 8 | UInt32(octet)
            octets += 1
        }
        guard octets == 4 else { return nil }
        value = result
    }

    /// Parses dotted-quad text.
    public init?(_ text: String) { self.init(Substring(text)) }

    /// Reads an address stored in network order at `offset`.
    @inlinable @inline(__always)
    public init(loadingFrom base: UnsafeRawPointer, offset: Int) {
        value = UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// Writes the address in network order at `offset`.
    @inlinable @inline(__always)
    public func store(to base: UnsafeMutableRawPointer, offset: Int) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    /// The one's-complement sum of the address's two 16-bit words, unfolded.
    @inlinable @inline(__always)
    public var wordSum: UInt64 { UInt64(value >> 16) &+ UInt64(value & 0xFFFF) }

    /// The four bytes in wire order.
    public var bytes: [UInt8] {
        [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    public var description: String { bytes.map(String.init).joined(separator: ".") }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
}

/// An IPv6 address held as two 64-bit halves, each most significant byte first.
public struct IPv6Address: PacketAddress, Comparable, CustomStringConvertible {
    /// IPv6.
    public static var family: AddressFamily { .ipv6 }

    /// Bytes 0-7 of the address, first byte most significant.
    public var high: UInt64
    /// Bytes 8-15 of the address, first byte most significant.
    public var low: UInt64

    /// Wraps the two host-order halves.
    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses RFC 4291 / RFC 5952 text, including `::` and an embedded dotted quad.
    public init?(_ text: Substring) {
        guard !text.isEmpty, text.count <= 45, !text.contains("%") else { return nil }
        var groups: [UInt16] = []
        var gapIndex: Int? = nil
        var rest = text[...]
        if rest.hasPrefix("::") {
            gapIndex = 0
            rest = rest.dropFirst(2)
        } else if rest.hasPrefix(":") {
            return nil
        }
        while !rest.isEmpty {
            let end = rest.firstIndex(of: ":") ?? rest.endIndex
            let piece = rest[rest.startIndex..<end]
            if piece.contains(".") {
                guard end == rest.endIndex, let v4 = IPv4Address(piece) else { return nil }
                groups.append(UInt16(v4.value >> 16))
                groups.append(UInt16(truncatingIfNeeded: v4.value))
                rest = rest[end...]
                break
            }
            guard !piece.isEmpty, piece.count <= 4,
                  piece.allSatisfy({ $0.isHexDigit && $0.isASCII }),
                  let group = UInt16(piece, radix: 16) else { return nil }
            groups.append(group)
            rest = rest[end...]
            if rest.hasPrefix("::") {
                guard gapIndex == nil else { return nil }
                gapIndex = groups.count
                rest = rest.dropFirst(2)
            } else if rest.hasPrefix(":") {
                rest = rest.dropFirst()
                if rest.isEmpty { return nil }
            }
        }
        if let gap = gapIndex {
            guard groups.count <= 7 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: gap)
        }
        guard groups.count == 8 else { return nil }
        high = groups[0..<4].reduce(0) { $0 << 16 | UInt64($1) }
        low = groups[4..<8].reduce(0) { $0 << 16 | UInt64($1) }
    }

    /// Parses RFC 4291 text.
    public init?(_ text: String) { self.init(Substring(text)) }

    /// Reads an address stored in network order at `offset`.
    @inlinable @inline(__always)
    public init(loadingFrom base: UnsafeRawPointer, offset: Int) {
        high = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        low = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
    }

    /// Writes the address in network order at `offset`.
    @inlinable @inline(__always)
    public func store(to base: UnsafeMutableRawPointer, offset: Int) {
        base.storeBytes(of: high.bigEndian, toByteOffset: offset, as: UInt64.self)
        base.storeBytes(of: low.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
    }

    /// The one's-complement sum of the address's eight 16-bit words, unfolded.
    @inlinable @inline(__always)
    public var wordSum: UInt64 {
        (high >> 32) &+ (high & 0xFFFF_FFFF) &+ (low >> 32) &+ (low & 0xFFFF_FFFF)
    }

    /// The sixteen bytes in wire order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    /// RFC 5952 canonical text: lower case, longest run of two or more zero groups as `::`
    /// (the first of equally long runs). Written into one buffer: `matctl peers` and the
    /// state file print an address per peer, 100,000 and more.
    public var description: String {
        var groups: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &groups) { raw in
            let words = raw.bindMemory(to: UInt16.self)
            for i in 0..<8 { words[i] = UInt16(truncatingIfNeeded: (i < 4 ? high : low) >> (48 - 16 * UInt64(i % 4))) }
        }
        return withUnsafeBytes(of: groups) { raw in
            let words = raw.bindMemory(to: UInt16.self)
            var bestStart = -1, bestLength = 1
            var index = 0
            while index < 8 {
                if words[index] == 0 {
                    var end = index
                    while end < 8 && words[end] == 0 { end += 1 }
                    if end - index > bestLength { bestStart = index; bestLength = end - index }
                    index = end
                } else {
                    index += 1
                }
            }
            // At most 8 groups of 4 digits and 7 colons (39 bytes).
            return String(unsafeUninitializedCapacity: 39) { text in
                var count = 0
                var index = 0
                while index < 8 {
                    if index == bestStart {
                        text[count] = UInt8(ascii: ":")
                        text[count + 1] = UInt8(ascii: ":")
                        count += 2
                        index += bestLength
                        continue
                    }
                    if index > 0 && index != bestStart + bestLength {
                        text[count] = UInt8(ascii: ":")
                        count += 1
                    }
                    let word = words[index]
                    var shift = word >= 0x1000 ? 12 : word >= 0x100 ? 8 : word >= 0x10 ? 4 : 0
                    while shift >= 0 {
                        let digit = UInt8(truncatingIfNeeded: word >> UInt16(shift)) & 0xf
                        text[count] = digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10
                        count += 1
                        shift -= 4
                    }
                    index += 1
                }
                return count
            }
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

/// What the packet core needs of an address type: its family, how it sits on the wire,
/// and its contribution to a checksum. Generic code over it specializes to plain integer
/// code for each family.
public protocol PacketAddress: Hashable, Sendable {
    /// The family every value of this type belongs to.
    static var family: AddressFamily { get }
    /// Reads an address stored in network order at `offset`.
    init(loadingFrom base: UnsafeRawPointer, offset: Int)
    /// Writes the address in network order at `offset`.
    func store(to base: UnsafeMutableRawPointer, offset: Int)
    /// The unfolded one's-complement sum of the address's 16-bit words.
    var wordSum: UInt64 { get }
}

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses either family's text form.
    public init?(_ text: String) {
        if let v4 = IPv4Address(text) {
            self = .v4(v4)
        } else if let v6 = IPv6Address(text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    /// The address family.
    public var family: AddressFamily {
        switch self {
        case .v4: .ipv4
        case .v6: .ipv6
        }
    }

    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }
}

/// IPv4 addresses before IPv6 ones, each family in numeric order: an order for lists and
/// files that costs no text form per comparison (sorting 100,000 addresses by their
/// `description` cost seconds).
extension IPAddress: Comparable {
    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): x < y
        case (.v6(let x), .v6(let y)): x < y
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }
}

/// The IP version of an address or packet.
public enum AddressFamily: UInt8, Sendable, CustomStringConvertible {
    case ipv4 = 4
    case ipv6 = 6

    public var description: String { self == .ipv4 ? "IPv4" : "IPv6" }
}
