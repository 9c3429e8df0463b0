#if canImport(Glibc)
import Glibc
#endif

/// The monotonic clock: time that never steps back when the wall clock is set, for
/// deadlines, debounce and retransmission timers.
public enum MonotonicClock {
    /// Milliseconds since an arbitrary point (boot).
    public static func milliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000 + UInt64(now.tv_nsec) / 1_000_000
    }
}
