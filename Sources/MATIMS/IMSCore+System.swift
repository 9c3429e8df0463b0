#if canImport(Glibc)
import Glibc
#endif
import MATIMSCore
import MATSystem

/// The core as the server runs it: the system's clocks and the zones' journal files.
extension IMSCore {
    /// Wall-clock seconds, for TSIG.
    public static let systemClock: @Sendable () -> UInt64 = { UInt64(max(0, time(nil))) }
    /// `CLOCK_MONOTONIC` in seconds, for rate limiting and registration lifetimes.
    public static let monotonicClock: @Sendable () -> Double = { MonotonicClock.seconds() }

    /// Loads every zone from its journal files in the configuration's state directory
    /// (or keeps it in memory when there is none), with the system's clocks unless
    /// others are given (tests).
    public convenience init(configuration: IMSConfiguration, clock: @escaping @Sendable () -> UInt64 = IMSCore.systemClock,
                            monotonic: @escaping @Sendable () -> Double = IMSCore.monotonicClock) throws(JournalError) {
        try self.init(configuration: configuration, clock: clock, monotonic: monotonic,
                      journals: ZoneJournal.opener(for: configuration))
    }
}
