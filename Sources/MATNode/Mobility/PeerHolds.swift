import MATPacket

/// Which peers' traffic the node holds back after it moved, and since when: the decisions
/// of the mover's holds with no I/O, the time (monotonic milliseconds) passed in and the
/// engine's commands handed back for the service to send, so each transition has a unit
/// test.
///
/// A move holds the traffic to every peer of a family whose MoA changed (to every peer of
/// a family that has a MoA when the move is forced: a live migration, `matctl rebind`),
/// before the engine takes the new MoA: not one packet may leave from it before the peer
/// has accepted it. The engine holds the whole family with one command (``FamilyHolds``),
/// so the move's first alerts go out with no work per peer before them; the peers join
/// the hold here as the move gathers them, a bounded number per turn (``AlertQueue``). The
/// hold of each ends at the peer's first sign of life (it challenged the update, so it has
/// it and takes packets from the new MoA), at its acknowledgement, when its alert's
/// retransmissions ran out unanswered (the timeout, ``RetransmitSchedule``'s in
/// ``SignalingMachine``), or at once when no alert could be sent. Each end releases the
/// peer in the engine, which then sends the last packet of each of its held flows
/// (``PacketHolds``); the family's hold ends with the last of its peers' once all were
/// gathered.
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

    /// A hold that ended: the engine's commands that end it, and how long it lasted when
    /// this table armed it.
    struct Ending {
        var command: PacketProcessor.Command
        /// Milliseconds since the move that held the peer; nil for a hold this table did
        /// not arm (a first contact's), which is released all the same.
        var heldFor: UInt64?
        /// The end of the family's hold, to send after `command`: this peer was the last
        /// one the move held.
        var familyEnd: PacketProcessor.Command?
    }

    /// A family the engine holds whole since a move.
    struct FamilyHold: Equatable {
        var since: UInt64
        /// Whether the move is still gathering the family's peers: its hold lasts at least
        /// until it is done.
        var gathering = true
    }

    /// When each peer held by a move was held.
    private(set) var since: [IPAddress: UInt64] = [:]
    /// The families held whole, by the move that held them last.
    private(set) var families: [AddressFamily: FamilyHold] = [:]
    /// How many peers of each family `since` holds.
    private var counts: [AddressFamily: Int] = [:]

    /// The families a move from `previous` to `next` concerns: those whose MoA changed,
    /// or, when `force`d, those that have a MoA now. An IPv6 address that comes up after
    /// the IPv4 one (SLAAC after DHCP, or a reading between the two) must not hold the
    /// IPv4 peers' traffic for another round trip.
    static func families(from previous: NodeAddresses, to next: NodeAddresses, force: Bool) -> Set<AddressFamily> {
        Set([AddressFamily.ipv4, .ipv6].filter { family in
            force ? next.mobileAddresses.contains { $0.family == family } : previous.mobileChanged(to: next, family: family)
        })
    }

    /// A move of `families` at `now`: returns the commands that hold each in the engine
    /// whole, to be sent before the engine takes the new MoA. Its peers join the hold as
    /// the move gathers them (``join(_:)``); the hold ends once that is done
    /// (``gathered(_:)``) and each of them was released.
    mutating func move(_ families: Set<AddressFamily>, now: UInt64) -> [PacketProcessor.Command] {
        [AddressFamily.ipv4, .ipv6].filter(families.contains).map { family in
            self.families[family] = FamilyHold(since: now)
            return .holdFamily(family)
        }
    }

    /// `peers`, gathered by the move that holds their family, are held from that move on
    /// (a peer still held by an earlier move too: its clock starts again). A peer of a
    /// family no move holds is not.
    mutating func join(_ peers: [IPAddress]) {
        for peer in peers {
            guard let hold = families[peer.family] else { continue }
            if since.updateValue(hold.since, forKey: peer) == nil { counts[peer.family, default: 0] += 1 }
        }
    }

    /// The move has gathered every peer of `family`: returns the command that ends the
    /// family's hold when none of them is held any more, nil while some still are.
    mutating func gathered(_ family: AddressFamily) -> PacketProcessor.Command? {
        guard families[family]?.gathering == true else { return nil }
        families[family]?.gathering = false
        return endFamilyIfDone(family)
    }

    /// Ends the hold of `peer` for `reason`. The engine is told to release it whether or
    /// not this table armed the hold: the signaling ends a first contact's hold the same way.
    mutating func end(_ peer: IPAddress, _ reason: End, now: UInt64) -> Ending {
        guard let start = since.removeValue(forKey: peer) else { return Ending(command: .release(peer), heldFor: nil) }
        counts[peer.family, default: 1] -= 1
        return Ending(command: .release(peer), heldFor: now >= start ? now - start : 0, familyEnd: endFamilyIfDone(peer.family))
    }

    /// Makes room for `count` more peers at once, so the turns that gather a move's peers
    /// do not rehash the table whole on the way.
    mutating func reserve(_ count: Int) { since.reserveCapacity(since.count + count) }

    /// Whether `peer`'s traffic is held by a move (and it was gathered).
    func isHeld(_ peer: IPAddress) -> Bool { since[peer] != nil }

    private mutating func endFamilyIfDone(_ family: AddressFamily) -> PacketProcessor.Command? {
        guard let hold = families[family], !hold.gathering, counts[family, default: 0] == 0 else { return nil }
        families[family] = nil
        return .releaseFamily(family)
    }
}
