import MATPacket

/// When the engine looks the path MTU towards a MoA in UDP up again (the kernel lowers one
/// when a router on the path answers a datagram too large): each MoA whose MTU was looked
/// up comes due ``period`` later, and a refresh takes at most ``perRefresh`` of the due
/// ones, earliest first. The engine refreshed every MoA in UDP once a second, a route
/// lookup each: 100,000 a second with every peer in UDP. Now a refresh costs its limit at
/// most, and with more MoAs than that a second each is looked up every
/// MoAs / ``perRefresh`` seconds (98 s at 100,000), and at once after a send the kernel
/// found too large. Pure: the caller passes the time (monotonic milliseconds).
struct PathMTURefresh {
    /// The least time between two lookups of one MoA's MTU.
    static let period: UInt64 = 1_000
    /// MTUs looked up again in one refresh (once a second).
    static let perRefresh = 1_024

    private var due = DueQueue<IPAddress>()

    /// How many MoAs wait for their refresh.
    var count: Int { due.count }

    /// `moa`'s MTU was looked up at `now`: it comes due ``period`` later.
    mutating func lookedUp(_ moa: IPAddress, now: UInt64) { due.schedule(moa, at: now + Self.period) }

    /// `moa`'s MTU is forgotten: it does not come due.
    mutating func forget(_ moa: IPAddress) { due.remove(moa) }

    /// The MoAs due at `now`, earliest first, at most `limit`; each comes due again only
    /// when looked up again (``lookedUp(_:now:)``).
    mutating func take(now: UInt64, limit: Int = perRefresh) -> [IPAddress] { due.takeDue(now: now, limit: limit) }
}
