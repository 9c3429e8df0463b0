import MATWire

/// A fully qualified domain name.
///
/// Held as its uncompressed wire form (length-prefixed labels ending in the root's zero
/// octet) because that is what every hot operation wants: encoding copies it, TSIG hashes
/// it, and comparison walks it without splitting. Case is preserved for display but
/// ignored by `==` and `hash(into:)`, as DNS requires (RFC 4343).
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    /// The longest legal name in wire form, root octet included.
    public static let maxWireLength = 255
    /// The longest legal label.
    public static let maxLabelLength = 63

    /// Invariant: valid uncompressed wire form, at most 255 octets.
    private(set) var wire: [UInt8]

    init(uncheckedWire: [UInt8]) { wire = uncheckedWire }

    /// The root name `.`.
    public static let root = DNSName(uncheckedWire: [0])

    /// Parses presentation text such as `10.100.51.198.hoa.mat.example.`.
    ///
    /// Every name is taken as absolute, with or without the trailing dot, because this
    /// codec has no notion of an origin to append. `\.` escapes a dot inside a label and
    /// `\DDD` gives any octet in decimal.
    public init(_ text: String) throws(DNSNameError) {
        let utf8 = Array(text.utf8)
        if utf8 == [UInt8(ascii: ".")] || utf8.isEmpty {
            self = .root
            return
        }
        var wire: [UInt8] = [0]
        wire.reserveCapacity(utf8.count + 2)
        var labelStart = 0
        var i = 0
        var lastWasDot = false
        func closeLabel() throws(DNSNameError) {
            let length = wire.count - labelStart - 1
            guard length > 0 else { throw .emptyLabel }
            guard length <= Self.maxLabelLength else { throw .labelTooLong }
            wire[labelStart] = UInt8(length)
            labelStart = wire.count
            wire.append(0)
        }
        let count = utf8.count
        while i < count {
            let c = utf8[i]
            lastWasDot = false
            if c == UInt8(ascii: ".") {
                try closeLabel()
                lastWasDot = true
                i += 1
            } else if c == UInt8(ascii: "\\") {
                guard i + 1 < count else { throw .badEscape }
                let d0 = utf8[i + 1]
                if isDigit(d0) {
                    guard i + 3 < count, isDigit(utf8[i + 2]), isDigit(utf8[i + 3]) else {
                        throw .badEscape
                    }
                    let value = Int(d0 - 48) * 100 + Int(utf8[i + 2] - 48) * 10 + Int(utf8[i + 3] - 48)
                    guard value <= 255 else { throw .badEscape }
                    wire.append(UInt8(value))
                    i += 4
                } else {
                    wire.append(d0)
                    i += 2
                }
            } else {
                wire.append(c)
                i += 1
            }
            guard wire.count <= Self.maxWireLength else { throw .nameTooLong }
        }
        if !lastWasDot { try closeLabel() }
        // closeLabel left an open zero octet that now serves as the root label.
        guard wire.count <= Self.maxWireLength else { throw .nameTooLong }
        self.wire = wire
    }

    /// Builds a name from raw labels, most specific first, root implied.
    public init(labels: [[UInt8]]) throws(DNSNameError) {
        var wire: [UInt8] = []
        for label in labels {
            guard !label.isEmpty else { throw .emptyLabel }
            guard label.count <= Self.maxLabelLength else { throw .labelTooLong }
            wire.append(UInt8(label.count))
            wire.append(contentsOf: label)
        }
        wire.append(0)
        guard wire.count <= Self.maxWireLength else { throw .nameTooLong }
        self.wire = wire
    }

    /// Reads an uncompressed name that must fill `bytes` exactly.
    public init(wireBytes bytes: [UInt8]) throws(DNSParseError) {
        let name = try bytes.withUnsafeBufferPointer { (buffer) throws(DNSParseError) -> DNSName in
            var reader = WireReader(buffer)
            // Position 0 is not a message, so any pointer (which must be >= 12 and
            // before the name) is rejected, as it should be here.
            let name = try reader.name()
            guard reader.position == buffer.count else { throw .trailingData(offset: reader.position) }
            return name
        }
        self = name
    }

    /// The uncompressed wire form, case preserved.
    public var wireBytes: [UInt8] { wire }

    /// Octets in wire form, root octet included.
    public var wireLength: Int { wire.count }

    /// Whether this is the root name.
    public var isRoot: Bool { wire.count == 1 }

    /// Number of labels, not counting the root.
    public var labelCount: Int {
        var count = 0
        var i = 0
        while wire[i] != 0 {
            count += 1
            i += Int(wire[i]) + 1
        }
        return count
    }

    /// The labels, most specific first, without the root.
    public var labels: [[UInt8]] {
        var result: [[UInt8]] = []
        var i = 0
        while wire[i] != 0 {
            let length = Int(wire[i])
            result.append(Array(wire[i + 1...i + length]))
            i += length + 1
        }
        return result
    }

    /// The same name with ASCII letters lower-cased: the canonical form TSIG and DNSSEC
    /// hash (RFC 4034 §6.2).
    public func lowercased() -> DNSName {
        DNSName(uncheckedWire: wire.map(asciiLower))
    }

    /// The name with its first label removed, or nil for the root.
    public var parent: DNSName? {
        guard !isRoot else { return nil }
        return DNSName(uncheckedWire: Array(wire[(Int(wire[0]) + 1)...]))
    }

    /// Whether this name equals `zone` or lies below it.
    public func isSubdomain(of zone: DNSName) -> Bool {
        let offset = wire.count - zone.wire.count
        guard offset >= 0 else { return false }
        // The suffix must start on a label boundary, not merely match bytes.
        var i = 0
        while i < offset { i += Int(wire[i]) + 1 }
        guard i == offset else { return false }
        return Self.equalFolded(wire[offset...], zone.wire[...])
    }

    /// Adds one label in front, as when deriving `<hoa>.hoa.mat.example.` from the zone.
    public func prepending(label: [UInt8]) throws(DNSNameError) -> DNSName {
        guard !label.isEmpty else { throw .emptyLabel }
        guard label.count <= Self.maxLabelLength else { throw .labelTooLong }
        guard wire.count + label.count + 1 <= Self.maxWireLength else { throw .nameTooLong }
        return DNSName(uncheckedWire: [UInt8(label.count)] + label + wire)
    }

    /// Adds one label given as plain text (no escapes) in front.
    public func prepending(label: String) throws(DNSNameError) -> DNSName {
        try prepending(label: Array(label.utf8))
    }

    /// Treats this name as relative and places it under `suffix`.
    public func appending(_ suffix: DNSName) throws(DNSNameError) -> DNSName {
        let combined = wire.dropLast() + suffix.wire
        guard combined.count <= Self.maxWireLength else { throw .nameTooLong }
        return DNSName(uncheckedWire: Array(combined))
    }

    /// The name for an IPv4 address in reverse-dotted form under `zone`, e.g.
    /// 198.51.100.10 -> `10.100.51.198.<zone>`, so one delegation covers one prefix.
    public static func reverseIPv4(_ address: UInt32, in zone: DNSName) throws(DNSNameError) -> DNSName {
        var name = zone
        for shift in stride(from: 24, through: 0, by: -8) {
            let octet = UInt8(truncatingIfNeeded: address >> UInt32(shift))
            name = try name.prepending(label: Array(String(octet).utf8))
        }
        return name
    }

    /// The name for an IPv6 address as 32 reversed nibbles under `zone`, like ip6.arpa
    /// (RFC 3596 §2.5). The address is given as two host-order halves.
    public static func reverseIPv6(high: UInt64, low: UInt64, in zone: DNSName) throws(DNSNameError) -> DNSName {
        let hex = Array("0123456789abcdef".utf8)
        var wire: [UInt8] = []
        wire.reserveCapacity(64 + zone.wire.count)
        for half in [low, high] {
            for nibble in 0..<16 {
                wire.append(1)
                wire.append(hex[Int((half >> UInt64(nibble * 4)) & 0xF)])
            }
        }
        wire.append(contentsOf: zone.wire)
        guard wire.count <= Self.maxWireLength else { throw .nameTooLong }
        return DNSName(uncheckedWire: wire)
    }

    /// Presentation form with a trailing dot. Octets that could be misread (`.`, `\`,
    /// quotes, parentheses, `;`, `@`, `$`) get a backslash; non-printable ones `\DDD`.
    public var description: String {
        if isRoot { return "." }
        var out: [UInt8] = []
        out.reserveCapacity(wire.count + 8)
        var i = 0
        while wire[i] != 0 {
            let length = Int(wire[i])
            for b in wire[i + 1...i + length] {
                switch b {
                case UInt8(ascii: "."), UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "("),
                     UInt8(ascii: ")"), UInt8(ascii: ";"), UInt8(ascii: "@"), UInt8(ascii: "$"):
                    out.append(UInt8(ascii: "\\"))
                    out.append(b)
                case 0x21...0x7E:
                    out.append(b)
                default:
                    out.append(UInt8(ascii: "\\"))
                    out.append(48 + b / 100)
                    out.append(48 + (b / 10) % 10)
                    out.append(48 + b % 10)
                }
            }
            out.append(UInt8(ascii: "."))
            i += length + 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Case-insensitive equality (RFC 4343).
    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        lhs.wire.count == rhs.wire.count && equalFolded(lhs.wire[...], rhs.wire[...])
    }

    /// Hashes the lower-cased form so that equal names hash equally.
    public func hash(into hasher: inout Hasher) {
        // Eight octets per combine keeps hashing cheap for the long nibble names.
        var word: UInt64 = 0
        var n = 0
        for b in wire {
            word = word << 8 | UInt64(asciiLower(b))
            n += 1
            if n == 8 {
                hasher.combine(word)
                word = 0
                n = 0
            }
        }
        hasher.combine(word)
        hasher.combine(wire.count)
    }

    static func equalFolded(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y && asciiLower(x) != asciiLower(y) {
            return false
        }
        return true
    }
}

@inline(__always)
private func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
