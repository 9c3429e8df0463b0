import MATPacket

/// Which HoAs without a mapping the engine reports to the control plane (which looks
/// them up in the IMS): each at most once per `interval`, so a flow to an unknown HoA asks
/// once a second, not once a packet. Pure: the time (monotonic milliseconds) is passed in.
struct MissReports {
    static let interval: UInt64 = 1_000
    /// HoAs remembered at most; past that the memory starts afresh (a flood of packets to
    /// random HoAs costs one report each per interval, never unbounded memory).
    static let limit = 4_096

    private var reportedAt: [IPAddress: UInt64] = [:]

    /// Whether a packet to `hoa`, refused for want of a mapping at `now`, is reported.
    mutating func report(_ hoa: IPAddress, now: UInt64) -> Bool {
        if let last = reportedAt[hoa], now < last + Self.interval { return false }
        if reportedAt.count > Self.limit { reportedAt.removeAll(keepingCapacity: true) }
        reportedAt[hoa] = now
        return true
    }
}
