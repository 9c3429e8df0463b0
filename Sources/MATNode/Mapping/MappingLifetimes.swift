import MATPacket

/// How long a learned peer's mapping may still be used, from its registration lifetime.
///
/// A node publishes a lifetime with every registration (`"life=<seconds>"` in its TXT,
/// docs/ims.md §2) and registers again, with a new sequence number, well before it runs
/// out. So a sequence number that stays the same for longer than its lifetime means the
/// node stopped registering: it is gone (killed, its host lost), and its MoA may already
/// belong to someone else. mat-ims removes such a mapping itself; this check does the same
/// for a peer behind BIND or Knot, which never remove anything, and for mappings served
/// stale from the cache while the IMS is unreachable (an age limit on them).
///
/// The clock is this node's own (monotonic milliseconds): the lifetime runs from when this
/// node first saw the sequence number, never from the writer's wall clock, so the nodes'
/// clocks need not agree. It errs on the long side: a mapping lapses here at most one
/// record TTL after the IMS would have removed it, never before.
///
/// A lapsed sequence number is remembered (up to ``capacity`` HoAs), so the same dead
/// mapping, read again from a server that still holds it, is not taken back; a newer one
/// (the node came back) is. Pure: the caller passes the time.
struct MappingLifetimes {
    struct Entry: Equatable {
        /// The registration's sequence number as last seen.
        var sequence: UInt64
        /// When this node first saw that sequence (ms).
        var since: UInt64
        /// The lifetime it was published with (ms).
        var lifetime: UInt64
        /// Whether it passed its lifetime (the mapping was dropped).
        var lapsed = false
    }

    /// Most HoAs remembered; past it, lapsed entries go first, then the oldest.
    let capacity: Int
    private(set) var entries: [IPAddress: Entry] = [:]

    init(capacity: Int = 4_096) { self.capacity = max(1, capacity) }

    /// Whether a mapping of `hoa` at `sequence`, published with `lifetime` seconds, read
    /// now from the IMS (or its cache), may be used. A mapping without a sequence or a
    /// lifetime has no lifetime to pass: it is always usable.
    mutating func admit(_ hoa: IPAddress, sequence: UInt64?, lifetime: UInt32?, now: UInt64) -> Bool {
        guard let sequence, let lifetime, lifetime > 0 else {
            entries[hoa] = nil
            return true
        }
        if var entry = entries[hoa], entry.sequence == sequence {
            entry.lifetime = UInt64(lifetime) * 1_000
            entries[hoa] = entry
            return !entry.lapsed && now < entry.since + entry.lifetime
        }
        store(hoa, Entry(sequence: sequence, since: now, lifetime: UInt64(lifetime) * 1_000))
        return true
    }

    /// A verified alert from `hoa` at `sequence`, valid for `lifetime` seconds: the peer is
    /// alive and said so itself, which starts a lifetime of its own.
    mutating func renewed(_ hoa: IPAddress, sequence: UInt64, lifetime: UInt32, now: UInt64) {
        guard lifetime > 0 else { return }
        store(hoa, Entry(sequence: sequence, since: now, lifetime: UInt64(lifetime) * 1_000))
    }

    /// The HoAs whose lifetime has passed at `now` and that were not reported before;
    /// each is reported once, then remembered as lapsed.
    mutating func lapse(at now: UInt64) -> [IPAddress] {
        var lapsed: [IPAddress] = []
        for (hoa, entry) in entries where !entry.lapsed && now >= entry.since + entry.lifetime {
            entries[hoa]?.lapsed = true
            lapsed.append(hoa)
        }
        return lapsed.sorted()
    }

    /// When the next live entry lapses, if any.
    var nextLapse: UInt64? {
        entries.values.lazy.filter { !$0.lapsed }.map { $0.since + $0.lifetime }.min()
    }

    /// Forgets `hoa` (its key changed: its numbers count afresh).
    mutating func forget(_ hoa: IPAddress) { entries[hoa] = nil }

    private mutating func store(_ hoa: IPAddress, _ entry: Entry) {
        if entries[hoa] == nil, entries.count >= capacity {
            let victim = entries.first { $0.value.lapsed }?.key
                ?? entries.min { $0.value.since < $1.value.since }?.key
            if let victim { entries[victim] = nil }
        }
        entries[hoa] = entry
    }
}
