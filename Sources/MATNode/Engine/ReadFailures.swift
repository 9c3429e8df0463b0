/// What the engine does about a failed TUN read: count it, log it at most once per
/// `logInterval` (with the count so far), and pause before the next poll, so a device
/// that keeps failing (it went away, the kernel keeps returning an error) costs a log
/// line a second and a thread that sleeps, never a silent busy loop.
/// Pure: the time (monotonic milliseconds) is passed in; the engine sleeps the pause.
struct ReadFailures {
    /// Milliseconds between two log lines about failed reads.
    static let logInterval: UInt64 = 1_000
    /// How long the engine waits after a failed read before it polls the device again.
    static let pauseMicroseconds: UInt32 = 10_000

    /// What to do about one failed read.
    struct Decision: Equatable {
        /// Failed reads so far, this one included (the `tunReadErrors` counter).
        var count: UInt64
        /// Whether this one is logged (none was in the last `logInterval`).
        var log: Bool
        /// How long to wait before polling again.
        var pauseMicroseconds: UInt32
    }

    private(set) var count: UInt64 = 0
    private var lastLog: UInt64?

    /// One read failed at `now`.
    mutating func failed(now: UInt64) -> Decision {
        count &+= 1
        let log = lastLog.map { now >= $0 &+ Self.logInterval } ?? true
        if log { lastLog = now }
        return Decision(count: count, log: log, pauseMicroseconds: Self.pauseMicroseconds)
    }
}
