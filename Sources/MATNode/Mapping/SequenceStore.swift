#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATSystem

/// The node's sequence numbers (registrations and signaling), kept in a file so that
/// they never repeat across restarts: each number, or block of numbers, is written and
/// synced to disk before it is used.
///
/// A number is never below the wall-clock second it was reserved in, shifted left by 20
/// bits (``floor(atSecond:)``): a node restored from a snapshot, whose file holds a counter
/// from before numbers it already sent, starts above all of them as soon as its clock is
/// past the moment they were reserved, instead of having its alerts and registrations
/// refused as replays until the old counter catches up. A clock that steps back changes
/// nothing: the counter never goes down. 2^20 numbers a second is far more than a node
/// takes, and the product stays exact in a double (below 2^53) until the year 2242.
public struct SequenceStore: Sendable {
    /// The file holding the last number handed out, in decimal.
    public let path: String
    /// Wall-clock seconds since 1970.
    let clock: @Sendable () -> UInt64

    public init(path: String, clock: @escaping @Sendable () -> UInt64 = WallClock.seconds) {
        self.path = path
        self.clock = clock
    }

    /// The lowest number reserved in wall-clock second `second`.
    public static func floor(atSecond second: UInt64) -> UInt64 {
        second <= UInt64.max >> 20 ? second << 20 : UInt64.max >> 1
    }

    /// The lowest number a reservation now would start above.
    public var floorNow: UInt64 { Self.floor(atSecond: clock()) }

    /// The next number: one more than the last one handed out (which may have been lost
    /// in a crash after use, so never reuse it). Written with write-temp-fsync-rename, so
    /// the file always holds a whole number.
    public func next() throws(SystemError) -> UInt64 {
        try reserve(1).lowerBound
    }

    /// The next `count` numbers at once, all above `lowest` too, persisted as used before
    /// they are returned: a crash forfeits the unused rest of the block, it never hands
    /// them out again.
    public func reserve(_ count: UInt64, above lowest: UInt64 = 0) throws(SystemError) -> ClosedRange<UInt64> {
        precondition(count > 0)
        let fresh = try block(after: max(try read() ?? 0, lowest), count: count)
        try save(through: fresh.upperBound)
        return fresh
    }

    /// The `count` numbers after `last` (at least above this second's floor), computed
    /// without writing them: the caller saves them with ``save(through:)`` right after use.
    public func block(after last: UInt64, count: UInt64) throws(SystemError) -> ClosedRange<UInt64> {
        let current = max(last, floorNow)
        guard current <= UInt64.max - count else { throw SystemError("sequence \(path)", detail: "exhausted") }
        return (current + 1)...(current + count)
    }

    /// Records `upper` as the last number handed out (write-temp-fsync-rename).
    public func save(through upper: UInt64) throws(SystemError) {
        try DurableFile.replace(path, with: "\(upper)\n")
    }

    /// The last number handed out, or nil before the first.
    public func read() throws(SystemError) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError("read \(path)", errno: errno)
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 32)
        let count = Glibc.read(fd, &bytes, bytes.count)
        guard count > 0,
              let value = UInt64(String(decoding: bytes[0..<count], as: UTF8.self)
                  .filter { $0.isNumber }) else {
            throw SystemError("read \(path)", detail: "not a sequence number")
        }
        return value
    }
}

/// Sequence numbers for every message the node signs, taken from blocks of 256, so a
/// burst of alerts costs one write rather than one per message. A block the wall clock
/// has passed (its second's floor is above the block) is left for a new one, so a clock
/// corrected after a snapshot restore takes effect at the next number.
///
/// The first block of a process is on disk before its first number is used, and starts
/// at the next second's floor: above every number an earlier process of this node can
/// have used, even one that died before it saved its last block. Each later block is
/// used at once and saved right after (``save()``, at the end of the service's turn):
/// the first block of a new second is what a move's alerts take, and syncing it before
/// them delayed every handoff by the disk's sync time (20 ms here under load, 66 ms at
/// worst). A number used and lost in a crash before its block was saved is still below
/// the next process's first block, since that starts at the next second; only a crash
/// together with a wall clock stepped back could repeat one, and a repeated number is
/// refused by the peer as a replay, not believed.
final class SequenceSource {
    private let store: SequenceStore
    private var block: ClosedRange<UInt64>?
    private var following: UInt64 = 0
    /// The top of the block in use while it is not on disk yet.
    private var unsaved: UInt64?
    /// Set when the wall clock moved forward (``clockMovedForward()``).
    private var startOver = false

    init(store: SequenceStore) { self.store = store }

    /// The wall clock moved forward (the IMS's time corrected a clock restored with a
    /// snapshot): the next number starts a block at the corrected clock's next second,
    /// written before use, as a process's first block does. The process that ran after the
    /// snapshot may have used numbers of the current second, and the correction is only
    /// known to the second, so the current second's floor could still be below them.
    func clockMovedForward() { startOver = true }

    /// The next number, never handed out before, in this run or an earlier one.
    func take() throws(SystemError) -> UInt64 {
        if !startOver, let block, following <= block.upperBound, store.floorNow <= block.upperBound {
            following += 1
            return following - 1
        }
        let fresh: ClosedRange<UInt64>
        if startOver {
            let nextSecond = SequenceStore.floor(atSecond: store.clock() &+ 1)
            fresh = try store.reserve(256, above: max(nextSecond, unsaved ?? block?.upperBound ?? 0))
            unsaved = nil
            startOver = false
        } else if let block {
            fresh = try store.block(after: block.upperBound, count: 256)
            unsaved = fresh.upperBound
        } else {
            fresh = try store.reserve(256, above: SequenceStore.floor(atSecond: store.clock() &+ 1))
        }
        block = fresh
        following = fresh.lowerBound + 1
        return fresh.lowerBound
    }

    /// Saves the block in use if it is not on disk yet; a failure is the caller's to
    /// report, and the block stays unsaved (tried again at the next call).
    func save() throws(SystemError) {
        guard let upper = unsaved else { return }
        try store.save(through: upper)
        unsaved = nil
    }
}
