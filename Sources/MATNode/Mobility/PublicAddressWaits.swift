import MATPacket

/// Behind 1:1 NAT with `public-address = auto`, the peers a move holds whose alerts wait
/// for the IMS to say which public address it sees (``PublicAddresses``): the decisions
/// with no I/O, the time (monotonic milliseconds) passed in, so each transition has a
/// unit test.
///
/// An alert naming the private address would send the peers' traffic nowhere, so it waits
/// for the answer (one IMS round trip). An IMS that does not answer (blackholed, down) is
/// asked again every 2 s, but the peers' traffic is not held for longer than ``timeout``:
/// past it their holds end (the service logs and counts it) and the traffic goes from the
/// new MoA, as it would after an alert that went unanswered. They stay waiting for their
/// alert, which goes out when the answer comes.
struct PublicAddressWaits {
    /// How long a peer's traffic is held waiting for the answer (ms): a little more than a
    /// move's hold lasts with an alert that goes unanswered (six sends, 9.4 s), so a slow
    /// IMS answer costs a peer no more than a lost alert.
    static let timeout: UInt64 = 10_000

    /// One peer waiting: where its alert goes, when its hold began, and whether the hold
    /// still stands.
    struct Waiting: Equatable {
        var hoa: IPAddress
        var moa: IPAddress
        var since: UInt64
        var held: Bool
    }

    /// The waiting peers per family, in the order they began waiting.
    private(set) var waiting: [AddressFamily: [Waiting]] = [:]
    /// Where each waiting peer stands in its family's list: a move that gathers its peers
    /// in slices (``AlertQueue``) asks once per slice, and a search per peer (or an index
    /// built per call) would make it quadratic.
    private var positions: [AddressFamily: [IPAddress: Int]] = [:]
    /// The held peers, at the end of their hold: a turn finds those whose hold ends
    /// without a walk over every waiting peer (100,000 behind one move).
    private var holds = DueQueue<IPAddress>()

    /// `peers` (each held by a move at `now`) wait for the answer of their HoA's family. A
    /// peer already waiting (a second move while the IMS is asked) has its alert go to the
    /// newer MoA and its hold run from `now`.
    mutating func wait(_ peers: [AlertQueue.Peer], now: UInt64) {
        for peer in peers {
            let family = peer.hoa.family
            let entry = Waiting(hoa: peer.hoa, moa: peer.moa, since: now, held: true)
            holds.schedule(peer.hoa, at: now + Self.timeout)
            if let index = positions[family]?[peer.hoa] {
                waiting[family]![index] = entry
            } else {
                positions[family, default: [:]][peer.hoa] = waiting[family]?.count ?? 0
                waiting[family, default: []].append(entry)
            }
        }
    }

    /// The IMS answered for `family`: every peer waiting on it is to be alerted now (its
    /// hold, if it still stands, ends with the alert as after any move).
    mutating func answered(_ family: AddressFamily) -> [AlertQueue.Peer] {
        positions[family] = nil
        let answered = waiting.removeValue(forKey: family) ?? []
        for entry in answered where entry.held { holds.remove(entry.hoa) }
        return answered.map { (hoa: $0.hoa, moa: $0.moa) }
    }

    /// The peers whose hold reached ``timeout`` at `now`: their holds are to end. They
    /// keep waiting for the answer (and their alert), no longer held.
    mutating func expire(now: UInt64) -> [IPAddress] {
        let expired = holds.takeDue(now: now)
        for hoa in expired {
            guard let index = positions[hoa.family]?[hoa] else { continue }
            waiting[hoa.family]![index].held = false
        }
        return expired
    }
}
