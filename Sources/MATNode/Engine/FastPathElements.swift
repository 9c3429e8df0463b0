import MATPacket

/// The kernel fast path's per-peer elements (docs/datapath.md, "Kernel fast path"): which
/// peers the kernel's maps hold now, and what to add or delete so they hold what the
/// engine's latest decisions say, without a walk over every peer.
///
/// The engine decides for the HoAs a batch of commands touched (a mapping, a hold, a MoA
/// checked or put in UDP); this turns those decisions into element deltas: `out` maps a
/// HoA to its preferred MoA, `in` each of its MoAs back to the HoA. A peer that stops
/// being eligible has its elements in the delta's deletions, which the caller writes
/// before it reads another packet, so the kernel never translates for a peer the engine
/// holds. Pure: the kernel is written by ``KernelFastPath``.
///
/// A peer joins the maps later than it leaves them: a HoA not in the maps that a change
/// touched waits in a backlog, taken a bounded number at a time, every few milliseconds
/// (``KernelFastPath``), and decided on then. So the 100,000 mappings restored at start,
/// one command each, cost a hundred transactions rather than 100,000, and the first write
/// (and the one after a failure) does not walk the table in one go while packets wait.
struct FastPathElements: Equatable, Sendable {
    /// One element of a map: `key : value`.
    struct Element: Hashable, Sendable, Comparable {
        var key: IPAddress
        var value: IPAddress

        static func < (a: Element, b: Element) -> Bool {
            FastPathElements.precedes(a.key, b.key) || (a.key == b.key && FastPathElements.precedes(a.value, b.value))
        }
    }

    /// Address order without text: IPv4 before IPv6, then by value (a sort of 100,000
    /// addresses by their text took seconds in a debug build).
    static func precedes(_ a: IPAddress, _ b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): x < y
        case (.v6(let x), .v6(let y)): x < y
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }

    /// What changes in the maps: the maps of `flushed` families are emptied first, then
    /// the deletions, then the additions, in one transaction.
    struct Delta: Equatable, Sendable {
        var flushed: Set<AddressFamily> = []
        var outDeleted: [Element] = []
        var inDeleted: [Element] = []
        var outAdded: [Element] = []
        var inAdded: [Element] = []
        /// Peers not taken because the maps hold `limit` peers already, or one of their MoAs
        /// is another peer's (the engine carries them).
        var refused = 0

        var isEmpty: Bool { flushed.isEmpty && outDeleted.isEmpty && inDeleted.isEmpty && outAdded.isEmpty && inAdded.isEmpty }
    }

    /// The most peers the maps hold; beyond it a peer stays with the engine.
    let limit: Int
    /// The peers in the maps, by HoA.
    private(set) var peers: [IPAddress: FastPathRuleset.Peer] = [:]
    /// Which peer each MoA of the `in` maps belongs to.
    private var owners: [IPAddress: IPAddress] = [:]
    /// HoAs still to look at after a write from scratch, and how far the taking got.
    private var backlog: [IPAddress] = []
    private var backlogTaken = 0

    init(limit: Int) {
        self.limit = limit
    }

    /// The number of peers of `family` in the maps.
    func count(_ family: AddressFamily) -> Int { family == .ipv4 ? count4 : peers.count - count4 }
    private var count4 = 0

    /// The HoA whose `in` element `moa` is, if any.
    func owner(ofMoA moa: IPAddress) -> IPAddress? { owners[moa] }

    /// Whether HoAs are waiting in the backlog.
    var hasBacklog: Bool { backlogTaken < backlog.count }

    /// How many HoAs wait in the backlog.
    var backlogCount: Int { backlog.count - backlogTaken }

    /// Puts `hoa` at the end of the backlog (a HoA there twice is decided twice, the
    /// second time without a change).
    mutating func enqueue(_ hoa: IPAddress) { backlog.append(hoa) }

    /// Forgets every element (the kernel's maps are empty: the first write, or the table
    /// was removed after a failure) and puts `hoas` in the backlog.
    mutating func restart(backlog hoas: [IPAddress]) {
        peers = [:]
        owners = [:]
        count4 = 0
        backlog = hoas
        backlogTaken = 0
    }

    /// Takes up to `count` HoAs from the backlog, in its order.
    mutating func takeBacklog(_ count: Int) -> ArraySlice<IPAddress> {
        let end = min(backlog.count, backlogTaken + count)
        defer {
            backlogTaken = end
            if backlogTaken == backlog.count {
                backlog = []
                backlogTaken = 0
            }
        }
        return backlog[backlogTaken..<end]
    }

    /// Records the decisions (each HoA at most once: its peer, or nil for none) and returns
    /// the elements to delete and add. Every peer whose decision changed loses its old
    /// elements first; an element deleted and added again unchanged is in neither list.
    /// When more peers of a family leave than stay in the maps in all (a move holds every
    /// active peer), that family's maps are flushed and the staying peers added again:
    /// cheaper than naming every element, and still no more work than the decisions.
    mutating func apply(_ decisions: [IPAddress: FastPathRuleset.Peer?]) -> Delta {
        var outDeleted: [IPAddress: IPAddress] = [:], inDeleted: [IPAddress: IPAddress] = [:]
        var outAdded: [IPAddress: IPAddress] = [:], inAdded: [IPAddress: IPAddress] = [:]
        var wanted: [FastPathRuleset.Peer] = []
        for (hoa, peer) in decisions {
            if let old = peers[hoa] {
                if old == peer { continue }
                peers[hoa] = nil
                if hoa.family == .ipv4 { count4 -= 1 }
                outDeleted[hoa] = old.preferred
                for moa in old.moas where owners[moa] == hoa {
                    owners[moa] = nil
                    inDeleted[moa] = hoa
                }
            }
            if let peer { wanted.append(peer) }
        }
        var refused = 0
        // In HoA order, so which peers the limit leaves out does not depend on hashing.
        for peer in wanted.sorted() {
            // A MoA has one owner (the engine's table refuses a second); kept so here too,
            // since one duplicate element would fail the whole transaction.
            guard peers.count < limit, peer.moas.allSatisfy({ owners[$0] == nil }) else {
                refused += 1
                continue
            }
            peers[peer.hoa] = peer
            if peer.hoa.family == .ipv4 { count4 += 1 }
            outAdded[peer.hoa] = peer.preferred
            for moa in peer.moas {
                owners[moa] = peer.hoa
                inAdded[moa] = peer.hoa
            }
        }
        var flushed: Set<AddressFamily> = []
        for family in [AddressFamily.ipv4, .ipv6] where outDeleted.keys.count(where: { $0.family == family }) > peers.count {
            flushed.insert(family)
            outDeleted = outDeleted.filter { $0.key.family != family }
            inDeleted = inDeleted.filter { $0.key.family != family }
            for peer in peers.values where peer.hoa.family == family {
                outAdded[peer.hoa] = peer.preferred
                for moa in peer.moas { inAdded[moa] = peer.hoa }
            }
        }
        for (key, value) in outAdded where outDeleted[key] == value {
            outAdded[key] = nil
            outDeleted[key] = nil
        }
        for (key, value) in inAdded where inDeleted[key] == value {
            inAdded[key] = nil
            inDeleted[key] = nil
        }
        func elements(_ map: [IPAddress: IPAddress]) -> [Element] { map.map { Element(key: $0.key, value: $0.value) }.sorted() }
        return Delta(flushed: flushed, outDeleted: elements(outDeleted), inDeleted: elements(inDeleted), outAdded: elements(outAdded),
                     inAdded: elements(inAdded), refused: refused)
    }
}
