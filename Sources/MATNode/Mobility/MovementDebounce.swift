/// When to read the uplinks again after netlink events, with no I/O and the time passed
/// in (milliseconds), so every rule has a unit test.
///
/// A move is a burst of events (link, address, route): the uplinks are read `quiet` after
/// the last event of a burst, at most `maximumWait` after its first, so a move costs a
/// few milliseconds. A flapping link is a storm of bursts: once `stormReads` readings at
/// least `stormSpacing` apart (the few readings of one move count once) fall within
/// `stormWindow`, the next reading waits for `stormQuiet` without any event, so a
/// storm of any length ends in one reading, hence one registration and one round of
/// alerts, instead of one per flap. The storm lasts until that quiet spell.
///
/// A reading early in a burst that finds a family's MoA gone and no other in its place
/// is a move caught half way (the old address flushed, the new one not added yet: a
/// link swap, a DHCP renewal that changes the address): it is not acted on, and the
/// uplinks are read again when the new address's event comes, or `vanishWait` after the
/// burst began. Acting on it cost a whole rewrite of the diversion, and held the peers,
/// before the real move's alerts could go.
struct MovementDebounce: Equatable {
    static let quiet: UInt64 = 2
    static let maximumWait: UInt64 = 100
    static let vanishWait: UInt64 = 50
    static let stormReads = 4
    static let stormSpacing: UInt64 = 50
    static let stormWindow: UInt64 = 1_000
    static let stormQuiet: UInt64 = 500

    /// When the uplinks are due to be read; nil when nothing is pending.
    private(set) var dueAt: UInt64?
    private var burstStartedAt: UInt64?
    /// When the uplinks were read after events, newest last, within `stormWindow`.
    private var recentReads: [UInt64] = []
    /// Set while a storm lasts: from its recognition to the quiet spell that ends it.
    private var inStorm = false

    /// Whether readings came so often lately that the next waits for a quiet spell.
    func isStorm(at now: UInt64) -> Bool {
        inStorm || recentReads.filter { now < $0 + Self.stormWindow }.count >= Self.stormReads
    }

    /// A relevant netlink event arrived.
    mutating func eventArrived(at now: UInt64) {
        if isStorm(at: now) {
            inStorm = true
            dueAt = now + Self.stormQuiet
            return
        }
        let started = burstStartedAt ?? now
        burstStartedAt = started
        dueAt = min(now + Self.quiet, started + Self.maximumWait)
    }

    /// Read at once: events were lost (overflow), or the start or `matctl rebind` asks.
    mutating func readNow(at now: UInt64) {
        dueAt = now
    }

    /// A reading found a family's MoA gone with none in its place: true when it is early
    /// enough in the burst to wait for the new address (the caller then ignores the
    /// reading, and the next is due when the address's event comes or `vanishWait` after
    /// the burst began); false when the loss stands.
    mutating func addressesVanished(at now: UInt64) -> Bool {
        guard let started = burstStartedAt, now < started + Self.vanishWait else { return false }
        dueAt = started + Self.vanishWait
        return true
    }

    /// The uplinks were read; `afterEvents` is false for a reading nobody's events caused
    /// (the start, a rebind), which does not count towards a storm.
    mutating func didRead(at now: UInt64, afterEvents: Bool) {
        dueAt = nil
        burstStartedAt = nil
        guard afterEvents else { return }
        if inStorm {
            // The quiet spell came: the storm is over, and the next move is read at once.
            inStorm = false
            recentReads.removeAll()
            return
        }
        recentReads.removeAll { now >= $0 + Self.stormWindow }
        if let last = recentReads.last, now < last + Self.stormSpacing { return }
        recentReads.append(now)
    }
}
