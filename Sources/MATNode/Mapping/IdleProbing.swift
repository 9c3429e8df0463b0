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
/// Data packets from the peer (the engine translated them from its MoA to its HoA, or
/// they came from its MoA in UDP encapsulation: ``ReceiveMarks``; or the kernel fast
/// path translated them: ``FastPathHeard``) count too, but less:
/// they are not signed, and anyone who sends from the MoA (the next tenant of a dead
/// node's address, say) can send them. So they put off the probe, and keep a peer whose
/// probe round went unanswered while they kept coming (a peer whose signaling port is
/// blocked), but only for ``dataOnlyLimit`` after the peer was last heard from itself:
/// after that it is probed whatever its data says, and dropped if that round goes
/// unanswered. So data keeps a dead node's mapping (the new tenant of its address
/// taken for it) for at most ``dataOnlyLimit`` and one probe round after the node's last
/// signed word, and a live peer sending bulk data is probed once per ``dataOnlyLimit``
/// instead of once per ``idleAfter``.
///
/// Each tracked peer not being probed waits in a ``DueQueue`` at the time it becomes due,
/// moved on each change of its evidence, so a turn finds the due peers without a walk over
/// every tracked one.
///
/// Pure: the caller passes the time (monotonic milliseconds).
struct IdleProbing {
    /// Silence after which a peer is probed (ms).
    let idleAfter: UInt64
    /// How long data alone keeps a peer from its probe, or from being dropped (ms): two
    /// idle periods (60 s with the default record TTL), the longest a new tenant's data
    /// keeps a dead node's mapping short of the probe round, and half the probes of a
    /// silent peer for one that sends data.
    var dataOnlyLimit: UInt64 { idleAfter * Self.dataOnlyPeriods }
    /// ``dataOnlyLimit`` in idle periods.
    static let dataOnlyPeriods: UInt64 = 2
    /// When each tracked peer was last heard from, or its mapping learned (ms).
    private(set) var lastHeard: [IPAddress: UInt64] = [:]
    /// When data last came from each tracked peer (ms).
    private(set) var lastData: [IPAddress: UInt64] = [:]
    /// Peers whose probe round is out, with when it started (ms).
    private(set) var probing: [IPAddress: UInt64] = [:]
    /// The tracked peers not being probed, at the time each becomes due (``dueAt(_:)``).
    private var waiting = DueQueue<IPAddress>()

    init(idleAfter: UInt64) { self.idleAfter = max(1, idleAfter) }

    /// A learned mapping of `hoa` is in use: its silence is measured from now unless it
    /// is already tracked.
    mutating func track(_ hoa: IPAddress, now: UInt64) {
        guard lastHeard[hoa] == nil else { return }
        lastHeard[hoa] = now
        reschedule(hoa)
    }

    /// `hoa` proved itself alive at `now`: its silence starts again, and a probe round out
    /// for it is over.
    mutating func heard(_ hoa: IPAddress, now: UInt64) {
        guard lastHeard[hoa] != nil else { return }
        lastHeard[hoa] = now
        probing[hoa] = nil
        reschedule(hoa)
    }

    /// Packets of `hoa`'s came in by `now` (unsigned evidence): through the engine, or
    /// through the kernel fast path, whose reports can come late and out of order
    /// (``FastPathHeard``), so an older time never replaces a newer one.
    mutating func dataArrived(from hoa: IPAddress, now: UInt64) {
        guard lastHeard[hoa] != nil else { return }
        lastData[hoa] = max(lastData[hoa] ?? 0, now)
        if probing[hoa] == nil { reschedule(hoa) }
    }

    /// `hoa`'s mapping went: nothing more to measure.
    mutating func forget(_ hoa: IPAddress) {
        lastHeard[hoa] = nil
        lastData[hoa] = nil
        probing[hoa] = nil
        waiting.remove(hoa)
    }

    /// Peers silent for ``idleAfter`` at `now` (data counting, within ``dataOnlyLimit``)
    /// and not being probed already: each is returned once and counts as being probed
    /// from then on.
    mutating func due(at now: UInt64, limit: Int = .max) -> [IPAddress] {
        let due = waiting.takeDue(now: now, limit: limit)
        for hoa in due { probing[hoa] = now }
        return due.sorted()
    }

    private mutating func reschedule(_ hoa: IPAddress) { waiting.schedule(hoa, at: dueAt(hoa)) }

    /// When `hoa` becomes due: an idle period after it was last heard from, or after its
    /// last data, but no later than ``dataOnlyLimit`` after it was last heard from.
    private func dueAt(_ hoa: IPAddress) -> UInt64 {
        let heard = lastHeard[hoa] ?? 0
        let evidence = max(heard, lastData[hoa] ?? 0)
        return min(evidence, heard + dataOnlyLimit - idleAfter) + idleAfter
    }

    /// `hoa` was due but its probe round did not start (every probe slot was taken,
    /// ``ReachabilityProbes``): it is due again, so a later turn starts it instead of
    /// leaving it counted as being probed, never probed nor dropped.
    mutating func roundNotStarted(_ hoa: IPAddress) {
        guard probing.removeValue(forKey: hoa) != nil else { return }
        reschedule(hoa)
    }

    /// The probe round of `hoa` ended with no answer at `now`: whether to drop its
    /// mapping. True when the round was an idle check, unless the peer was heard from
    /// meanwhile, or its data kept coming during the round within ``dataOnlyLimit``. The
    /// peer is forgotten when dropped.
    mutating func roundFailed(_ hoa: IPAddress, now: UInt64) -> Bool {
        guard let started = probing.removeValue(forKey: hoa) else { return false }
        if let data = lastData[hoa], data >= started, now < (lastHeard[hoa] ?? 0) + dataOnlyLimit {
            reschedule(hoa)
            return false
        }
        forget(hoa)
        return true
    }

    /// When the next tracked peer becomes due, if any.
    var nextDue: UInt64? { waiting.nextDeadline }
}
