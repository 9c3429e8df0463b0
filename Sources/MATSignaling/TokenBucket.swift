/// One token bucket: holds up to `burst` tokens and gains `rate` tokens a second. Tokens
/// are counted in thousandths, gained per millisecond, so the arithmetic is exact; a time
/// earlier than one already seen counts as no time passing. Starts full.
public struct TokenBucket: Sendable, Equatable {
    /// Tokens gained per second.
    public let rate: UInt32
    /// The most tokens the bucket holds.
    public let burst: UInt32
    private var milliTokens: UInt64
    private var updated: UInt64?

    /// A full bucket.
    public init(rate: UInt32, burst: UInt32) {
        self.rate = rate
        self.burst = burst
        milliTokens = UInt64(burst) * 1000
    }

    /// Takes one token at `now` (milliseconds) if the bucket holds a whole one.
    public mutating func take(now: UInt64) -> Bool {
        refill(now: now)
        guard milliTokens >= 1000 else { return false }
        milliTokens -= 1000
        return true
    }

    /// Takes one token at `now` if the bucket still holds `reserve` whole tokens after it:
    /// what is left is for the takers ``take(now:)`` serves.
    public mutating func take(now: UInt64, keeping reserve: UInt32) -> Bool {
        refill(now: now)
        guard milliTokens >= (UInt64(reserve) + 1) * 1000 else { return false }
        milliTokens -= 1000
        return true
    }

    /// Whether the bucket is full at `now`: it is then exactly what a new bucket would be.
    public mutating func isFull(now: UInt64) -> Bool {
        refill(now: now)
        return milliTokens == UInt64(burst) * 1000
    }

    private mutating func refill(now: UInt64) {
        defer { updated = max(updated ?? now, now) }
        guard let updated, now > updated else { return }
        let full = UInt64(burst) * 1000
        let (gain, productOverflow) = (now - updated).multipliedReportingOverflow(by: UInt64(rate))
        let (sum, sumOverflow) = milliTokens.addingReportingOverflow(gain)
        milliTokens = productOverflow || sumOverflow ? full : min(full, sum)
    }
}
