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
/// Pure: the time (monotonic milliseconds) is passed in.
struct FirstPacketLookups {
    /// Lookups a second for all HoAs together, and the burst before that rate applies:
    /// twice the signaling's key lookups (S7), since a node starting its flows to many
    /// peers at once is normal, a stranger's alert storm is not.
    static let rate: UInt32 = 20
    static let burst: UInt32 = 40

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

    /// Whether a first packet to `hoa` at `now` starts a lookup; a `.lookUp` spends a token.
    mutating func decide(_ hoa: IPAddress, domains: [IPPrefix], alreadyAsked: Bool, now: UInt64) -> Decision {
        guard domains.contains(where: { $0.contains(hoa) }) else { return .outsideDomain }
        guard !alreadyAsked else { return .alreadyAsked }
        return budget.take(now: now) ? .lookUp : .overBudget
    }
}
