import MATPacket

/// The alerts a move still has to send: configured peers first, then learned ones by how
/// recently they were heard from, newest first, a bounded number per turn of the service
/// loop; and the learned peers a move has still to gather, a bounded number per turn too.
///
/// Each alert is signed and sent on the service thread, which also answers the peers'
/// challenges. With 100,000 learned peers, alerting them all at once kept that thread
/// busy for many seconds, and the one peer that was talking waited behind the others for
/// its alert and then for the answer to its challenge. Gathering them (each one's MoA, how
/// recently it was heard from, its hold) before the first alert cost the move 0.2-0.3 s
/// more in one turn: a move now sends its configured peers' alerts at once and hands the
/// learned HoAs over as they were (``begin(for:)``, ``gather(_:)``); the service takes
/// ``gatheredPerTurn`` of them per turn (``nextToGather()``, ``add(_:to:first:recentSince:lastHeard:)``)
/// and the learned peers' alerts go once all are in, in the same order as if the round had
/// been sorted whole.
///
/// A newer move's alerts go before what an earlier one still has waiting, which stays
/// queued: those peers are held until their alert is answered (an alert names the node's
/// MoAs as they are when it is sent). A peer queued again by a newer round goes once, with it.
struct AlertQueue {
    /// A peer to alert, at the MoA it is sent to.
    typealias Peer = (hoa: IPAddress, moa: IPAddress)

    /// Alerts sent per turn of the service loop.
    static let perTurn = 256
    /// Learned HoAs gathered per turn of the service loop while a move gathers them.
    static let gatheredPerTurn = 2_048

    /// A slice of a round's learned HoAs to gather, for the families it still gathers.
    struct Gathering {
        var hoas: ArraySlice<IPAddress>
        var families: Set<AddressFamily>
        /// The round they go to (``add(_:to:first:recentSince:lastHeard:)``).
        var round: UInt64
        /// Whether the round has nothing more to gather after this slice.
        var isLast: Bool
    }

    /// One move's alerts.
    private struct Round {
        var serial: UInt64
        /// The families whose peers it still gathers; none once it gathers nothing more.
        var families: Set<AddressFamily>
        /// The learned HoAs to gather, from `pendingNext` on; nil until handed over.
        var pending: [IPAddress]?
        var pendingNext = 0
        /// Configured peers, from `leadingNext` on.
        var leading: [Peer] = []
        var leadingNext = 0
        /// Peers heard from recently, in runs each sorted oldest first: the next one is the
        /// newest of the runs' last ones, so no turn sorts the whole round.
        var recent: [[(peer: Peer, heard: UInt64)]] = []
        /// The rest, in the order gathered, from `restNext` on.
        var rest: [Peer] = []
        var restNext = 0

        var isGathering: Bool { !families.isEmpty }

        /// The next peer, or nil when the round has none (or, while it gathers, none before
        /// its learned peers are all in).
        mutating func next() -> Peer? {
            if leadingNext < leading.count {
                defer { leadingNext += 1 }
                return leading[leadingNext]
            }
            guard !isGathering else { return nil }
            if let newest = recent.indices.max(by: { recent[$0].last!.heard < recent[$1].last!.heard }) {
                let peer = recent[newest].removeLast().peer
                if recent[newest].isEmpty { recent.remove(at: newest) }
                return peer
            }
            guard restNext < rest.count else { return nil }
            defer { restNext += 1 }
            return rest[restNext]
        }
    }

    /// Newest first.
    private var rounds: [Round] = []
    /// The round whose entry for each queued HoA goes: an older round's is skipped.
    private var queued: [IPAddress: UInt64] = [:]
    private var serial: UInt64 = 0

    /// Whether no alert waits and no move gathers peers.
    var isEmpty: Bool { queued.isEmpty && !rounds.contains(where: \.isGathering) }
    /// The alerts waiting (not counting peers still to gather).
    var count: Int { queued.count }
    /// The HoAs still to alert, in no order: those queued, and those still to gather of the
    /// families gathered.
    var hoas: [IPAddress] {
        var hoas = Array(queued.keys)
        for round in rounds where round.isGathering {
            guard let pending = round.pending else { continue }
            hoas += pending[round.pendingNext...].filter { round.families.contains($0.family) }
        }
        return hoas
    }

    /// Starts a move's round for `families`, before what waits; its learned HoAs come with
    /// ``gather(_:)``. An earlier round still gathering stops gathering these families,
    /// which this one gathers anew. Returns the round's serial.
    @discardableResult
    mutating func begin(for families: Set<AddressFamily>) -> UInt64 {
        serial += 1
        for index in rounds.indices where rounds[index].isGathering {
            rounds[index].families.subtract(families)
            if !rounds[index].isGathering { rounds[index].pending = nil }
        }
        rounds.insert(Round(serial: serial, families: families), at: 0)
        return serial
    }

    /// The learned HoAs the newest round gathers (every one learned: those of other
    /// families are passed over when gathered).
    mutating func gather(_ hoas: [IPAddress]) {
        guard !rounds.isEmpty, rounds[0].isGathering else { return }
        // Room for all at once: growing past 65,536 rehashed the table in one turn (0.2 s
        // of a debug build at 100,000 peers).
        queued.reserveCapacity(queued.count + hoas.count)
        rounds[0].pending = hoas
        rounds[0].pendingNext = 0
    }

    /// The next slice to gather, at most ``gatheredPerTurn`` HoAs of the newest round that
    /// gathers; nil when none does (or its HoAs are not handed over yet).
    mutating func nextToGather() -> Gathering? {
        guard let index = rounds.firstIndex(where: \.isGathering), let pending = rounds[index].pending else { return nil }
        let start = rounds[index].pendingNext
        let end = min(pending.count, start + Self.gatheredPerTurn)
        rounds[index].pendingNext = end
        let slice = Gathering(hoas: pending[start..<end], families: rounds[index].families,
                              round: rounds[index].serial, isLast: end == pending.count)
        if slice.isLast {
            rounds[index].families = []
            rounds[index].pending = nil
        }
        return slice
    }

    /// Queues `peers` in round `serial` (the newest when nil): `first` ones first, then
    /// those heard from since `recentSince` by `lastHeard` (newest first), then the rest in
    /// the order given. A peer an older round still has waiting goes with this one only.
    mutating func add(_ peers: [Peer], to serial: UInt64? = nil, first: Set<IPAddress>, recentSince: UInt64,
                      lastHeard: (IPAddress) -> UInt64) {
        let found: Int?
        if let serial { found = rounds.firstIndex { $0.serial == serial } } else { found = rounds.indices.first }
        guard let index = found else { return }
        var recent: [(peer: Peer, heard: UInt64)] = []
        for peer in peers {
            queued[peer.hoa] = rounds[index].serial
            if first.contains(peer.hoa) {
                rounds[index].leading.append(peer)
            } else {
                let heard = lastHeard(peer.hoa)
                if heard >= recentSince && heard > 0 { recent.append((peer, heard)) } else { rounds[index].rest.append(peer) }
            }
        }
        guard !recent.isEmpty else { return }
        recent.sort { $0.heard < $1.heard }
        rounds[index].recent.append(recent)
    }

    /// Queues a move's alerts to `peers`, all known now, before what waits (as ``begin(for:)``
    /// with nothing to gather, then ``add(_:to:first:recentSince:lastHeard:)``). Peers an
    /// earlier round still has waiting and this one does not name (the other family's,
    /// after a move of one family only) keep their place after them; dropping them would
    /// leave them held with no alert to end the hold.
    mutating func startRound(with peers: [Peer], first: Set<IPAddress>, recentSince: UInt64,
                             lastHeard: (IPAddress) -> UInt64) {
        let round = begin(for: [])
        add(peers, to: round, first: first, recentSince: recentSince, lastHeard: lastHeard)
    }

    /// The next alerts to send: at most `perTurn`, none of a round still gathering but its
    /// configured peers' (nor any of an older round's meanwhile).
    mutating func next() -> [Peer] {
        var batch: [Peer] = []
        while batch.count < Self.perTurn, !rounds.isEmpty {
            guard let peer = rounds[0].next() else {
                if rounds[0].isGathering { break }
                rounds.removeFirst()
                continue
            }
            guard queued[peer.hoa] == rounds[0].serial else { continue }
            queued[peer.hoa] = nil
            batch.append(peer)
        }
        return batch
    }
}
