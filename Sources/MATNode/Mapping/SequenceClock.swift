import MATSystem
import Synchronization

/// The wall clock the node's sequence numbers start from (``SequenceStore``): the host's,
/// or the IMS's when the IMS is ahead of it.
///
/// A guest restored from a snapshot comes back with the snapshot's counter and, until
/// something sets it, the snapshot's time: its numbers would start below those it sent
/// after the snapshot, and peers would refuse its alerts as replays. Its first signed
/// exchange with the IMS is refused for time (BADTIME: outside the fudge, or behind the
/// node's last update), which teaches the IMS client the server's time
/// (`IMSClient.clockCorrection`); from then on the numbers start at least at the IMS's
/// second, above everything sent before the restore. Only a correction forward counts:
/// a host clock ahead of the IMS already gives higher numbers, and the counter never goes
/// down anyway.
final class SequenceClock: Sendable {
    private let correction = Atomic<Int64>(0)
    private let host: @Sendable () -> UInt64

    /// A clock on `host`, the host's wall clock in seconds (the system's by default).
    init(host: @escaping @Sendable () -> UInt64 = WallClock.seconds) {
        self.host = host
    }

    /// Takes the IMS client's correction (seconds, the IMS's time minus the host's).
    /// Returns whether it moved this clock forward by more than a second: the numbers
    /// taken before it may be below what the node sent before a restore
    /// (``SignalingMachine/renumberUpdates(below:now:environment:)``). A move of a second
    /// or less is the IMS client's own jitter (it keeps the correction it read, but does
    /// not call that a clock change), and renumbering for it would restart the
    /// retransmissions of every update sent more than a second ago.
    @discardableResult
    func follow(_ correction: Int64) -> Bool {
        let forward = max(0, correction)
        return self.correction.exchange(forward, ordering: .relaxed) + 1 < forward
    }

    /// The lowest sequence number this clock allows now (``SequenceStore/floor(atSecond:)``).
    var floor: UInt64 { SequenceStore.floor(atSecond: now) }

    /// Seconds since 1970 by the host's clock, moved forward by the correction.
    var now: UInt64 { host() &+ UInt64(correction.load(ordering: .relaxed)) }

    /// ``now`` as a closure, for ``SequenceStore``.
    var closure: @Sendable () -> UInt64 { { self.now } }
}
