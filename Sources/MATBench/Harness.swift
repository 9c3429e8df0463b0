#if canImport(Glibc)
import Glibc
#endif

/// CPU time used by the calling thread, in nanoseconds.
///
/// The harness times with this clock, not the wall clock. On the shared 2-vCPU VM other
/// processes' builds take the CPU from a timed call now and then; a lookup call (about
/// 20 ms) is descheduled several times per call under load, and wall time counts those
/// waits: the mapping-table ratios moved by up to ±15% between runs. Thread CPU time leaves
/// the waits out; what the other processes do to the caches meanwhile still counts, for
/// both sides alike.
@inline(never)
func threadCPUNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// One benchmark case: a Swift body and a C body doing the same work on the same data.
///
/// Each body runs `operations` operations per call and returns a value derived from its
/// results so the optimizer cannot drop the work.
struct ComparedCase {
    let name: String
    let operations: Int
    let swift: () -> UInt64
    let c: () -> UInt64
}

/// Runs Swift and C alternately, `rounds` times each, and prints the median CPU time per
/// operation of each and their ratio. Interleaving makes both sides see the same machine
/// noise, which matters on a shared 2-core VM.
func runCompared(_ benchCase: ComparedCase, rounds: Int = 21) {
    var sink: UInt64 = 0
    sink &+= benchCase.swift()
    sink &+= benchCase.c()
    var swiftTimes: [Double] = []
    var cTimes: [Double] = []
    for round in 0..<rounds {
        // Alternate which side goes first so neither always runs on a warmer cache.
        let order = round % 2 == 0 ? [true, false] : [false, true]
        for runSwift in order {
            let start = threadCPUNanoseconds()
            sink &+= runSwift ? benchCase.swift() : benchCase.c()
            let elapsed = Double(threadCPUNanoseconds() - start) / Double(benchCase.operations)
            if runSwift { swiftTimes.append(elapsed) } else { cTimes.append(elapsed) }
        }
    }
    let swiftNs = median(swiftTimes)
    let cNs = median(cTimes)
    let ratio = cNs / swiftNs
    print("bench: translate-\(benchCase.name) ratio=\(format(ratio, 3)) swift_ns=\(format(swiftNs, 2)) c_ns=\(format(cNs, 2))")
    consume(sink)
}

/// Keeps a result alive so the optimizer cannot remove the work that produced it.
@inline(never) @_optimize(none)
func consume(_ value: UInt64) {}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

func format(_ value: Double, _ decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    return "\(rounded)"
}
