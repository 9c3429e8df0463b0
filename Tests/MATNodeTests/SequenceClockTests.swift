import Foundation
import Synchronization
import Testing
@testable import MATNode

/// A guest restored with its snapshot's clock (docs/security.md, S2): once the IMS has
/// said its time is ahead, the node's numbers start above everything it sent after the
/// snapshot. The host's clock is in the test's hands.
@Suite struct SequenceClockTests {
    let path = NSTemporaryDirectory() + "matd-sequence-clock-\(UInt32.random(in: 0...UInt32.max))"
    final class HostClock: Sendable { let now = Mutex<UInt64>(1_800_000_000) }

    @Test func theIMSsTimeLiftsTheFloorOfARestoredGuest() throws {
        defer { unlink(path) }
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
