/// When the engine thread keeps polling the TUN device without sleeping (adaptive busy
/// polling) and when it blocks in `poll`, with no I/O and the time passed in (monotonic
/// nanoseconds), so every rule has a unit test; the engine thread only drives it.
///
/// A thread asleep in `poll` takes tens of microseconds to run again on a loaded VM
/// (sometimes milliseconds), and a round trip through matd on both ends used to cost four
/// such wakeups. After a packet the next one is likely close behind (the reply to what was
/// just forwarded, the rest of a burst), so for `window` after the last packet the engine
/// polls with a zero timeout; the window restarts with every packet. With no traffic it
/// blocks for `idleTimeoutMilliseconds` at a time: an idle matd does not spin.
///
/// Off by default: on the 2-vCPU benchmark machine, with both lab nodes and other work on
/// the same two CPUs, every window tried (50 and 200 us, with and without yielding) made
/// round trips, TCP and 64-byte UDP worse, because the spinning thread holds the CPU that
/// the thread it just woke (the peer's engine, the application) needs (docs/benchmarks.md,
/// datapath). `MATD_BUSY_POLL_US` turns it on for hosts with a core to spare.
struct BusyPollPolicy: Equatable {
    /// The window when nothing else is asked for: none (see above).
    static let defaultWindowMicroseconds: UInt64 = 0
    /// The largest window the environment may ask for: spinning longer buys nothing.
    static let maximumWindowMicroseconds: UInt64 = 10_000
    /// The environment variable that overrides the window (microseconds, 0: never spin).
    static let environmentVariable = "MATD_BUSY_POLL_US"
    /// How long a blocking poll waits (the watchdog's turn and the counters' publication).
    static let idleTimeoutMilliseconds: Int32 = 100

    /// Nanoseconds of polling without sleeping after the last packet; 0 never spins.
    let window: UInt64
    /// When the engine last handled a packet; nil before the first.
    private(set) var lastTraffic: UInt64?

    init(windowMicroseconds: UInt64 = defaultWindowMicroseconds) {
        window = min(windowMicroseconds, Self.maximumWindowMicroseconds) * 1_000
    }

    /// The window `MATD_BUSY_POLL_US` asks for: a decimal number of microseconds (capped
    /// at `maximumWindowMicroseconds`); anything else (unset, empty, not a number) keeps
    /// the default.
    static func windowMicroseconds(fromEnvironment value: String?) -> UInt64 {
        guard let value, let micros = UInt64(value) else { return defaultWindowMicroseconds }
        return min(micros, maximumWindowMicroseconds)
    }

    /// The engine read (and handled) at least one packet.
    mutating func trafficSeen(at now: UInt64) {
        lastTraffic = now
    }

    /// Whether the next poll should not sleep.
    func isSpinning(at now: UInt64) -> Bool {
        guard window > 0, let lastTraffic else { return false }
        return now < lastTraffic &+ window
    }

    /// The timeout for the next `poll`: 0 within the window, else the idle timeout.
    func pollTimeout(at now: UInt64) -> Int32 {
        isSpinning(at: now) ? 0 : Self.idleTimeoutMilliseconds
    }
}
