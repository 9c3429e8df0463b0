import MATDNS
import MATWire

/// Why bytes read from disk are not what was written.
public struct CorruptData: Error {}

/// Reads journal and snapshot files (big-endian integers through MATWire), checked
/// against `limit`.
struct JournalReader: ByteReading {
    let buffer: [UInt8]
    var position: Int
    let limit: Int

    init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        buffer = bytes
        position = start
        limit = end ?? bytes.count
    }

    static func shortInput(at offset: Int) -> CorruptData { CorruptData() }

    /// An uncompressed name, as `DNSName.wireBytes` wrote it.
    mutating func name() throws(CorruptData) -> DNSName {
        var length = 0
        while true {
            try need(length + 1)
            let label = Int(buffer[position + length])
            if label == 0 { break }
            guard label <= 63 else { throw CorruptData() }
            length += label + 1
            guard length < 255 else { throw CorruptData() }
        }
        let wire = try bytes(length + 1)
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
        id = BigEndian.u16(bytes, at: 0)
        flags = BigEndian.u16(bytes, at: 2)
        qdcount = BigEndian.u16(bytes, at: 4)
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
        var out: [UInt8] = []
        out.reserveCapacity(12)
        out.appendBigEndian(header.id)
        out.appendBigEndian(flags)
        out.append(contentsOf: repeatElement(0, count: 8))
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
