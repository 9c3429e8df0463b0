/// The BPF datapath's heard map read in parts (``FastPathBPF/takeHeard()``): each read
/// takes at most ``FastPathBPF/heardPerRead`` entries after those of the read before
/// (``BPFDatapath/heard(limit:)``), so a read costs the same at 100 peers and at 65,536,
/// and successive reads go round the map. This keeps the time each peer was reported at,
/// so a peer noted at the same time as before is not reported again, and forgets at the
/// end of each round the peers the map no longer has. Pure.
struct HeardRounds<Address: Hashable> {
    /// The time (ns) each peer was reported at.
    private(set) var reported: [Address: UInt64] = [:]
    /// The peers read in the round under way.
    private var seen: Set<Address> = []

    /// Takes one read of a round, `limit` entries at most: fewer end the round. Returns the
    /// peers noted at a time not reported before, with that time in ms.
    mutating func take(_ part: [(home: Address, nanoseconds: UInt64)], limit: Int) -> [(Address, UInt64)] {
        var heard: [(Address, UInt64)] = []
        for (home, nanoseconds) in part {
            seen.insert(home)
            if reported.updateValue(nanoseconds, forKey: home) != nanoseconds { heard.append((home, nanoseconds / 1_000_000)) }
        }
        if part.count < limit {
            // Once a round: what is not in the map any more goes.
            reported = reported.filter { seen.contains($0.key) }
            seen = []
        }
        return heard
    }
}
