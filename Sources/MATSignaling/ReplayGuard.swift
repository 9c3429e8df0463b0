import MATPacket

/// Remembers, per sender HoA, the highest binding-update sequence number accepted, so that
/// a captured update cannot be played back.
///
/// Use it in two steps: ``lastSequence(from:)`` before verifying the signature, to drop
/// stale updates cheaply; ``accept(sequence:from:)`` only after the signature verified,
/// so that a forged message can never move the counter.
///
/// Memory is bounded: at most ``capacity`` senders are tracked. When that many are, a new
/// sender is refused (``accept(sequence:from:)`` returns false) rather than an old one
/// evicted, because evicting would let the evicted sender's old updates be replayed.
/// Entries leave only through ``forget(_:)``.
public struct ReplayGuard: Sendable {
    /// The default bound on tracked senders.
    public static let defaultCapacity = 65536

    /// The most senders tracked at once.
    public let capacity: Int
    private var last: [IPAddress: UInt64] = [:]

    /// An empty guard tracking at most `capacity` senders.
    public init(capacity: Int = defaultCapacity) {
        precondition(capacity >= 0, "negative ReplayGuard capacity")
        self.capacity = capacity
    }

    /// How many senders are tracked.
    public var count: Int { last.count }

    /// Every tracked sender with the highest sequence accepted from it, to be kept across
    /// a restart (`restore(_:)`): a restarted node must not accept old updates again.
    public var entries: [IPAddress: UInt64] { last }

    /// Takes back what `entries` returned before a restart; for a sender known to both,
    /// the higher sequence wins. Senders past `capacity` are left out.
    public mutating func restore(_ saved: [IPAddress: UInt64]) {
        for (hoa, sequence) in saved where last[hoa] != nil || last.count < capacity {
            last[hoa] = max(last[hoa] ?? 0, sequence)
        }
    }

    /// Records `sequence` from `hoa` and returns true if it is strictly greater than the
    /// last one accepted from `hoa`, or if `hoa` is new and there is room for it. Returns
    /// false, changing nothing, otherwise.
    public mutating func accept(sequence: UInt64, from hoa: IPAddress) -> Bool {
        if let previous = last[hoa] {
            guard sequence > previous else { return false }
        } else {
            guard last.count < capacity else { return false }
        }
        last[hoa] = sequence
        return true
    }

    /// The highest sequence accepted from `hoa`, or nil if none is remembered.
    public func lastSequence(from hoa: IPAddress) -> UInt64? { last[hoa] }

    /// Drops what is remembered about `hoa`, making room for another sender. After this,
    /// any update from `hoa` that verifies is accepted again, old ones included: call it
    /// only when the sender's key changes or it is removed from the peers altogether.
    public mutating func forget(_ hoa: IPAddress) { last[hoa] = nil }
}
