import MATPacket

/// The MoAs of the peers whose alerts are settled, which the UDP encapsulation tracks
/// (``EncapPolicy``): kept by the changes of each peer (its first MoA, whether its alert
/// is outstanding), so a turn costs the peers that changed, not a walk over all of them.
///
/// A peer still being alerted does not know this node's MoA yet: it would not answer a
/// probe, which would then look like a NAT that drops them; so it is left out until its
/// alert settles. Several peers behind one NAT share a MoA, which stays while one of them
/// names it. Pure.
struct SettledMoAs {
    /// Each settled peer's MoA.
    private var moaOf: [IPAddress: IPAddress] = [:]
    /// How many settled peers name each MoA.
    private var claims: [IPAddress: Int] = [:]

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
