import MATPacket

/// When matd should (re-)register: on start, on every MoA change, before the
/// registration's lifetime runs out, and after a failure with exponential backoff.
///
/// Pure: the caller passes the time (seconds, any clock it keeps using) and acts when
/// ``isDue(at:)`` says so. DNS records do not expire by themselves; the lifetime is how
/// long a registration is trusted before it is written again, which also repairs a zone
/// that lost it (a restored backup, a restarted server without a journal).
public struct RegistrationSchedule: Hashable, Sendable {
    /// How long a confirmed registration counts as current.
    public var lifetime: UInt64
    /// Re-register when this fraction of the lifetime has passed (before it runs out).
    public var refreshFraction: Double
    /// First retry delay after a failure; doubled per consecutive failure.
    public var initialBackoff: UInt64
    /// Longest retry delay.
    public var maximumBackoff: UInt64

    /// MoAs of the last confirmed registration; nil before the first.
    public private(set) var registeredMoAs: [IPAddress]?
    /// MoAs the node has now.
    public private(set) var currentMoAs: [IPAddress] = []
    /// Failures since the last success.
    public private(set) var consecutiveFailures = 0
    /// When the next attempt is due.
    public private(set) var nextAttempt: UInt64 = 0

    /// Creates a schedule that is due at once (the registration on start).
    public init(lifetime: UInt64 = 300, refreshFraction: Double = 0.5, initialBackoff: UInt64 = 1,
                maximumBackoff: UInt64 = 60) {
        self.lifetime = max(1, lifetime)
        self.refreshFraction = min(max(refreshFraction, 0.1), 0.9)
        self.initialBackoff = max(1, initialBackoff)
        self.maximumBackoff = max(self.initialBackoff, maximumBackoff)
    }

    /// Whether a registration should be sent now.
    public func isDue(at now: UInt64) -> Bool { now >= nextAttempt }

    /// The node's MoAs are now `moas`; if they differ from what is registered, the next
    /// attempt is due at once (a failure backoff does not delay a move).
    public mutating func moasChanged(to moas: [IPAddress], at now: UInt64) {
        currentMoAs = moas
        if registeredMoAs.map({ Set($0) != Set(moas) }) ?? true {
            nextAttempt = now
        }
    }

    /// Something published with the mapping changed (the signing key): register again at
    /// `now`, whatever the MoAs.
    public mutating func renew(at now: UInt64) {
        nextAttempt = now
    }

    /// A registration of `moas` was confirmed at `now`.
    public mutating func succeeded(moas: [IPAddress], at now: UInt64) {
        registeredMoAs = moas
        consecutiveFailures = 0
        let refresh = UInt64(Double(lifetime) * refreshFraction)
        nextAttempt = Set(moas) == Set(currentMoAs) ? now + max(1, refresh) : now
    }

    /// A registration failed at `now`: retry after a backoff that doubles with each
    /// consecutive failure, up to `maximumBackoff`.
    public mutating func failed(at now: UInt64) {
        consecutiveFailures += 1
        let shift = min(consecutiveFailures - 1, 30)
        let delay = min(initialBackoff << UInt64(shift), maximumBackoff)
        nextAttempt = now + delay
    }
}
