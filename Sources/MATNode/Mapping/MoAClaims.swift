import MATPacket

/// Which HoAs' learned mappings name each MoA: the index ``LearnedPeers`` keeps in step
/// with every change of a mapping, so the peers claiming a MoA are found in O(MoAs asked)
/// instead of by a walk over every learned peer.
///
/// A peer's answer from a MoA settles the other claims to it
/// (``MappingService/settleClaims(to:provenBy:)``), on every accepted alert and every
/// answered probe: with 100,000 learned peers a walk over all of them cost each one
/// O(peers) on the service thread. Most MoAs are one peer's (kept without an allocation);
/// several peers behind one NAT share theirs.
struct MoAClaims {
    /// The HoAs naming one MoA, in the order they claimed it.
    private enum Claimants {
        case one(IPAddress)
        case many([IPAddress])

        var hoas: [IPAddress] {
            switch self {
            case .one(let hoa): [hoa]
            case .many(let hoas): hoas
            }
        }
    }

    private var claims: [IPAddress: Claimants] = [:]

    /// Every MoA some HoA claims.
    var moas: some Collection<IPAddress> { claims.keys }

    /// How many MoAs are claimed.
    var count: Int { claims.count }

    /// `hoa`'s mapping names `moa` (again: a second claim by the same HoA changes nothing).
    /// Returns whether no HoA claimed `moa` before.
    @discardableResult
    mutating func claim(_ moa: IPAddress, by hoa: IPAddress) -> Bool {
        switch claims[moa] {
        case nil:
            claims[moa] = .one(hoa)
            return true
        case .one(let other):
            if other != hoa { claims[moa] = .many([other, hoa]) }
        case .many(var hoas):
            guard !hoas.contains(hoa) else { return false }
            claims[moa] = nil   // the array unshared, so the append does not copy it
            hoas.append(hoa)
            claims[moa] = .many(hoas)
        }
        return false
    }

    /// `hoa`'s mapping no longer names `moa`. Returns whether no HoA claims `moa` now.
    @discardableResult
    mutating func release(_ moa: IPAddress, by hoa: IPAddress) -> Bool {
        switch claims[moa] {
        case nil:
            return false
        case .one(let other):
            guard other == hoa else { return false }
            claims[moa] = nil
            return true
        case .many(var hoas):
            guard let index = hoas.firstIndex(of: hoa) else { return false }
            claims[moa] = nil
            hoas.remove(at: index)
            claims[moa] = hoas.count == 1 ? .one(hoas[0]) : .many(hoas)
            return false
        }
    }

    /// The HoAs that claim `moa`, in the order they claimed it.
    func claimants(of moa: IPAddress) -> [IPAddress] { claims[moa]?.hoas ?? [] }

    /// The HoAs other than `hoa` that claim any of `moas`, each once: by MoA in the order
    /// given, then in the order they claimed it.
    func others(claiming moas: [IPAddress], besides hoa: IPAddress) -> [IPAddress] {
        var found: [IPAddress] = [], seen: Set<IPAddress> = [hoa]
        for moa in moas {
            for other in claimants(of: moa) where seen.insert(other).inserted { found.append(other) }
        }
        return found
    }
}
