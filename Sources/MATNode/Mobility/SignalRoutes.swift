import MATPacket

/// Which way this node's signaling to each peer goes: direct to the peer's
/// `signaling-port`, or through this node's relay (docs/signaling.md, "Signaling through
/// the relay"). Pure: the caller passes the time (monotonic milliseconds).
///
/// Only a peer that may be reached through the relay (its IMS record, or its `[peer]`
/// section, names this node's relay: ``allow(_:_:)``) ever is, and even then direct comes
/// first: the relay costs its round trip and its load, and two nodes on one relay are
/// often reachable directly. Signaling to such a peer goes through the relay once
///
/// - a message that wants an answer (a binding update, a challenge or a probe) went to it
///   direct and nothing it sent answered anything of this node's for ``answerWait``: the
///   peer's NAT, or this node's, drops what comes to `signaling-port` unasked; the next
///   send (the machine's retransmission) goes through the relay; or
/// - a message from it came through the relay (``heardThroughRelay(from:now:)``): it
///   could not reach this node directly, and its answers take the way its message took.
///
/// It stays there for ``relayHold`` after the last of these, then tries direct again
/// (a move on either side, or a NAT that changed, may have opened the direct path).
struct SignalRoutes {
    enum Route: Equatable { case direct, relay }

    /// Why a peer's route changed, for the log.
    enum Change: Equatable {
        /// Direct went unanswered for ``answerWait``.
        case unanswered
        /// ``relayHold`` passed: direct is tried again.
        case holdEnded
    }

    /// How long a direct message that wants an answer may go unanswered before the next
    /// goes through the relay: above a round trip with the peer's IMS lookup of this node's
    /// key in it (a first contact's probe), below the probes' third send (1.5 s), so a
    /// first contact behind NATs that drop signaling costs 1.5 s more than through the
    /// relay at once.
    static let answerWait: UInt64 = 1_000
    /// How long signaling stays on the relay after the last reason to use it.
    static let relayHold: UInt64 = 600_000
    /// Peers tracked at most; past it, those not allowed the relay are forgotten first
    /// (senders heard through the relay whose records have not come), then all.
    let capacity: Int

    private struct State {
        /// Through the relay until then; nil: direct.
        var relayUntil: UInt64?
        /// Direct: when the first message still unanswered that wants an answer went.
        var unansweredSince: UInt64?
    }

    /// Peers that may be reached through the relay.
    private(set) var allowed: Set<IPAddress> = []
    private var states: [IPAddress: State] = [:]

    init(capacity: Int = 4_096) { self.capacity = max(1, capacity) }

    /// Whether `peer` may be reached through the relay (its record or `[peer]` section
    /// names this node's relay); returns whether that changed. A peer no longer allowed
    /// goes direct at once.
    @discardableResult
    mutating func allow(_ peer: IPAddress, _ allowed: Bool) -> Bool {
        if allowed { return self.allowed.insert(peer).inserted }
        guard self.allowed.remove(peer) != nil else { return false }
        states[peer] = nil
        return true
    }

    /// The way a message to `peer` goes at `now`, and the change it makes (for the log).
    /// `wantsAnswer`: a binding update, a challenge or a probe, which starts the wait for
    /// an answer when it goes direct.
    mutating func route(to peer: IPAddress, wantsAnswer: Bool, now: UInt64) -> (Route, Change?) {
        guard allowed.contains(peer) else { return (.direct, nil) }
        var state = states[peer] ?? State()
        defer { store(state, for: peer) }
        var change: Change?
        if let until = state.relayUntil {
            if now < until { return (.relay, nil) }
            state = State()
            change = .holdEnded
        }
        if let since = state.unansweredSince, now >= since + Self.answerWait {
            state = State(relayUntil: now + Self.relayHold)
            return (.relay, .unanswered)
        }
        if wantsAnswer && state.unansweredSince == nil { state.unansweredSince = now }
        return (.direct, change)
    }

    /// A verified message of `peer`'s answered something this node sent (a probe, a
    /// challenge, an update): while its signaling goes direct, direct works.
    mutating func answered(by peer: IPAddress) {
        guard states[peer]?.relayUntil == nil else { return }
        states[peer]?.unansweredSince = nil
    }

    /// A message from `peer` came through the relay at `now` (the relay vouches that it
    /// came from the binding `peer` registered with its key). Returns whether this moved
    /// an allowed peer's signaling to the relay.
    @discardableResult
    mutating func heardThroughRelay(from peer: IPAddress, now: UInt64) -> Bool {
        let wasRelayed = routeIsRelay(peer, now: now)
        store(State(relayUntil: now + Self.relayHold), for: peer)
        return allowed.contains(peer) && !wasRelayed
    }

    /// Whether `peer`'s signaling goes through the relay at `now`.
    func routeIsRelay(_ peer: IPAddress, now: UInt64) -> Bool {
        guard allowed.contains(peer), let until = states[peer]?.relayUntil else { return false }
        return now < until
    }

    private mutating func store(_ state: State, for peer: IPAddress) {
        if states[peer] == nil && states.count >= capacity {
            states = states.filter { allowed.contains($0.key) }
            if states.count >= capacity { states.removeAll() }
        }
        states[peer] = state
    }
}
