import MATPacket

/// The mappings learned from the IMS or from peers' alerts, by HoA, with when each is
/// looked up again; and which HoAs name each MoA (``MoAClaims``), so a change of one peer
/// tells the diversion which MoA appeared or went, and a MoA's claimants are found,
/// without a walk over all of them.
///
/// The diversion's sets hold every peer's MoA. Rebuilding them from every mapping after
/// each change cost O(peers) per change: at 100,000 learned peers, dropping the ones that
/// answered no alert after a move took the service thread minutes, during which it
/// answered no probe. Likewise each entry's refresh time is kept in a ``DueQueue``, so the
/// due refreshes are found without a walk (``takeDueRefreshes(now:)``). Reads and writes
/// go through the subscript as on a dictionary.
struct LearnedPeers: Sequence {
    /// One learned mapping, and when it is due to be looked up again (milliseconds).
    typealias Entry = (mapping: PeerMapping, expiresAt: UInt64)

    private var entries: [IPAddress: Entry] = [:]
    /// Which entries name each MoA (one MoA may serve several HoAs).
    private(set) var claims = MoAClaims()
    /// MoAs named by no entry before and by one now, since the last `takeMoAChanges`.
    private var appeared: Set<IPAddress> = []
    /// MoAs named by an entry before and by none now, since the last `takeMoAChanges`.
    private var vanished: Set<IPAddress> = []
    /// Each entry's `expiresAt`, earliest first (only ``LearnedPeers``' own methods change it).
    var refreshes = DueQueue<IPAddress>()
    /// HoAs whose first MoA (the one traffic goes to) changed, or whose entry came or went,
    /// since the last `takeFirstMoAChanges`.
    private var firstMoAChanged: Set<IPAddress> = []

    subscript(hoa: IPAddress) -> Entry? {
        get { entries[hoa] }
        set {
            let old = newValue == nil ? entries.removeValue(forKey: hoa) : entries.updateValue(newValue!, forKey: hoa)
            if let newValue { refreshes.schedule(hoa, at: newValue.expiresAt) } else { refreshes.remove(hoa) }
            let before = old?.mapping.moas.map(\.address) ?? []
            let after = newValue?.mapping.moas.map(\.address) ?? []
            guard before != after else { return }
            if before.first != after.first || old == nil || newValue == nil { firstMoAChanged.insert(hoa) }
            for moa in before { release(moa, by: hoa) }
            for moa in after { retain(moa, by: hoa) }
        }
    }

    /// Removes `hoa`'s entry and returns it.
    @discardableResult
    mutating func removeValue(forKey hoa: IPAddress) -> Entry? {
        let old = entries[hoa]
        self[hoa] = nil
        return old
    }

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }
    var keys: Dictionary<IPAddress, Entry>.Keys { entries.keys }
    var values: Dictionary<IPAddress, Entry>.Values { entries.values }

    /// Every MoA an entry names.
    var moas: some Collection<IPAddress> { claims.moas }

    func makeIterator() -> Dictionary<IPAddress, Entry>.Iterator { entries.makeIterator() }

    /// The MoAs that appeared and vanished since the last call; a MoA that went and came
    /// back (or came and went) in between is in neither.
    mutating func takeMoAChanges() -> (appeared: Set<IPAddress>, vanished: Set<IPAddress>) {
        defer {
            appeared.removeAll()
            vanished.removeAll()
        }
        return (appeared, vanished)
    }

    /// The HoAs whose first MoA changed, or whose entry came or went, since the last call.
    mutating func takeFirstMoAChanges() -> Set<IPAddress> {
        defer { firstMoAChanged.removeAll() }
        return firstMoAChanged
    }

    private mutating func retain(_ moa: IPAddress, by hoa: IPAddress) {
        guard claims.claim(moa, by: hoa) else { return }
        if vanished.remove(moa) == nil { appeared.insert(moa) }
    }

    private mutating func release(_ moa: IPAddress, by hoa: IPAddress) {
        guard claims.release(moa, by: hoa) else { return }
        if appeared.remove(moa) == nil { vanished.insert(moa) }
    }
}
