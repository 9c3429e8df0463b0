import MATPacket
import MATSignaling

/// Which packets to a HoA without a mapping start an IMS lookup (docs/security.md, the
/// local user): only HoAs inside a `domain-prefix`, one lookup per HoA at a time, and at
/// most ``rate`` a second after a burst of ``burst`` for all HoAs together. The engine
/// reports each HoA at most once a second (``AddressThrottle``), but any local user can
/// send to thousands of HoAs a second: without the global bound each cost a lookup (two
/// queries), queued ahead of the node's own registrations on the single IMS worker.
/// A HoA over the bound is not asked now; its waiting packets make the engine report it
/// again a second later, so a genuine flow is asked for at its next report with a token.
///
/// A share a flood cannot take: a HoA reported again within 1.5 to 3 s of its last
/// report (its packets keep coming: a genuine flow) and not looked up in the last 30 to
/// 60 s is *persistent*, and may spend every token; any other HoA (a first report, such as
/// each of a flood of random HoAs) only those above ``reserve``. So a flood of new HoAs
/// drains the bucket to the reserve, and a genuine flow deferred at its first report is
/// asked at its second (about a second later) from the reserve, however large the flood
/// (``RecentHoAs``: bounded memory, HoAs an attacker cannot aim at collisions). An
/// attacker that keeps sending to the same HoAs makes them persistent too, but each of
/// them then waits 30 s after its lookup before it is persistent again. The total stays
/// ``rate`` a second after ``burst``.
/// Pure: the time (monotonic milliseconds) is passed in.
struct FirstPacketLookups {
    /// Lookups a second for all HoAs together, and the burst before that rate applies:
    /// twice the signaling's key lookups (S7), since a node starting its flows to many
    /// peers at once is normal, a stranger's alert storm is not.
    static let rate: UInt32 = 20
    static let burst: UInt32 = 40
    /// Tokens only persistent HoAs spend.
    static let reserve: UInt32 = 10
    /// A HoA reported again within one to two of these (ms) is reported again: the engine
    /// reports a HoA whose packets wait once a second.
    static let reportPeriod: UInt64 = 1_500
    /// A HoA looked up within one to two of these (ms) is not persistent.
    static let lookupPeriod: UInt64 = 30_000

    enum Decision: Equatable {
        /// Look it up now.
        case lookUp
        /// Not inside any `domain-prefix`: the IMS has nothing to say about it.
        case outsideDomain
        /// A lookup of it is on its way already.
        case alreadyAsked
        /// The global bound is spent: not now (counted; the next report asks again).
        case overBudget
    }

    private var budget = TokenBucket(rate: rate, burst: burst)
    private var reported = RecentHoAs(period: reportPeriod)
    private var lookedUp = RecentHoAs(period: lookupPeriod)

    /// Whether a first packet to `hoa` at `now` starts a lookup; a `.lookUp` spends a token.
    mutating func decide(_ hoa: IPAddress, domains: [IPPrefix], alreadyAsked: Bool, now: UInt64) -> Decision {
        guard domains.contains(where: { $0.contains(hoa) }) else { return .outsideDomain }
        guard !alreadyAsked else { return .alreadyAsked }
        let persistent = reported.contains(hoa, now: now) && !lookedUp.contains(hoa, now: now)
        reported.insert(hoa, now: now)
        guard budget.take(now: now, keeping: persistent ? 0 : Self.reserve) else { return .overBudget }
        lookedUp.insert(hoa, now: now)
        return .lookUp
    }
}
