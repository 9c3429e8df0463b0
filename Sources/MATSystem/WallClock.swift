#if canImport(Glibc)
import Glibc
#endif

/// The wall clock: time since 1970 as the host has it set, which an NTP correction or a
/// guest restored from a snapshot can step either way. Only for what must agree with
/// other hosts or with people (TSIG's time, the floor of sequence numbers, the time on an
/// event); deadlines and intervals use ``MonotonicClock``. The one place the project
/// reads `CLOCK_REALTIME`.
public enum WallClock {
    /// Whole seconds since 1970 (0 for a clock set before it).
    @Sendable public static func seconds() -> UInt64 {
        let now = timespec.realtime()
        return UInt64(max(0, now.tv_sec))
    }

    /// Seconds since 1970, with a fraction.
    public static func secondsWithFraction() -> Double {
        let now = timespec.realtime()
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

extension timespec {
    fileprivate static func realtime() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }
}
