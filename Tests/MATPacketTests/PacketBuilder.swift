import MATPacket

/// Builds packets byte by byte with checksums computed from scratch, independently of the
/// code under test, so a translated packet can be compared with one built directly with
/// the new addresses.
enum Build {
    /// The plain RFC 1071 checksum, one 16-bit word at a time.
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        ~foldedSum(bytes)
    }

    static func foldedSum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return UInt16(sum)
    }

    static func be16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }

    static func put16(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(value >> 8)
        bytes[offset + 1] = UInt8(value & 0xFF)
    }

    static func pseudoHeader(source: [UInt8], destination: [UInt8], proto: UInt8, length: Int) -> [UInt8] {
        if source.count == 4 {
            return source + destination + [0, proto] + be16(length)
        }
        return source + destination + [0, 0] + be16(length >> 16) + be16(length & 0xFFFF) + [0, 0, 0, proto]
    }

    /// A transport segment whose checksum (at `checksumOffset`) is filled for the
    /// given pseudo-header addresses. `zeroChecksum` leaves a UDP checksum at 0.
    static func transport(
        header: [UInt8], payload: [UInt8], checksumOffset: Int?, proto: UInt8,
        source: [UInt8], destination: [UInt8], zeroChecksum: Bool = false, includePseudo: Bool = true
    ) -> [UInt8] {
        var segment = header + payload
        guard let checksumOffset, !zeroChecksum else { return segment }
        put16(&segment, checksumOffset, 0)
        let covered = (includePseudo
            ? pseudoHeader(source: source, destination: destination, proto: proto, length: segment.count)
            : []) + segment
        var value = checksum(covered)
        if proto == 17 && value == 0 { value = 0xFFFF }
        put16(&segment, checksumOffset, value)
        return segment
    }

    static func tcpHeader(options: [UInt8] = []) -> [UInt8] {
        let words = 5 + options.count / 4
        return [0x30, 0x39, 0x00, 0x50, 0, 0, 0x10, 0x00, 0, 0, 0, 0, UInt8(words << 4), 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
            + options
    }

    static func udpHeader(length: Int) -> [UInt8] {
        [0x13, 0x88, 0x00, 0x35] + be16(length) + [0, 0]
    }

    static func tcp(_ source: [UInt8], _ destination: [UInt8], payload: [UInt8]) -> [UInt8] {
        transport(header: tcpHeader(), payload: payload, checksumOffset: 16, proto: 6,
                  source: source, destination: destination)
    }

    static func udp(_ source: [UInt8], _ destination: [UInt8], payload: [UInt8], zeroChecksum: Bool = false) -> [UInt8] {
        transport(header: udpHeader(length: 8 + payload.count), payload: payload, checksumOffset: 6, proto: 17,
                  source: source, destination: destination, zeroChecksum: zeroChecksum)
    }

    static func icmpEcho(payload: [UInt8]) -> [UInt8] {
        transport(header: [8, 0, 0, 0, 0x12, 0x34, 0, 1], payload: payload, checksumOffset: 2, proto: 1,
                  source: [], destination: [], includePseudo: false)
    }

    static func icmpv6Echo(_ source: [UInt8], _ destination: [UInt8], payload: [UInt8]) -> [UInt8] {
        transport(header: [128, 0, 0, 0, 0x12, 0x34, 0, 1], payload: payload, checksumOffset: 2, proto: 58,
                  source: source, destination: destination)
    }

    /// An ICMP (`v6 == false`) or ICMPv6 error quoting `quote`.
    static func icmpError(type: UInt8, code: UInt8, quote: [UInt8], v6: Bool,
                          source: [UInt8], destination: [UInt8]) -> [UInt8] {
        transport(header: [type, code, 0, 0, 0, 0, 0x05, 0xDC], payload: quote, checksumOffset: 2,
                  proto: v6 ? 58 : 1, source: source, destination: destination, includePseudo: v6)
    }

    /// An IPv4 packet with a correct header checksum.
    static func ipv4(
        _ source: [UInt8], _ destination: [UInt8], proto: UInt8, payload: [UInt8],
        options: [UInt8] = [], fragmentOffset: Int = 0, moreFragments: Bool = false,
        totalLength: Int? = nil
    ) -> [UInt8] {
        precondition(options.count % 4 == 0)
        let headerLength = 20 + options.count
        let fragmentField = (moreFragments ? 0x2000 : 0) | fragmentOffset
        var header: [UInt8] = [UInt8(0x40 | headerLength / 4), 0]
            + be16(totalLength ?? headerLength + payload.count)
            + [0xAB, 0xCD] + be16(fragmentField) + [64, proto, 0, 0]
            + source + destination + options
        put16(&header, 10, checksum(header))
        return header + payload
    }

    /// An IPv6 packet. `extensions` are (next-header value of this header, bytes) in order;
    /// their first byte (next header) is filled in here.
    static func ipv6(
        _ source: [UInt8], _ destination: [UInt8], proto: UInt8, payload: [UInt8],
        extensions: [(type: UInt8, bytes: [UInt8])] = []
    ) -> [UInt8] {
        var chain: [UInt8] = []
        for (index, ext) in extensions.enumerated() {
            var bytes = ext.bytes
            bytes[0] = index + 1 < extensions.count ? extensions[index + 1].type : proto
            chain += bytes
        }
        let first = extensions.first?.type ?? proto
        return [0x60, 0, 0, 0] + be16(chain.count + payload.count) + [first, 64]
            + source + destination + chain + payload
    }
}

/// Test addresses from the documentation ranges.
enum Addr {
    static let hoaA = IPv4Address(198, 51, 100, 10)
    static let hoaB = IPv4Address(198, 51, 100, 20)
    static let moaA = IPv4Address(192, 0, 2, 77)
    static let moaB = IPv4Address(203, 0, 113, 5)
    static let hoa6A = IPv6Address("2001:db8:100::a")!
    static let hoa6B = IPv6Address("2001:db8:100::14")!
    static let moa6A = IPv6Address("2001:db8:a::4d")!
    static let moa6B = IPv6Address("2001:db8:b:ffff::5")!
}

/// Runs the translator over a copy of `bytes`.
func translated<A: PacketAddress>(
    _ bytes: [UInt8], _ rewrite: AddressRewrite<A>, quote: AddressRewrite<A> = .unchanged,
    checksum: ChecksumMode = .complete
) throws(DropReason) -> [UInt8] {
    var copy = bytes
    let result: Result<Void, DropReason> = copy.withUnsafeMutableBytes { buffer in
        Result { () throws(DropReason) in
            try Translator.translate(buffer, rewrite: rewrite, quoteRewrite: quote, checksum: checksum)
            return ()
        }
    }
    try result.get()
    return copy
}

/// Parses `bytes` with the packet placed right before an unmapped guard page, so that any
/// read past the end faults instead of passing unnoticed.
func parseGuarded(_ bytes: [UInt8]) -> Result<PacketLayout, DropReason> {
    GuardedBuffer.shared.withPacket(bytes) { base, count in
        Result { () throws(DropReason) in try PacketLayout.parse(UnsafeRawPointer(base), length: count) }
    }
}

extension [UInt8] {
    var hex: String { map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }

    init(hex: String) {
        let digits = hex.filter { !$0.isWhitespace }
        var bytes: [UInt8] = []
        var index = digits.startIndex
        while index < digits.endIndex {
            let next = digits.index(index, offsetBy: 2)
            bytes.append(UInt8(digits[index..<next], radix: 16)!)
            index = next
        }
        self = bytes
    }
}
