import MATWire
import Synchronization

/// A plain query recognised from its raw bytes: header, one uncompressed question of
/// class IN, at most an EDNS OPT record, nothing else. Such a query's answer depends
/// only on the question (case aside), the size limit and whether EDNS was used, so
/// that triple is the cache key.
struct FastQuery {
    /// Lower-cased question octets, then the size limit (2 octets) and the EDNS flag.
    let key: [UInt8]
    /// Offset just past the question section.
    let questionEnd: Int

    init?(_ b: [UInt8], maxUDPSize: Int, tcp: Bool) {
        let count = b.count
        guard count >= 17,
              b[2] & 0xF8 == 0,                       // QR = 0, opcode QUERY
              b[4] == 0, b[5] == 1,                   // one question
              b[6] == 0, b[7] == 0, b[8] == 0, b[9] == 0,
              b[10] == 0, b[11] <= 1 else { return nil }
        var i = 12
        while true {
            guard i < count else { return nil }
            let length = Int(b[i])
            if length == 0 { break }
            guard length <= 63 else { return nil }
            i += length + 1
            guard i - 12 < 255 else { return nil }
        }
        let nameEnd = i + 1
        guard nameEnd + 4 <= count else { return nil }
        let qtype = BigEndian.u16(b, at: nameEnd)
        guard b[nameEnd + 2] == 0, b[nameEnd + 3] == 1,  // class IN
              qtype != 0, qtype < 250 || qtype == 255 else { return nil }
        let questionEnd = nameEnd + 4
        var limit = 512
        var edns = false
        if b[11] == 1 {
            // OPT: root owner, type 41, class = payload size, version 0, well-formed options.
            let o = questionEnd
            guard o + 11 <= count, b[o] == 0, b[o + 1] == 0, b[o + 2] == 41, b[o + 6] == 0 else { return nil }
            let size = Int(BigEndian.u16(b, at: o + 3))
            var p = o + 11
            let end = p + Int(BigEndian.u16(b, at: o + 9))
            guard end == count else { return nil }
            while p < end {
                guard p + 4 <= end else { return nil }
                p += 4 + Int(BigEndian.u16(b, at: p + 2))
            }
            guard p == end else { return nil }
            limit = max(512, min(size, maxUDPSize))
            edns = true
        } else {
            guard questionEnd == count else { return nil }
        }
        if tcp { limit = 65535 }
        var key = [UInt8](repeating: 0, count: questionEnd - 12 + 3)
        for j in 12..<questionEnd {
            let c = b[j]
            key[j - 12] = (c >= 0x41 && c <= 0x5A) ? c | 0x20 : c
        }
        key.storeBigEndian(UInt16(limit), at: questionEnd - 12)
        key[questionEnd - 10] = edns ? 1 : 0
        self.key = key
        self.questionEnd = questionEnd
    }

    /// The cached reply made fit for this request: its ID, RD bit and question octets
    /// (so the client's 0x20 case survives; answer owners point at the question).
    func reply(from cached: [UInt8], request: [UInt8]) -> [UInt8] {
        var reply = cached
        reply[0] = request[0]
        reply[1] = request[1]
        reply[2] = (reply[2] & 0xFE) | (request[2] & 0x01)
        for j in 12..<questionEnd { reply[j] = request[j] }
        return reply
    }
}

/// Encoded answers by `FastQuery` key, valid for one zone generation. Every committed
/// change bumps the generation, so a hit can never show data older than an
/// acknowledged update.
final class ResponseCache: Sendable {
    struct Entry {
        var generation: UInt64
        var response: [UInt8]
        var counter: IMSCounter?
    }

    static let maxEntries = 1 << 17
    private let entries = Mutex<[[UInt8]: Entry]>([:])

    /// Looks up several keys under one lock.
    func lookup(_ keys: [FastQuery?], generation: UInt64) -> [Entry?] {
        entries.withLock { table in
            keys.map { query in
                guard let query, let entry = table[query.key], entry.generation == generation else { return nil }
                return entry
            }
        }
    }

    func insert(_ items: [([UInt8], Entry)]) {
        guard !items.isEmpty else { return }
        entries.withLock { table in
            if table.count + items.count > Self.maxEntries { table.removeAll(keepingCapacity: true) }
            for (key, entry) in items {
                if let old = table[key], old.generation > entry.generation { continue }
                table[key] = entry
            }
        }
    }
}
