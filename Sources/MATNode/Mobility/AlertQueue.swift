import MATPacket

/// The alerts a move still has to send: configured peers first, then learned ones by how
/// recently they were heard from, newest first, a bounded number per turn of the service
/// loop.
///
/// Each alert is signed and sent on the service thread, which also answers the peers'
/// challenges. With 100,000 learned peers, alerting them all at once kept that thread
/// busy for many seconds, and the one peer that was talking waited behind the others for
/// its alert and then for the answer to its challenge. A newer move replaces what waits.
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

    /// Replaces what waits by `peers`: `first` ones first, then those heard from since
    /// `recentSince` by `lastHeard` (newest first), then the rest in no order (sorting
    /// them all would cost the move time before its first alert).
    mutating func replace(with peers: [Peer], first: Set<IPAddress>, recentSince: UInt64,
                          lastHeard: (IPAddress) -> UInt64) {
        var leading: [Peer] = [], recent: [(peer: Peer, heard: UInt64)] = [], rest: [Peer] = []
        for peer in peers {
            if first.contains(peer.hoa) {
                leading.append(peer)
            } else {
                let heard = lastHeard(peer.hoa)
                if heard >= recentSince && heard > 0 { recent.append((peer, heard)) } else { rest.append(peer) }
            }
        }
        let ordered = leading + recent.sorted { $0.heard > $1.heard }.map(\.peer) + rest
        waiting = ordered.reversed()
    }

    /// The next alerts to send: at most `perTurn`.
    mutating func next() -> [Peer] {
        let batch = waiting.suffix(Self.perTurn).reversed()
        waiting.removeLast(batch.count)
        return Array(batch)
    }
}
