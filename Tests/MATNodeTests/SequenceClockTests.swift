import Foundation
import Synchronization
import MATTestSupport
import Testing
@testable import MATNode

/// A guest restored with its snapshot's clock (docs/security.md, S2): once the IMS has
/// said its time is ahead, the node's numbers start above everything it sent after the
/// snapshot. The host's clock is in the test's hands.
@Suite struct SequenceClockTests {
    let file: TemporaryFile
    var path: String { file.path }

    init() throws { file = try TemporaryFile("sequence", prefix: "matd-sequence-clock") }
    final class HostClock: Sendable { let now = Mutex<UInt64>(1_800_000_000) }

    @Test func theIMSsTimeLiftsTheFloorOfARestoredGuest() throws {
        let host = HostClock()
        let clock = SequenceClock { host.now.withLock { $0 } }
        let source = SequenceSource(store: SequenceStore(path: path, clock: clock.closure))
        let snapshotCounter = try source.take()
        // After the snapshot the guest ran for a minute: it sent numbers of that second.
        let sentSince = SequenceStore.floor(atSecond: 1_800_000_060) + 1
        // Restored: the snapshot's counter, and the snapshot's clock (a fresh source, as
        // after a restart). Its numbers would fall below what it sent since.
        try "\(snapshotCounter)\n".write(toFile: path, atomically: true, encoding: .utf8)
        let restored = SequenceSource(store: SequenceStore(path: path, clock: clock.closure))
        #expect(try restored.take() < sentSince)
        // The IMS's BADTIME says its time is 90 s ahead: the next number is above.
        clock.follow(90)
        #expect(clock.now == 1_800_000_090)
        #expect(try restored.take() > sentSince)
        // A host clock ahead of the IMS (a negative correction) is no reason to go lower.
        clock.follow(-500)
        #expect(clock.now == 1_800_000_000)
    }

    /// The correction is known only to the second, so the corrected clock can read the very
    /// second in which the guest's predecessor (the process that ran after the snapshot)
    /// last numbered its alerts: that second's floor is below them. Seen in the lab: a
    /// 14 s correction for a 15 s step, the restore within a second of the last move, and
    /// the renumbered alert refused as a replay. After `clockMovedForward` the numbers
    /// start at the next second, on disk before use.
    @Test func afterAForwardCorrectionNumbersStartAtTheNextSecond() throws {
        let host = HostClock()
        let clock = SequenceClock { host.now.withLock { $0 } }
        let restored = SequenceSource(store: SequenceStore(path: path, clock: clock.closure))
        _ = try restored.take()
        // The predecessor numbered alerts in second 1_800_000_014 (the real second); the IMS
        // corrects the restored clock by 14 s, one short of the real step of 15.
        let predecessorsLast = SequenceStore.floor(atSecond: 1_800_000_014) + 5
        clock.follow(14)
        let plain = try restored.take()
        #expect(plain < predecessorsLast, "the current second's floor: what the lab's guest was refused for")
        restored.clockMovedForward()
        let renumbered = try restored.take()
        #expect(renumbered > SequenceStore.floor(atSecond: 1_800_000_015), "\(renumbered)")
        #expect(renumbered > predecessorsLast)
        let saved = try #require(try SequenceStore(path: path).read())
        #expect(saved >= renumbered, "the block is on disk before its first number is used")
        #expect(try restored.take() == renumbered + 1, "the block goes on as usual after")
    }

    /// `follow` says when the IMS's time moved the clock forward: what makes the node send
    /// its waiting alerts again with numbers from the new floor (``RenumberedUpdatesTests``).
    @Test func followSaysWhenTheClockMovedForward() {
        let host = HostClock()
        let clock = SequenceClock { host.now.withLock { $0 } }
        #expect(!clock.follow(0), "no correction: nothing moved")
        #expect(clock.follow(90) && clock.floor == SequenceStore.floor(atSecond: 1_800_000_090))
        #expect(!clock.follow(90), "the same correction again (every turn reads it)")
        #expect(!clock.follow(30), "a smaller one moves the clock back, never a reason to send again")
        #expect(!clock.follow(31) && clock.now == 1_800_000_031, "a second forward is taken, but is jitter, not a clock change")
        #expect(clock.follow(33), "two seconds forward is a change")
        #expect(!clock.follow(-5) && clock.now == 1_800_000_000)
    }
}
