import MATPacket

/// When to check that a learned peer is still where its mapping says, and what its
/// silence means.
///
/// A peer that is heard from (a signed message of its own: an update, a challenge of this
/// node's update, an acknowledgement, a probe's answer) is known to be alive. One that has
/// been silent for ``idleAfter`` is probed at its MoAs (``ReachabilityProbes``): an
/// answer keeps the mapping (and the peer counts as heard), a probe round that nobody
/// answers drops it, so a dead peer stops costing traffic (and its MoA stops being taken
/// as its address) well before its registration lifetime runs out, while a live idle peer
/// keeps its mapping however long it stays quiet.
///
/// Data packets do not count as being heard: they are not signed, and anyone who spoofs a
/// MoA can send them. A peer under bulk traffic is therefore probed every ``idleAfter``
/// too, which costs one small datagram each way per MoA.
///
/// Pure: the caller passes the time (monotonic milliseconds).
struct IdleProbing {
    /// Silence after which a peer is probed (ms).
    let idleAfter: UInt64
    /// When each tracked peer was last heard from, or its mapping learned (ms).
    private(set) var lastHeard: [IPAddress: UInt64] = [:]
    /// Peers whose probe round is out.
    private(set) var probing: Set<IPAddress> = []

    init(idleAfter: UInt64) { self.idleAfter = max(1, idleAfter) }

    /// A learned mapping of `hoa` is in use: its silence is measured from now unless it
    /// is already tracked.
    mutating func track(_ hoa: IPAddress, now: UInt64) {
        if lastHeard[hoa] == nil { lastHeard[hoa] = now }
    }

    /// `hoa` proved itself alive at `now`: its silence starts again, and a probe round out
    /// for it is over.
    mutating func heard(_ hoa: IPAddress, now: UInt64) {
        guard lastHeard[hoa] != nil else { return }
        lastHeard[hoa] = now
        probing.remove(hoa)
    }

    /// `hoa`'s mapping went: nothing more to measure.
    mutating func forget(_ hoa: IPAddress) {
        lastHeard[hoa] = nil
        probing.remove(hoa)
    }

    /// Peers silent for ``idleAfter`` at `now` and not being probed already: each is
    /// returned once and counts as being probed from then on.
    mutating func due(at now: UInt64) -> [IPAddress] {
        var due: [IPAddress] = []
        for (hoa, heard) in lastHeard where !probing.contains(hoa) && now >= heard + idleAfter {
            probing.insert(hoa)
            due.append(hoa)
        }
        return due.sorted { $0.description < $1.description }
    }

    /// The probe round of `hoa` ended with no answer: whether to drop its mapping (true
    /// when the round was an idle check; a peer heard from meanwhile is kept). The peer is
    /// forgotten either way when dropped.
    mutating func roundFailed(_ hoa: IPAddress) -> Bool {
        guard probing.remove(hoa) != nil else { return false }
        lastHeard[hoa] = nil
        return true
    }

    /// When the next tracked peer becomes due, if any.
    var nextDue: UInt64? {
        lastHeard.filter { !probing.contains($0.key) }.values.map { $0 + idleAfter }.min()
    }
}
