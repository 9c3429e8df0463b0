import MATPacket

/// When a node sends a peer's traffic through the relay rather than to the peer's public
/// address (docs/datapath.md, "Not yet supported: a relay for the rest"): once the peer's
/// traffic goes in UDP, hole punching has three keepalive intervals to show a keepalive
/// from the peer; without one, the relay. A keepalive from the peer later (the hole opened
/// after all) goes back to the peer's address. A peer whose IMS record names this node's
/// relay (docs/signaling.md, "Signaling through the relay") goes through it at once, until
/// a keepalive from it shows the hole opened. Pure: the caller passes the time.
///
/// ``follow(now:limit:)`` keeps ``relayedMoAs`` up to date at the cost of what changed
/// since the last call and what came due: each peer the clock alone can send to the relay
/// waits in a deadline heap (``DueQueue``) for three silent intervals after its last
/// keepalive, so at 100,000 peers in UDP a call no longer asks each of them (issue 9;
/// docs/benchmarks.md, "Scale").
public struct RelayFallback: Sendable {
    public let keepaliveInterval: UInt64
    private struct Peer {
        var since: UInt64
        var heard: UInt64?
        var atOnce: Bool
    }
    private var peers: [IPAddress: Peer] = [:]
    /// When each peer not yet relayed by the clock would be: three intervals after its
    /// last keepalive as last settled. A keepalive since only moves the real deadline
    /// later, so it is not rescheduled at every keepalive; the entry, once due, is checked
    /// again and put back at the later deadline.
    private var due = DueQueue<IPAddress>()
    /// Peers a call changed (in or out of UDP, a keepalive while relayed, "at once")
    /// since the last ``follow(now:limit:)``.
    private var changed: Set<IPAddress> = []
    /// The MoAs whose traffic goes through the relay, as of the last ``follow(now:limit:)``.
    public private(set) var relayedMoAs: Set<IPAddress> = []
    /// How many peers the last ``follow(now:limit:)`` looked at (the changed and the due).
    public private(set) var lastExamined = 0
    /// Most due peers a ``follow(now:limit:)`` looks at by default; the rest stay due for
    /// the next call (``needsFollow(now:)``).
    public static let followLimit = 1_024

    public init(keepaliveInterval: UInt64 = 15_000) { self.keepaliveInterval = keepaliveInterval }

    /// `moa`'s traffic goes in UDP from `now` on (a second call changes nothing).
    public mutating func encapsulated(_ moa: IPAddress, now: UInt64) {
        guard peers[moa] == nil else { return }
        peers[moa] = Peer(since: now, heard: nil, atOnce: false)
        changed.insert(moa)
    }

    /// `moa`, in UDP, is known to be reached through the relay: its traffic goes there
    /// without waiting for hole punching, until a keepalive comes from it. With `atOnce`
    /// false (no IMS record names the relay now), it waits for hole punching again.
    public mutating func relayAtOnce(_ moa: IPAddress, _ atOnce: Bool = true) {
        guard peers[moa] != nil else { return }
        peers[moa]?.atOnce = atOnce
        changed.insert(moa)
    }

    /// Whether `moa` went through the relay at once (not for want of a keepalive).
    public func isRelayedAtOnce(_ moa: IPAddress) -> Bool {
        guard let peer = peers[moa] else { return false }
        return peer.atOnce && peer.heard == nil
    }

    /// A keepalive came from `moa` at `now`. O(1): only a relayed peer changes by it.
    public mutating func heard(_ moa: IPAddress, now: UInt64) {
        guard peers[moa] != nil else { return }
        peers[moa]?.heard = now
        if relayedMoAs.contains(moa) { changed.insert(moa) }
    }

    /// `moa`'s traffic goes direct again, or the peer is gone.
    public mutating func stopped(_ moa: IPAddress) {
        guard peers.removeValue(forKey: moa) != nil else { return }
        changed.insert(moa)
    }

    /// Whether `moa`'s traffic goes through the relay at `now`: in UDP, and no keepalive
    /// from the peer within the last three intervals (or since it went in UDP), or none
    /// ever from a peer to relay at once.
    public func relayed(_ moa: IPAddress, now: UInt64) -> Bool {
        guard let peer = peers[moa] else { return false }
        return (peer.atOnce && peer.heard == nil) || now >= silentDeadline(peer)
    }

    /// The earliest time a peer may go to the relay by the clock alone (a keepalive since
    /// may put it off); nil when nothing waits. O(1).
    public var nextDeadline: UInt64? { due.nextDeadline }

    /// Whether ``follow(now:limit:)`` has anything to do at `now`: a change to settle or a
    /// peer due. O(1).
    public func needsFollow(now: UInt64) -> Bool {
        !changed.isEmpty || (due.nextDeadline.map { $0 <= now } ?? false)
    }

    /// Which MoAs ``follow(now:limit:)`` sent to the relay and which back to their own
    /// address (or out of UDP), each sorted.
    public struct Transitions: Equatable, Sendable {
        public var relayed: [IPAddress] = []
        public var direct: [IPAddress] = []
        public var isEmpty: Bool { relayed.isEmpty && direct.isEmpty }
    }

    /// Brings ``relayedMoAs`` up to `now`: every peer changed since the last call, and at
    /// most `limit` of those due by the clock (the rest stay due). O((changed + limit) ·
    /// log peers).
    public mutating func follow(now: UInt64, limit: Int = Self.followLimit) -> Transitions {
        var transitions = Transitions()
        let touched = changed
        changed.removeAll(keepingCapacity: true)
        for moa in touched { settle(moa, now: now, into: &transitions) }
        let dueNow = due.takeDue(now: now, limit: limit)
        for moa in dueNow { settle(moa, now: now, into: &transitions) }
        lastExamined = touched.count + dueNow.count
        transitions.relayed.sort()
        transitions.direct.sort()
        return transitions
    }

    private func silentDeadline(_ peer: Peer) -> UInt64 { (peer.heard ?? peer.since) + 3 * keepaliveInterval }

    private mutating func settle(_ moa: IPAddress, now: UInt64, into transitions: inout Transitions) {
        guard let peer = peers[moa] else {
            due.remove(moa)
            if relayedMoAs.remove(moa) != nil { transitions.direct.append(moa) }
            return
        }
        let deadline = silentDeadline(peer)
        if now < deadline { due.schedule(moa, at: deadline) } else { due.remove(moa) }
        if (peer.atOnce && peer.heard == nil) || now >= deadline {
            if relayedMoAs.insert(moa).inserted { transitions.relayed.append(moa) }
        } else if relayedMoAs.remove(moa) != nil {
            transitions.direct.append(moa)
        }
    }
}
