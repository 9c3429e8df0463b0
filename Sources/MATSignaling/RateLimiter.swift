import MATPacket

/// A token bucket per source address, so that one source's flood costs only that source
/// its messages. Meant to run before anything else, even the framing: a refused datagram
/// costs a dictionary lookup. The budget all sources share is ``SignalAdmission``'s, and
/// comes after this one, so a flood from many sources cannot spend a single source's
/// tokens, and a flood from one source cannot spend everyone's.
///
/// Memory is bounded: at most `maximumSources` sources are tracked. When a new source
/// arrives and the table is full, buckets that have refilled completely are dropped (such
/// a bucket is exactly what a new source would get, so dropping it loses nothing); this
/// sweep runs no more often than every 100 ms, nor than one token takes to refill. If the
/// table is still full, the new source is not tracked and only the shared budget limits it.
public struct RateLimiter: Sendable {
    /// Tokens per second each source gains.
    public let perSourceRate: UInt32
    /// The most tokens one source can save up.
    public let perSourceBurst: UInt32
    /// The most sources tracked at once.
    public let maximumSources: Int

    private var sources: [IPAddress: TokenBucket] = [:]
    private var lastSweep: UInt64?
    private let sweepInterval: UInt64

    /// A limiter with every bucket full. Defaults: 20 messages a second per source with
    /// bursts of 40, 4096 tracked sources.
    public init(perSourceRate: UInt32 = 20, perSourceBurst: UInt32 = 40, maximumSources: Int = 4096) {
        precondition(maximumSources >= 0, "negative RateLimiter maximumSources")
        self.perSourceRate = perSourceRate
        self.perSourceBurst = perSourceBurst
        self.maximumSources = maximumSources
        sweepInterval = perSourceRate == 0 ? UInt64.max : max(100, 1000 / UInt64(perSourceRate))
    }

    /// How many sources have a bucket now.
    public var trackedSources: Int { sources.count }

    /// Whether a message from `source` at time `now` (milliseconds, any epoch, not
    /// decreasing; a time earlier than one seen before counts as no time passing) is within
    /// its source's budget. Takes a token from the source's bucket when it is.
    public mutating func allow(source: IPAddress, now: UInt64) -> Bool {
        if sources[source] != nil { return sources[source]!.take(now: now) }
        var fresh = TokenBucket(rate: perSourceRate, burst: perSourceBurst)
        guard fresh.take(now: now) else { return false }  // a burst of 0 allows nothing
        if sources.count >= maximumSources { sweep(now: now) }
        if sources.count < maximumSources { sources[source] = fresh }
        return true
    }

    /// Drops every bucket that is full at `now`, if the last sweep is long enough ago.
    private mutating func sweep(now: UInt64) {
        if let lastSweep, now < lastSweep || now - lastSweep < sweepInterval { return }
        lastSweep = now
        sources = sources.filter { _, bucket in
            var bucket = bucket
            return !bucket.isFull(now: now)
        }
    }
}
