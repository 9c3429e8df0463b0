#if canImport(Glibc)
import Glibc
#endif

/// The monotonic clock: time that never steps back when the wall clock is set, for
/// deadlines, debounce, rate limits and retransmission timers. The one place the
/// project reads `CLOCK_MONOTONIC`.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary point (boot).
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// Milliseconds since the same point.
    public static func milliseconds() -> UInt64 { nanoseconds() / 1_000_000 }

    /// Seconds since the same point, with a fraction.
    public static func seconds() -> Double { Double(nanoseconds()) / 1e9 }
}
