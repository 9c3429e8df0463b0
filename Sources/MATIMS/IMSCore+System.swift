#if canImport(Glibc)
import Glibc
#endif
import MATIMSCore
import MATLog
import MATSystem

/// The core as the server runs it: the system's clocks and the zones' journal files.
extension IMSCore {
    /// Wall-clock seconds, for TSIG.
    public static let systemClock: @Sendable () -> UInt64 = WallClock.seconds
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

/// The core's events, written to the one log by the server that runs it.
extension IMSCore {
    /// Writes every event the core queued since the last call (``takeEvents()``).
    public func logEvents() {
        for event in takeEvents() { Log.write(Self.logLevel(of: event), "mat-ims: \(event)") }
    }

    /// How severe each event is: a failing journal or a change that does not encode is an
    /// error; a zone whose mappings never expire a warning; a refusal only a key holder
    /// can cause a notice; an expiry is routine.
    static func logLevel(of event: IMSEvent) -> LogLevel {
        switch event {
        case .journalCommitFailed, .expiryNotEncodable, .expiryCommitFailed: .error
        case .zoneWithoutExpiry, .eventsDropped: .warning
        case .updateRefusedByLimit: .notice
        case .mappingExpired: .info
        }
    }
}
