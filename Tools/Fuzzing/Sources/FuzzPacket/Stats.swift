// Counters the harness keeps across inputs, printed at exit when MAT_FUZZ_STATS is set,
// so a run can show which drop reasons and paths its corpus reached.

import MATPacket

#if canImport(Glibc)
import Glibc
#endif

enum Stats {
    nonisolated(unsafe) static var registered = false
    nonisolated(unsafe) static var shortInputs = 0
    nonisolated(unsafe) static var parsed = 0
    nonisolated(unsafe) static var translated = 0
    nonisolated(unsafe) static var roundTrips = 0
    nonisolated(unsafe) static var partialOverlaps = 0
    nonisolated(unsafe) static var zeroFlips = 0
    /// Drops by reason, indexed by `DropReason.rawValue`, as the engine's counters are.
    nonisolated(unsafe) static var drops = [Int](repeating: 0, count: DropReason.allCases.count)

    static func count(_ reason: DropReason) {
        drops[Int(reason.rawValue)] += 1
    }

    static func registerOnce() {
        guard !registered else { return }
        registered = true
        guard getenv("MAT_FUZZ_STATS") != nil else { return }
        atexit {
            var lines = ["FuzzPacket stats: short=\(Stats.shortInputs) parsed=\(Stats.parsed) translated=\(Stats.translated) roundTrips=\(Stats.roundTrips) partialOverlaps=\(Stats.partialOverlaps) zeroFlips=\(Stats.zeroFlips)"]
            for reason in DropReason.allCases {
                lines.append("  drop \(reason): \(Stats.drops[Int(reason.rawValue)])")
            }
            print(lines.joined(separator: "\n"))
        }
    }
}
