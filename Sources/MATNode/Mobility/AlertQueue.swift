import MATPacket

/// The alerts a move still has to send: configured peers first, then learned ones by how
/// recently they were heard from, newest first, a bounded number per turn of the service
/// loop.
///
/// Each alert is signed and sent on the service thread, which also answers the peers'
/// challenges. With 100,000 learned peers, alerting them all at once kept that thread
/// busy for many seconds, and the one peer that was talking waited behind the others for
/// its alert and then for the answer to its challenge. A newer move's alerts go before
/// what an earlier one still has waiting, which stays queued: those peers are held until
/// their alert is answered (an alert names the node's MoAs as they are when it is sent).
struct AlertQueue {
    /// A peer to alert, at the MoA it is sent to.
    typealias Peer = (hoa: IPAddress, moa: IPAddress)

    /// Alerts sent per turn of the service loop.
    static let perTurn = 256

    /// In reverse order: the next one is last, so taking it costs nothing.
    private var waiting: [Peer] = []

    var isEmpty: Bool { waiting.isEmpty }
    var count: Int { waiting.count }
    /// The HoAs still to alert, in no order.
    var hoas: [IPAddress] { waiting.map(\.hoa) }

    /// Queues a move's alerts to `peers` before what waits: `first` ones first, then those
    /// heard from since `recentSince` by `lastHeard` (newest first), then the rest in no
    /// order (sorting them all would cost the move time before its first alert). Peers an
    /// earlier round still has waiting and this one does not name (the other family's,
    /// after a move of one family only) keep their place after them; dropping them would
    /// leave them held with no alert to end the hold.
    mutating func startRound(with peers: [Peer], first: Set<IPAddress>, recentSince: UInt64,
                             lastHeard: (IPAddress) -> UInt64) {
        // Built back to front as `waiting` keeps it: the rest (reversed in place), the
        // recent ones oldest first, the first ones. No intermediate copies of the round: at 100,000 peers each
        // cost the move tens of milliseconds before its first alert.
        var round: [Peer] = []
        round.reserveCapacity(peers.count)
        var leading: [Peer] = [], recent: [(peer: Peer, heard: UInt64)] = []
        for peer in peers {
            if first.contains(peer.hoa) {
                leading.append(peer)
            } else {
                let heard = lastHeard(peer.hoa)
                if heard >= recentSince && heard > 0 { recent.append((peer, heard)) } else { round.append(peer) }
            }
        }
        round.reverse()
        recent.sort { $0.heard < $1.heard }
        for entry in recent { round.append(entry.peer) }
        round.append(contentsOf: leading.reversed())
        guard !waiting.isEmpty else {
            waiting = round
            return
        }
        let named = Set(peers.map(\.hoa))
        waiting.removeAll { named.contains($0.hoa) }
        waiting = waiting + round
    }

    /// The next alerts to send: at most `perTurn`.
    mutating func next() -> [Peer] {
        let batch = waiting.suffix(Self.perTurn).reversed()
        waiting.removeLast(batch.count)
        return Array(batch)
    }
}
