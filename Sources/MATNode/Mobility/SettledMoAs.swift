import MATPacket

/// The MoAs of the peers whose alerts are settled, which the UDP encapsulation tracks
/// (``EncapPolicy``): kept by the changes of each peer (its first MoA, whether its alert
/// is outstanding), so a turn costs the peers that changed, not a walk over all of them.
///
/// A peer still being alerted does not know this node's MoA yet: it would not answer a
/// probe, which would then look like a NAT that drops them; so it is left out until its
/// alert settles. Several peers behind one NAT share a MoA, which stays while one of them
/// names it.
///
/// The peers to look at again wait in a queue taken a slice a turn (``note(_:)``,
/// ``nextSlice(_:)``): a start with 100,000 restored mappings changes every peer at once,
/// and looking at all of them in one turn took 1.9 s (debug build). A slice of the queue
/// costs its length; a set of changes handed over while none wait is taken as it is. Pure.
struct SettledMoAs {
    /// Each settled peer's MoA.
    private var moaOf: [IPAddress: IPAddress] = [:]
    /// How many settled peers name each MoA.
    private var claims: [IPAddress: Int] = [:]
    /// The peers being looked at, slice by slice from `cursor` (never changed meanwhile, so
    /// the index stays valid), and those noted since, next.
    private var batch: Set<IPAddress> = []
    private var cursor: Set<IPAddress>.Index
    private var takenFromBatch = 0
    private var noted: Set<IPAddress> = []

    init() { cursor = batch.endIndex }

    /// Whether peers wait to be looked at.
    var hasPending: Bool { cursor != batch.endIndex || !noted.isEmpty }

    /// How many peers wait to be looked at (one noted twice may count twice).
    var pendingCount: Int { batch.count - takenFromBatch + noted.count }

    /// `hoas` changed (their first MoA, or whether their alert is outstanding): each is
    /// looked at in a later slice, as it is then (once for all the times it was noted
    /// before that slice).
    mutating func note(_ hoas: Set<IPAddress>) {
        if noted.isEmpty { noted = hoas } else { noted.formUnion(hoas) }
    }

    /// Up to `limit` of the noted peers, the batch's first, in no particular order.
    mutating func nextSlice(_ limit: Int) -> [IPAddress] {
        if cursor == batch.endIndex {
            batch = noted
            noted = []
            cursor = batch.startIndex
            takenFromBatch = 0
            // Room for all of them at once: grown slice by slice, one slice paid for
            // rehashing the tables (0.6 s of a 100,000-peer start, debug build).
            moaOf.reserveCapacity(moaOf.count + batch.count)
            claims.reserveCapacity(claims.count + batch.count)
        }
        var slice: [IPAddress] = []
        slice.reserveCapacity(min(limit, batch.count))
        while slice.count < limit && cursor != batch.endIndex {
            slice.append(batch[cursor])
            cursor = batch.index(after: cursor)
        }
        takenFromBatch += slice.count
        return slice
    }

    /// Every MoA a settled peer names.
    var moas: Set<IPAddress> { Set(claims.keys) }
    var isEmpty: Bool { claims.isEmpty }

    /// Each `(hoa, moa)`: the peer is settled at `moa`, or (nil) not settled or not mapped.
    /// Returns the MoAs that no settled peer named before and one names now, and those
    /// named before and by none now; a MoA that went and came back within `changes` is in
    /// neither.
    mutating func update(_ changes: some Sequence<(hoa: IPAddress, moa: IPAddress?)>)
        -> (appeared: [IPAddress], vanished: [IPAddress]) {
        var before: [IPAddress: Bool] = [:]
        for (hoa, moa) in changes {
            let old = moa == nil ? moaOf.removeValue(forKey: hoa) : moaOf.updateValue(moa!, forKey: hoa)
            guard old != moa else { continue }
            if let old {
                if before[old] == nil { before[old] = true }
                claims[old]! -= 1
                if claims[old] == 0 { claims[old] = nil }
            }
            if let moa {
                if before[moa] == nil { before[moa] = claims[moa] != nil }
                claims[moa, default: 0] += 1
            }
        }
        var appeared: [IPAddress] = [], vanished: [IPAddress] = []
        for (moa, was) in before where was != (claims[moa] != nil) {
            if was { vanished.append(moa) } else { appeared.append(moa) }
        }
        return (appeared, vanished)
    }
}
