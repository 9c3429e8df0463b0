import MATDNS

/// Appends big-endian integers to a byte array (journal and snapshot files).
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }
    mutating func u32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }
    mutating func u48(_ v: UInt64) {
        for shift in stride(from: 40, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }
    mutating func append<C: Collection>(_ data: C) where C.Element == UInt8 { bytes.append(contentsOf: data) }
}

/// Why bytes read from disk are not what was written.
struct CorruptData: Error {}

/// Reads big-endian integers with bounds checks.
struct ByteReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int

    init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        position = start
        self.end = end ?? bytes.count
    }

    var remaining: Int { end - position }

    mutating func need(_ n: Int) throws(CorruptData) {
        guard n >= 0, n <= end - position else { throw CorruptData() }
    }
    mutating func u8() throws(CorruptData) -> UInt8 {
        try need(1)
        defer { position += 1 }
        return bytes[position]
    }
    mutating func u16() throws(CorruptData) -> UInt16 {
        try need(2)
        defer { position += 2 }
        return UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
    }
    mutating func u32() throws(CorruptData) -> UInt32 {
        try need(4)
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(bytes[position + i]) }
        position += 4
        return v
    }
    mutating func u48() throws(CorruptData) -> UInt64 {
        try need(6)
        var v: UInt64 = 0
        for i in 0..<6 { v = v << 8 | UInt64(bytes[position + i]) }
        position += 6
        return v
    }
    mutating func take(_ n: Int) throws(CorruptData) -> [UInt8] {
        try need(n)
        defer { position += n }
        return Array(bytes[position..<position + n])
    }
    /// An uncompressed name, as `DNSName.wireBytes` wrote it.
    mutating func name() throws(CorruptData) -> DNSName {
        var length = 0
        while true {
            try need(length + 1)
            let label = Int(bytes[position + length])
            if label == 0 { break }
            guard label <= 63 else { throw CorruptData() }
            length += label + 1
            guard length < 255 else { throw CorruptData() }
        }
        let wire = try take(length + 1)
        do { return try DNSName(wireBytes: wire) } catch { throw CorruptData() }
    }
}

/// CRC-32C (Castagnoli), which guards every journal record and the snapshot.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in data { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return ~crc
    }
}

/// What the server reads from a request's first bytes without parsing it: enough to route
/// it and to build a header-only error reply.
struct RawHeader {
    let id: UInt16
    let flags: UInt16
    let qdcount: UInt16

    init?(_ bytes: [UInt8]) {
        guard bytes.count >= 12 else { return nil }
        id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        flags = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
        qdcount = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
    }

    var isResponse: Bool { flags & 0x8000 != 0 }
    var opcode: DNSOpcode { DNSOpcode(UInt8(truncatingIfNeeded: flags >> 11)) }
    var recursionDesired: Bool { flags & 0x0100 != 0 }

    /// A reply carrying only a header (and the question section when it can be found by
    /// walking the raw bytes), without allocating anything for the request itself.
    static func reply(to bytes: [UInt8], rcode: DNSResponseCode, echoQuestion: Bool) -> [UInt8]? {
        guard let header = RawHeader(bytes) else { return nil }
        var flags: UInt16 = 0x8000 | UInt16(header.opcode.rawValue) << 11 | (rcode.rawValue & 0xF)
        if header.recursionDesired { flags |= 0x0100 }
        var out: [UInt8] = [UInt8(header.id >> 8), UInt8(truncatingIfNeeded: header.id),
                            UInt8(flags >> 8), UInt8(truncatingIfNeeded: flags), 0, 0, 0, 0, 0, 0, 0, 0]
        if echoQuestion, header.qdcount == 1, let end = questionEnd(bytes) {
            out[5] = 1
            out.append(contentsOf: bytes[12..<end])
        }
        return out
    }

    /// The empty truncated reply of response rate limiting's slip: header and question,
    /// TC set, so a genuine client asks again over TCP.
    static func truncated(to bytes: [UInt8]) -> [UInt8]? {
        guard var reply = reply(to: bytes, rcode: .noError, echoQuestion: true) else { return nil }
        reply[2] |= 0x02
        return reply
    }

    /// End of a single uncompressed question starting at offset 12.
    static func questionEnd(_ bytes: [UInt8]) -> Int? {
        var i = 12
        while i < bytes.count {
            let length = Int(bytes[i])
            if length == 0 {
                let end = i + 5
                return end <= bytes.count ? end : nil
            }
            guard length <= 63 else { return nil }
            i += length + 1
            guard i - 12 < 255 else { return nil }
        }
        return nil
    }
}
