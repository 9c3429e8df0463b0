import MATPacket

/// Peer mappings learned from the IMS, kept past their TTL so they can still be served
/// (flagged stale) while the IMS is unreachable.
///
/// Pure value type: the caller passes the time, so expiry is deterministic in tests.
public struct MappingCache: Sendable {
    /// Most entries kept; when full, the one whose TTL ran out longest ago goes first.
    public let capacity: Int
    private var entries: [IPAddress: PeerMappingAnswer] = [:]

    /// Creates an empty cache.
    public init(capacity: Int = 4096) {
        self.capacity = max(1, capacity)
    }

    /// Number of entries, fresh or not.
    public var count: Int { entries.count }

    /// The entry for `hoa` if its TTL has not run out at `now`, marked `.cache`.
    public func fresh(_ hoa: IPAddress, now: UInt64) -> PeerMappingAnswer? {
        guard var entry = entries[hoa], now < entry.expiresAt else { return nil }
        entry.source = .cache
        return entry
    }

    /// The entry for `hoa` whatever its age, marked `.stale`, unless it is more than
    /// `maxStaleness` seconds past its TTL.
    public func stale(_ hoa: IPAddress, now: UInt64, maxStaleness: UInt64?) -> PeerMappingAnswer? {
        guard var entry = entries[hoa] else { return nil }
        if let maxStaleness, now > entry.expiresAt, now - entry.expiresAt > maxStaleness { return nil }
        entry.source = .stale
        return entry
    }

    /// Stores a fresh answer, replacing any older one for the same HoA.
    public mutating func store(_ answer: PeerMappingAnswer) {
        if entries[answer.hoa] == nil, entries.count >= capacity,
           let victim = entries.min(by: { $0.value.expiresAt < $1.value.expiresAt })?.key {
            entries[victim] = nil
        }
        entries[answer.hoa] = answer
    }

    /// Forgets `hoa` (the IMS said it has no mapping).
    public mutating func remove(_ hoa: IPAddress) {
        entries[hoa] = nil
    }

    /// Forgets everything.
    public mutating func removeAll() {
        entries.removeAll()
    }
}
