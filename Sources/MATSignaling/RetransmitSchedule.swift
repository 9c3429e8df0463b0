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
public struct RetransmitSchedule: Sendable, Equatable {
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
    public init(now: UInt64, initialDelay: UInt64 = 200, maximumDelay: UInt64 = 3200, maximumSends: Int = 6) {
        precondition(maximumSends >= 1, "RetransmitSchedule needs at least one send")
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.maximumSends = maximumSends
        self.deadline = now
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
