import MATPacket

/// What a node does with a signaling datagram before it parses it (docs/signaling.md,
/// "Under load"): each source's own budget first, then the budget all sources share.
/// While that shared budget lasts every message is handled; once it is spent the node is
/// under load, and a message without a valid cookie from its source gets a cookie reply
/// instead of any work (no key lookup, no signature check). A genuine sender receives the
/// cookie and sends again with it, one round trip later; a spoofed source never sees it.
/// Messages with a valid cookie do not draw on the shared budget, so a flood from spoofed
/// sources cannot starve them.
public struct SignalAdmission: Sendable {
    /// What to do with one datagram.
    public enum Verdict: Equatable, Sendable {
        /// Handle it.
        case accept
        /// Under load and no valid cookie: send this cookie back to the source, nothing else.
        case askForCookie(Cookie)
        /// Over the source's budget, or under load with the cookie replies' budget spent too.
        case refuse
    }

    private var perSource: RateLimiter
    private var shared: TokenBucket
    private var cookieReplies: TokenBucket
    private var cookies = CookieGuard()

    /// Defaults: per source 20 messages a second with bursts of 40; all sources 500 a second
    /// with bursts of 1000 before cookies are asked for; at most 2000 cookie replies a second
    /// (each smaller than the datagram it answers).
    public init(perSource: RateLimiter = RateLimiter(),
                shared: TokenBucket = TokenBucket(rate: 500, burst: 1000),
                cookieReplies: TokenBucket = TokenBucket(rate: 2000, burst: 2000)) {
        self.perSource = perSource
        self.shared = shared
        self.cookieReplies = cookieReplies
    }

    /// Decides on a signaling message from `source` carrying `cookie` (or none) at `now`
    /// (milliseconds, monotonic).
    public mutating func admit(from source: IPAddress, cookie: Cookie?, now: UInt64) -> Verdict {
        guard perSource.allow(source: source, now: now) else { return .refuse }
        if let cookie, cookies.isValid(cookie, from: source, now: now) { return .accept }
        if shared.take(now: now) { return .accept }
        guard cookieReplies.take(now: now) else { return .refuse }
        return .askForCookie(cookies.cookie(for: source, now: now))
    }

    /// Whether a cookie reply from `source` may be looked at: it spends the source's budget
    /// only, since it costs a table lookup.
    public mutating func admitCookieReply(from source: IPAddress, now: UInt64) -> Bool {
        perSource.allow(source: source, now: now)
    }

    /// How many sources have a budget of their own now.
    public var trackedSources: Int { perSource.trackedSources }
}
