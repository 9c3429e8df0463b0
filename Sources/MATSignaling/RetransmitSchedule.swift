/// When to send (and resend) a message until it is answered: exponential backoff with a
/// cap and a bounded number of sends. Times are milliseconds on any monotonic clock.
///
/// With the defaults, the first send is due at once; after each send the schedule waits
/// 200, 400, 800, 1600, 3200 and 3200 ms, so the sends go out at 0, 200, 600, 1400, 3000
/// and 6200 ms, and an answer to the sixth is waited for until 9400 ms. Use it as:
///
/// ```swift
/// var schedule = RetransmitSchedule(now: now)
/// // on every tick, until the answer arrives:
/// if let at = schedule.nextSendAt, now >= at { send(); schedule.sent(now: now) }
/// else if schedule.hasExpired(at: now) { giveUp() }   // re-query the IMS
/// ```
///
/// A peer whose round trip was measured gets a first wait from it instead
/// (``init(now:roundTrip:)``), and a peer that answered part of an exchange gets a round
/// trip's wait for the rest (``answered(now:wait:)``).
public struct RetransmitSchedule: Sendable, Equatable {
    /// The first wait when nothing else is known, and the least first wait of a measured
    /// peer (``init(now:roundTrip:)``).
    public static let defaultInitialDelay: UInt64 = 200
    /// The longest wait by default.
    public static let defaultMaximumDelay: UInt64 = 3200

    /// The wait after the first send.
    public let initialDelay: UInt64
    /// The longest wait: doubling stops here.
    public let maximumDelay: UInt64
    /// How many times the message is sent at most.
    public let maximumSends: Int

    /// How many sends have been recorded.
    public private(set) var attempts: Int = 0
    /// When the current wait ends: the time of the next send while sends remain, and after
    /// the last send, the time to stop waiting for an answer.
    public private(set) var deadline: UInt64

    /// A schedule with nothing sent yet and the first send due at `now`. Defaults: 200 ms
    /// first wait, doubling up to 3200 ms, 6 sends.
    public init(now: UInt64, initialDelay: UInt64 = defaultInitialDelay, maximumDelay: UInt64 = defaultMaximumDelay,
                maximumSends: Int = 6) {
        precondition(maximumSends >= 1, "RetransmitSchedule needs at least one send")
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.maximumSends = maximumSends
        self.deadline = now
    }

    /// A schedule with the defaults but its first wait from the round trip measured to the
    /// peer (``firstWait(for:)``), doubling from there up to the default longest wait.
    public init(now: UInt64, roundTrip: RoundTripEstimate) {
        self.init(now: now, initialDelay: Self.firstWait(for: roundTrip))
    }

    /// The first wait before resending to a peer of round trip `roundTrip`: its
    /// retransmission timeout (RFC 6298), at least ``defaultInitialDelay`` and at most
    /// ``defaultMaximumDelay``; ``defaultInitialDelay`` while nothing was measured.
    public static func firstWait(for roundTrip: RoundTripEstimate) -> UInt64 {
        roundTrip.retransmitTimeout(floor: defaultInitialDelay, ceiling: defaultMaximumDelay)
    }

    /// The peer answered part of the exchange at `now` (it challenged the update: it has
    /// it), and what is left takes about a round trip: the next send (or, after the last,
    /// the end of the wait) comes no sooner than `wait` from `now`, as TCP restarts its timer
    /// when new data is acknowledged (RFC 6298, 5.3). A send is never brought forward.
    public mutating func answered(now: UInt64, wait: UInt64) {
        let (end, overflow) = now.addingReportingOverflow(wait)
        deadline = max(deadline, overflow ? UInt64.max : end)
    }

    /// When the next send is due, or nil when all ``maximumSends`` sends have been made.
    public var nextSendAt: UInt64? { hasGivenUp ? nil : deadline }

    /// True once all ``maximumSends`` sends have been made: nothing more will be sent. An
    /// answer to the last send may still arrive until ``deadline``; see ``hasExpired(at:)``.
    public var hasGivenUp: Bool { attempts >= maximumSends }

    /// True when every send has been made and the wait after the last one is over at
    /// `now`: time to stop waiting and fall back (re-query the IMS).
    public func hasExpired(at now: UInt64) -> Bool { hasGivenUp && now >= deadline }

    /// Records a send at `now` and starts the wait after it. Ignored once
    /// ``hasGivenUp``, so that a late extra call cannot extend the schedule.
    public mutating func sent(now: UInt64) {
        guard !hasGivenUp else { return }
        attempts += 1
        let (end, overflow) = now.addingReportingOverflow(delay(afterSend: attempts))
        deadline = overflow ? UInt64.max : end
    }

    /// The wait after send number `n` (1 for the first): ``initialDelay`` doubled `n - 1`
    /// times, at most ``maximumDelay``.
    public func delay(afterSend n: Int) -> UInt64 {
        var delay = initialDelay
        var doublings = max(0, n - 1)
        while doublings > 0 && delay < maximumDelay {
            delay = delay > UInt64.max / 2 ? UInt64.max : delay * 2
            doublings -= 1
        }
        return min(delay, maximumDelay)
    }
}
