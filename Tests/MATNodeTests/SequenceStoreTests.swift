import Foundation
import Synchronization
import MATTestSupport
import Testing
@testable import MATNode

/// Sequence numbers never repeat and never fall behind the wall clock's floor, so a node
/// restored from a snapshot (an old counter on disk) is believed again at once.
@Suite struct SequenceStoreTests {
    let file: TemporaryFile
    var path: String { file.path }
    let clock = WallClock()

    init() throws { file = try TemporaryFile("sequence", prefix: "matd-sequence") }

    /// The wall clock the store reads, in the test's hands.
    final class WallClock: Sendable {
        let now = Mutex<UInt64>(1_800_000_000)
    }

    func store() -> SequenceStore {
        SequenceStore(path: path) { [clock] in clock.now.withLock { $0 } }
    }

    @Test func numbersStartAtTheClocksFloorAndNeverGoDown() throws {
        let floor = SequenceStore.floor(atSecond: 1_800_000_000)
        #expect(floor == 1_800_000_000 << 20)
        #expect(try store().reserve(256) == (floor + 1)...(floor + 256))
        #expect(try store().next() == floor + 257, "the same second: the counter goes on")
        // The clock steps back an hour: numbers still only go up.
        clock.now.withLock { $0 -= 3_600 }
        #expect(try store().next() == floor + 258)
        // Two seconds after the first: the floor has passed the counter.
        clock.now.withLock { $0 += 3_602 }
        #expect(try store().next() == SequenceStore.floor(atSecond: 1_800_000_002) + 1)
    }

    @Test func aRestoredSnapshotStartsAboveWhatItSentSince() throws {
        _ = try store().reserve(256)
        let snapshot = try String(contentsOfFile: path, encoding: .utf8)
        // After the snapshot the node ran on and used numbers...
        clock.now.withLock { $0 += 30 }
        let usedSince = try store().reserve(256).upperBound
        // ...then was restored: its file goes back. A second later it is above them all.
        try snapshot.write(toFile: path, atomically: true, encoding: .utf8)
        clock.now.withLock { $0 += 1 }
        #expect(try store().next() > usedSince)
    }

    @Test func aSourcesFirstBlockIsOnDiskBeforeUseAndStartsAtTheNextSecond() throws {
        let source = SequenceSource(store: store())
        let first = try source.take()
        #expect(first == SequenceStore.floor(atSecond: 1_800_000_001) + 1, "\(first)")
        #expect(try store().read() == first + 255)
        #expect(try source.take() == first + 1, "within one block")
    }

    /// A move's alerts take the first number of a new second: that block is used at once
    /// and saved after them, not synced before (the disk's sync delayed every handoff).
    @Test func aLaterBlockIsUsedAtOnceAndSavedAfter() throws {
        let source = SequenceSource(store: store())
        let first = try source.take()
        clock.now.withLock { $0 += 2 }
        let later = try source.take()
        #expect(later == SequenceStore.floor(atSecond: 1_800_000_002) + 1, "\(later)")
        #expect(try store().read() == first + 255, "not written before use")
        try source.save()
        #expect(try store().read() == later + 255, "written after")
        try source.save()
        #expect(try store().read() == later + 255, "nothing more to write")
    }

    /// A node that died before it saved its block starts again above the numbers it used,
    /// even within the same second: a new process starts at the next second's floor.
    @Test func aRestartAboveAnUnsavedBlock() throws {
        let source = SequenceSource(store: store())
        _ = try source.take()
        clock.now.withLock { $0 += 2 }
        let unsaved = try (0..<3).map { _ in try source.take() }.max()!
        let restarted = SequenceSource(store: store())
        #expect(try restarted.take() > unsaved)
    }

    @Test func exhaustionIsAnErrorNotAWrap() throws {
        try "\(UInt64.max - 1)\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try store().reserve(2) }
        #expect(SequenceStore.floor(atSecond: UInt64.max) < UInt64.max)
    }
}
