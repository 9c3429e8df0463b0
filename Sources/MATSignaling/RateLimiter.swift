import MATPacket

/// Token buckets that limit how many signaling messages are processed: one per source
/// address, and one for all sources together. Meant to run before any signature check,
/// so that a flood costs a dictionary lookup per datagram, not an Ed25519 verification.
///
/// Each bucket holds up to `burst` tokens and gains `rate` tokens a second (counted in
/// thousandths of a token per millisecond, so the arithmetic is exact); a message is
/// allowed when both its source's bucket and the global bucket hold a whole token, and
/// then takes one from each. A refused message takes nothing.
///
/// Memory is bounded: at most `maximumSources` sources are tracked. When a new source
/// arrives and the table is full, buckets that have refilled completely are dropped (such
/// a bucket is exactly what a new source would get, so dropping it loses nothing); this
/// sweep runs no more often than every 100 ms, nor than one token takes to refill. If the table is still full, the new source is not tracked and only the global
/// bucket limits it.
public struct RateLimiter: Sendable {
    struct Bucket: Sendable {
        var milliTokens: UInt64
        var updated: UInt64
    }

    /// Tokens per second each source gains.
    public let perSourceRate: UInt32
    /// The most tokens one source can save up.
    public let perSourceBurst: UInt32
    /// Tokens per second all sources together gain.
    public let globalRate: UInt32
    /// The most tokens all sources together can save up.
    public let globalBurst: UInt32
    /// The most sources tracked at once.
    public let maximumSources: Int

    private var sources: [IPAddress: Bucket] = [:]
    private var global: Bucket?
    private var lastSweep: UInt64?
    private let sweepInterval: UInt64

    /// A limiter with every bucket full. Defaults: 20 messages a second per source with
    /// bursts of 40, 500 a second in all with bursts of 1000, 4096 tracked sources.
    public init(perSourceRate: UInt32 = 20, perSourceBurst: UInt32 = 40,
                globalRate: UInt32 = 500, globalBurst: UInt32 = 1000,
                maximumSources: Int = 4096) {
        precondition(maximumSources >= 0, "negative RateLimiter maximumSources")
        self.perSourceRate = perSourceRate
        self.perSourceBurst = perSourceBurst
        self.globalRate = globalRate
        self.globalBurst = globalBurst
        self.maximumSources = maximumSources
        sweepInterval = perSourceRate == 0 ? UInt64.max : max(100, 1000 / UInt64(perSourceRate))
    }

    /// How many sources have a bucket now.
    public var trackedSources: Int { sources.count }

    /// Whether a message from `source` at time `now` (milliseconds, any epoch, not
    /// decreasing; a time earlier than one seen before counts as no time passing) may be
    /// processed. Takes a token from the source's bucket and the global one when it does.
    public mutating func allow(source: IPAddress, now: UInt64) -> Bool {
        var all = global ?? Bucket(milliTokens: Self.capacity(globalBurst), updated: now)
        Self.refill(&all, rate: globalRate, burst: globalBurst, now: now)
        defer { global = all }
        guard all.milliTokens >= 1000 else { return false }

        if var bucket = sources[source] {
            Self.refill(&bucket, rate: perSourceRate, burst: perSourceBurst, now: now)
            defer { sources[source] = bucket }
            guard bucket.milliTokens >= 1000 else { return false }
            bucket.milliTokens -= 1000
            all.milliTokens -= 1000
            return true
        }
        if sources.count >= maximumSources { sweep(now: now) }
        if sources.count < maximumSources {
            let full = Self.capacity(perSourceBurst)
            guard full >= 1000 else { return false }  // a burst of 0 allows nothing
            sources[source] = Bucket(milliTokens: full - 1000, updated: now)
        }
        all.milliTokens -= 1000
        return true
    }

    /// Drops every bucket that is full at `now`, if the last sweep is long enough ago.
    private mutating func sweep(now: UInt64) {
        if let lastSweep, now < lastSweep || now - lastSweep < sweepInterval { return }
        lastSweep = now
        let full = Self.capacity(perSourceBurst)
        sources = sources.filter { _, bucket in
            var bucket = bucket
            Self.refill(&bucket, rate: perSourceRate, burst: perSourceBurst, now: now)
            return bucket.milliTokens < full
        }
    }

    private static func capacity(_ burst: UInt32) -> UInt64 { UInt64(burst) * 1000 }

    private static func refill(_ bucket: inout Bucket, rate: UInt32, burst: UInt32, now: UInt64) {
        guard now > bucket.updated else { return }
        let full = capacity(burst)
        let (gain, productOverflow) = (now - bucket.updated).multipliedReportingOverflow(by: UInt64(rate))
        let (sum, sumOverflow) = bucket.milliTokens.addingReportingOverflow(gain)
        bucket.milliTokens = productOverflow || sumOverflow ? full : min(full, sum)
        bucket.updated = now
    }
}
