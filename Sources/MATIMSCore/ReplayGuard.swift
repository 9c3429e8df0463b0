import MATDNS

/// Who signed an accepted update, kept so that replay protection survives a restart.
public struct SignerStamp: Hashable, Sendable {
    /// The TSIG key that signed it.
    public var keyName: DNSName
    /// Its TSIG Time Signed (seconds since the epoch).
    public var timeSigned: UInt64
    /// Its MAC (the journal keeps the first 8 octets of restored ones).
    public var mac: [UInt8]

    /// A stamp as a journal record or snapshot holds it.
    public init(keyName: DNSName, timeSigned: UInt64, mac: [UInt8]) {
        self.keyName = keyName
        self.timeSigned = timeSigned
        self.mac = mac
    }
}

/// RFC 8945 §5.2.3: per key, the latest Time Signed accepted; anything signed earlier
/// than the second before it is refused (BADTIME), even inside the fudge window. Within
/// those two seconds a request is taken only if its MAC was not seen before: clients
/// legitimately send several updates per second (and a pipelining client's datagrams may
/// be handled out of order across a second boundary), while a byte-identical resend is a
/// replay. MACs are remembered by their first 8 octets (HMAC output: a collision between
/// two honest messages is a 2^-64 event, and forging one needs the key).
public struct ReplayGuard: Sendable {
    struct Entry: Sendable {
        var time: UInt64
        var macs: Set<UInt64>
        /// MACs seen at `time - 1`.
        var previous: Set<UInt64>
    }
    private(set) var latest: [DNSName: Entry] = [:]
    /// How many distinct MACs one key may use within one second (8 octets each).
    static let maxPerSecond = 1 << 18

    /// A guard that has seen nothing.
    public init() {}

    static func fingerprint(_ mac: [UInt8]) -> UInt64 {
        var v: UInt64 = 0
        for b in mac.prefix(8) { v = v << 8 | UInt64(b) }
        return v
    }

    /// Whether a request signed at `time` with `mac` is fresh; if so it is remembered.
    public mutating func admit(key: DNSName, time: UInt64, mac: [UInt8]) -> Bool {
        let print = Self.fingerprint(mac)
        guard var entry = latest.removeValue(forKey: key) else {
            latest[key] = Entry(time: time, macs: [print], previous: [])
            return true
        }
        // Taken out of the dictionary so the sets grow without being copied.
        defer { latest[key] = entry }
        if time > entry.time {
            entry.previous = time == entry.time + 1 ? entry.macs : []
            entry.macs = [print]
            entry.time = time
            return true
        }
        if time == entry.time {
            return entry.macs.count < Self.maxPerSecond && entry.macs.insert(print).inserted
        }
        if time + 1 == entry.time {
            return entry.previous.count < Self.maxPerSecond && entry.previous.insert(print).inserted
        }
        return false
    }

    /// Restores state from a persisted stamp (journal replay, snapshot).
    public mutating func restore(_ stamp: SignerStamp) {
        _ = admit(key: stamp.keyName, time: stamp.timeSigned, mac: stamp.mac)
    }

    /// What must be persisted to restore this state: per key, the MACs of its latest
    /// second and the one before.
    public var stamps: [SignerStamp] {
        func bytes(_ print: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: print >> (56 - 8 * UInt64($0))) } }
        return latest.flatMap { key, entry in
            entry.previous.map { SignerStamp(keyName: key, timeSigned: entry.time - 1, mac: bytes($0)) }
                + entry.macs.map { SignerStamp(keyName: key, timeSigned: entry.time, mac: bytes($0)) }
        }
    }
}
