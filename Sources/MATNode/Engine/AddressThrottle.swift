import MATPacket

/// At most one of something per address per `interval`: the engine's report of a HoA
/// without a mapping (each at most once a second, so a flow to an unknown HoA asks once
/// a second, not once a packet), the service's IMS lookup of an unknown or perhaps rotated
/// key (each at most once per 5 s), its warning about an unsigned answer for a HoA whose
/// key it does not hold (once per 5 min). Pure: the time (monotonic milliseconds) is passed in.
struct AddressThrottle {
    /// Milliseconds between two of the same address.
    let interval: UInt64
    /// Addresses remembered at most; past that the memory starts afresh, so a flood of
    /// random addresses costs one each per interval, never unbounded memory.
    let limit: Int
    private var lastAt: [IPAddress: UInt64] = [:]

    init(interval: UInt64, limit: Int = 4_096) {
        self.interval = interval
        self.limit = limit
    }

    /// Whether one for `address` may go at `now` (nothing is recorded: see `record`).
    func allows(_ address: IPAddress, now: UInt64) -> Bool {
        guard let last = lastAt[address] else { return true }
        return now >= last + interval
    }

    /// One for `address` went at `now`.
    mutating func record(_ address: IPAddress, now: UInt64) {
        if lastAt.count > limit { lastAt.removeAll(keepingCapacity: true) }
        lastAt[address] = now
    }

    /// `allows` and, when it does, `record`.
    mutating func take(_ address: IPAddress, now: UInt64) -> Bool {
        guard allows(address, now: now) else { return false }
        record(address, now: now)
        return true
    }
}
