import MATPacket

/// Which peers' traffic the node holds back after it moved, and since when: the decisions
/// of the mover's holds with no I/O, the time (monotonic milliseconds) passed in and the
/// engine's commands handed back for the service to send, so each transition has a unit
/// test.
///
/// A move holds the traffic to every peer of a family whose MoA changed (to every peer of
/// a family that has a MoA when the move is forced: a live migration, `matctl rebind`),
/// before the engine takes the new MoA: not one packet may leave from it before the peer
/// has accepted it. The hold ends at the peer's first sign of life (it challenged the
/// update, so it has it and takes packets from the new MoA), at its acknowledgement, when
/// its alert's retransmissions ran out unanswered (the timeout, ``RetransmitSchedule``'s
/// in ``SignalingMachine``), or at once when no alert could be sent. Each end releases the
/// peer in the engine, which then sends the last packet of each of its held flows
/// (``PacketHolds``).
struct PeerHolds {
    /// Why a hold ended.
    enum End: String, Sendable {
        /// The peer challenged the update: it has it and takes packets from the new MoA.
        case signOfLife = "sign of life"
        case acknowledged
        /// The alert's retransmissions ran out with no answer.
        case unanswered
        /// No alert could be sent (no MoA or HoA of the family, no sequence number).
        case notAlerted = "no alert sent"
    }

    /// A hold that ended: the engine's command that ends it, and how long it lasted when
    /// this table armed it.
    struct Ending {
        var command: PacketProcessor.Command
        /// Milliseconds since the move that held the peer; nil for a hold this table did
        /// not arm (a first contact's), which is released all the same.
        var heldFor: UInt64?
    }

    /// When each peer held by a move was held.
    private(set) var since: [IPAddress: UInt64] = [:]

    /// The peers among `peers` that a move from `previous` to `next` concerns: those of a
    /// family whose MoA changed, or, when `force`d, of a family that has a MoA now. An IPv6
    /// address that comes up after the IPv4 one (SLAAC after DHCP, or a reading between
    /// the two) must not hold the IPv4 peers' traffic for another round trip.
    static func concerned(_ peers: [AlertQueue.Peer], from previous: NodeAddresses, to next: NodeAddresses,
                          force: Bool) -> [AlertQueue.Peer] {
        peers.filter { peer in
            let family = peer.hoa.family
            return force ? next.mobileAddresses.contains { $0.family == family }
                : previous.mobileChanged(to: next, family: family)
        }
    }

    /// Holds `peers` from `now` (a move); returns the commands that hold them in the engine,
    /// to be sent before the engine takes the new MoA.
    mutating func hold(_ peers: [IPAddress], now: UInt64) -> [PacketProcessor.Command] {
        // Room for all at once: a move with 100,000 peers would rehash the table again and
        // again on the way.
        since.reserveCapacity(since.count + peers.count)
        for peer in peers { since[peer] = now }
        return peers.map { .hold($0) }
    }

    /// Ends the hold of `peer` for `reason`. The engine is told to release it whether or
    /// not this table armed the hold: the signaling ends a first contact's hold the same way.
    mutating func end(_ peer: IPAddress, _ reason: End, now: UInt64) -> Ending {
        let heldFor = since.removeValue(forKey: peer).map { now >= $0 ? now - $0 : 0 }
        return Ending(command: .release(peer), heldFor: heldFor)
    }

    /// Whether `peer`'s traffic is held by a move.
    func isHeld(_ peer: IPAddress) -> Bool { since[peer] != nil }
}
