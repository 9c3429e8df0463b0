import MATPacket
import MATSignaling

/// Which HoAs a relay (`[relay] serve = on`) looks up in the IMS for the key their
/// registrations are checked with (docs/signaling.md, "Relay"), when no `client-key` is
/// pinned for them. Pure: the caller passes the time (monotonic milliseconds) and asks.
///
/// Anyone can send a registration naming any HoA, and the engine reports every HoA it has
/// no key for (or whose key from the IMS no longer verifies: the node may have rotated it),
/// so the lookups are bounded before any is made: only HoAs inside the relay's
/// `domain-prefix`es, each at most once per 5 s, at most 64 on their way, and at most
/// `rate` a second for all HoAs together (bursts of `burst`). What is refused is counted;
/// a genuine node refused so is looked up at one of its next registrations.
struct RelayKeyLookups {
    enum Decision: Equatable {
        case lookUp
        /// Outside every domain prefix: no IMS holds a key for it.
        case outsideDomain
        /// Looked up less than 5 s ago, or on its way.
        case tooSoon
        /// Over the lookups all HoAs share, or 64 on their way.
        case overBudget
    }

    static let perHoAInterval: UInt64 = 5_000
    static let maximumPending = 64
    private var bucket: TokenBucket
    private var throttle = AddressThrottle(interval: perHoAInterval)
    /// Lookups on their way, whose answers are the forwarder's.
    private(set) var pending: Set<IPAddress> = []
    /// Lookups made, and those refused for budget.
    private(set) var started: UInt64 = 0
    private(set) var overBudget: UInt64 = 0

    init(rate: UInt32 = 10, burst: UInt32 = 20) {
        bucket = TokenBucket(rate: rate, burst: burst)
    }

    /// Whether to look up `hoa`'s key now (recorded when so).
    mutating func request(_ hoa: IPAddress, domains: [IPPrefix], now: UInt64) -> Decision {
        guard domains.contains(where: { $0.contains(hoa) }) else { return .outsideDomain }
        guard !pending.contains(hoa), throttle.allows(hoa, now: now) else { return .tooSoon }
        guard pending.count < Self.maximumPending, bucket.take(now: now) else {
            overBudget += 1
            return .overBudget
        }
        throttle.record(hoa, now: now)
        pending.insert(hoa)
        started += 1
        return .lookUp
    }

    /// The IMS answered, or failed to, for `hoa`; returns whether the relay had asked.
    mutating func answered(_ hoa: IPAddress) -> Bool { pending.remove(hoa) != nil }
}
