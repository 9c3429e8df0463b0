import MATPacket
import MATSignaling

/// The decisions of a node's mobility signaling (docs/signaling.md), with no I/O: the time
/// (monotonic milliseconds) comes in with every event, and what should happen goes out as
/// ``SignalingAction``s for the driver (``Signaling``) to carry out. So each decision has
/// a unit test that needs neither sockets nor root.
///
/// Outbound: binding updates to peers, resent on a ``RetransmitSchedule`` until
/// acknowledged, with the IMS asked again about a peer that stays silent and the peer
/// given up after the last wait; reachability probes (``ReachabilityProbes``). Inbound,
/// in this order and each cheaper than the next: keepalives, cookie replies, the
/// admission budgets (``SignalAdmission``: refuse, or a cookie reply under load),
/// framing, receiver, replay, the sender's key (looked up in the IMS when unknown or
/// perhaps rotated, the message waiting for the answer), the signature, then the message:
/// an update is acknowledged or its new MoAs challenged (``UpdateChallenges``), a
/// challenge or probe answered, a response or acknowledgement matched to what this node
/// sent.
///
/// The inbound half is in SignalingMachine+Inbound.swift; the state both halves use is
/// internal for that reason only (nothing outside the machine touches it).
struct SignalingMachine {
    /// The sequence a challenge names when it is a probe (``ReachabilityProbes``): no update
    /// has it, as sequence numbers start from the wall clock.
    static let probeSequence: UInt64 = 0
    /// Acknowledgements that do not come after this many sends make the node look the
    /// peer up again: it may have moved at the same time.
    static let sendsBeforeLookup = 2
    /// Senders whose message may wait for their key at once: a flood of unknown senders
    /// keeps only the newest few.
    static let waitingForKeyLimit = 64

    /// Signs everything this node sends.
    var key: SigningKey
    /// The lifetime (seconds) this node's updates announce.
    let lifetime: UInt32
    var replay = ReplayGuard()
    var admission: SignalAdmission
    var cookieJar = CookieJar()
    /// IMS lookups of unknown senders' keys, all senders together: forged senders must not
    /// turn the node into a query generator.
    var keyLookupBudget = TokenBucket(rate: 10, burst: 20)
    /// The alerts awaiting their acknowledgement, by peer: changed only through
    /// ``setOutgoing(_:_:)`` and ``removeOutgoing(_:)``, which keep ``outgoingDue`` beside it.
    private(set) var outgoing: [IPAddress: Outgoing] = [:]
    /// Each outstanding alert at the end of its current wait (its next send, or after the
    /// last send its giving up), so a tick costs the alerts due, not a walk over every one
    /// (a move's 100,000 peers until they settle, 9.4 s).
    private var outgoingDue = DueQueue<IPAddress>()
    var challenges = UpdateChallenges()
    var probes = ReachabilityProbes()
    /// The latest message of each sender whose key is being looked up, handled again when
    /// the key arrives.
    var waitingForKey: [IPAddress: (signal: UnverifiedSignal, source: IPAddress, since: UInt64)] = [:]
    /// What the signaling did and refused so far.
    var counters = SignalingCounters()
    /// Each peer's round trip, measured from an alert sent once to its first answer: the
    /// first wait before the next alert to that peer is resent (``RetransmitSchedule``).
    /// Kept for the peers this node alerted, as ``peerStates`` is.
    var roundTrips: [IPAddress: RoundTripEstimate] = [:]
    /// How each peer's alerts went, for `matctl peers`.
    private(set) var peerStates: [IPAddress: PeerSignalState] = [:]
    /// Bumped whenever ``peerStates`` changes, so the driver publishes only then.
    private(set) var peerStatesVersion = 0
    /// Bumped whenever ``replayEntries`` changes, so the service knows to save it.
    var replayChanges = 0
    /// Alerts whose retransmissions ran out, by peer: where they went, their number and
    /// when they were given up (at most ``givenUpLimit``, for ``givenUpWindow`` ms), for
    /// ``renumberUpdates(below:now:environment:)``.
    private var givenUp = GivenUpAlerts()
    /// How long a given-up alert is renumbered when the clock moves forward: a restored
    /// guest's first exchange with the IMS comes within seconds of its start or its move,
    /// and a peer given up before that sees no alert again until the guest's next move.
    static let givenUpWindow: UInt64 = 600_000
    static let givenUpLimit = 1_024
    /// The warning of each alert given up: a move's 100,000 unanswered peers give one
    /// line each no more, but ten per 10 s and a count of the rest.
    var unansweredLog = PerPeerLogLimit()
    /// What the event being handled decided, handed out when it returns.
    var actions: [SignalingAction] = []

    /// An update of this node's mapping waiting for a peer's acknowledgement.
    struct Outgoing {
        var destination: IPAddress
        var bytes: [UInt8]
        var sequence: UInt64
        var schedule: RetransmitSchedule
        var firstSentAt: UInt64
        /// Whether the peer answered it yet (its challenge or its ack): only the first answer
        /// measures a round trip.
        var answered = false
    }

    /// A machine signing with `key`, announcing `lifetime`; `admission` holds the budgets
    /// inbound datagrams are checked against.
    init(key: SigningKey, lifetime: UInt32, admission: SignalAdmission = SignalAdmission()) {
        self.key = key
        self.lifetime = lifetime
        self.admission = admission
    }

    // MARK: state the service reads and restores

    /// Peers whose acknowledgement of this node's mapping is outstanding.
    var awaiting: Set<IPAddress> { Set(outgoing.keys) }

    /// The highest update sequence accepted from each peer, kept across restarts.
    var replayEntries: [IPAddress: UInt64] { replay.entries }

    /// Takes back the replay state saved before a restart.
    mutating func restoreReplay(_ saved: [IPAddress: UInt64]) { replay.restore(saved) }

    /// `hoa`'s key changed: its sequence numbers are counted afresh.
    mutating func forgetReplay(_ hoa: IPAddress) {
        replay.forget(hoa)
        replayChanges += 1
    }

    /// Whether a probe of `peer` is out.
    func isProbing(_ peer: IPAddress) -> Bool { probes.isProbing(peer) }

    /// How many more probes may go out now (``ReachabilityProbes/capacity``).
    var probeSlotsFree: Int { max(0, probes.capacity - probes.outstanding.count) }

    /// Drops the probes of `peer` (its mapping went).
    mutating func cancelProbes(of peer: IPAddress) { probes.cancel(peer) }

    /// Whether the message of `hoa` waiting for its key verifies with `key`.
    func waitingMessageVerifies(from hoa: IPAddress, with key: VerifyingKey) -> Bool {
        guard let waiting = waitingForKey[hoa] else { return false }
        return (try? waiting.signal.verify(with: key)) != nil
    }

    /// When the machine next needs a ``tick(now:environment:)`` or
    /// ``sendDueProbes(now:environment:)``: a retransmission or a wait's end, a probe, a
    /// challenge's expiry, the summary of the unanswered alerts not logged one by one.
    var nextEventAt: UInt64? {
        [outgoingDue.nextDeadline, probes.nextEvent, challenges.nextExpiry, unansweredLog.summaryDueAt].compactMap { $0 }.min()
    }

    /// `peer`'s alert is `entry` now, due at the end of its schedule's current wait.
    mutating func setOutgoing(_ peer: IPAddress, _ entry: Outgoing) {
        outgoing[peer] = entry
        outgoingDue.schedule(peer, at: entry.schedule.deadline)
    }

    /// `peer`'s alert is no longer outstanding; returns it.
    @discardableResult
    mutating func removeOutgoing(_ peer: IPAddress) -> Outgoing? {
        outgoingDue.remove(peer)
        return outgoing.removeValue(forKey: peer)
    }

    /// Counts what the driver or the service saw outside the machine's events (a peer
    /// dropped, an oversized datagram).
    mutating func count(_ change: (inout SignalingCounters) -> Void) { change(&counters) }

    // MARK: outbound

    /// Tells `peer` (at `moa`) this node's current MoA of its family, and keeps telling it
    /// until it acknowledges or the retransmissions run out (``tick(now:environment:)``).
    /// Returns nil, deciding nothing, when the node has no HoA or MoA of that family or no
    /// sequence number.
    mutating func announce(to peer: IPAddress, at moa: IPAddress, now: UInt64,
                           environment: some SignalingEnvironment) -> [SignalingAction]? {
        guard let (home, mobile) = Self.own(environment.nodeAddresses, family: peer.family),
              let sequence = environment.takeSequence(for: "an alert to \(peer)") else { return nil }
        let message = SignalMessage(sequence: sequence, sender: home, receiver: peer,
                                    body: .bindingUpdate(moas: [mobile], lifetime: lifetime))
        var entry = Outgoing(destination: moa, bytes: SignalCodec.seal(message, with: key, paddedTo: SignalCodec.paddedUpdateLength),
                             sequence: sequence, schedule: RetransmitSchedule(now: now, roundTrip: roundTrips[peer] ?? RoundTripEstimate()),
                             firstSentAt: now)
        send(entry.bytes, to: moa, now: now)
        entry.schedule.sent(now: now)
        setOutgoing(peer, entry)
        givenUp.forget(peer)
        counters.updatesSent += 1
        actions.append(.event("alert", ["peer": "\(peer)", "at": "\(moa)", "sequence": "\(sequence)"]))
        note(peer) { $0.alert = .awaitingAck }
        return takeActions()
    }

    /// The clock that numbers this node's messages moved forward (the IMS said its time,
    /// ``SequenceClock``): an update still waiting for its acknowledgement with a number
    /// below `floor` was numbered from a clock behind the time, as a guest restored from a
    /// snapshot numbers its first alerts from the snapshot's clock. Its peer may have taken
    /// higher numbers from this node since the snapshot and refuses it, and each of its
    /// retransmissions (the same bytes), as a replay. Each is replaced by a fresh update
    /// with a number from the corrected clock, sent at once to the same MoA. So is an
    /// update below `floor` given up within ``givenUpWindow`` (its retransmissions, all
    /// refused, ran out before the clock was set: a learned peer is dropped then, but the
    /// peer itself still sends to the MoA this node left). Returns the actions; the peers
    /// alerted again are the `alert` events among them.
    mutating func renumberUpdates(below floor: UInt64, now: UInt64,
                                  environment: some SignalingEnvironment) -> [SignalingAction] {
        var due = outgoing.filter { $0.value.sequence < floor }.mapValues(\.destination)
        for (peer, entry) in givenUp.entries where entry.sequence < floor && now <= entry.at + Self.givenUpWindow {
            due[peer] = due[peer] ?? entry.destination
        }
        var renumbered: [SignalingAction] = []
        for (peer, destination) in due.sorted(by: { $0.key < $1.key }) {
            renumbered += announce(to: peer, at: destination, now: now, environment: environment) ?? []
        }
        return renumbered
    }

    /// Keeps a given-up alert for ``renumberUpdates(below:now:environment:)``, dropping those
    /// past ``givenUpWindow`` and, at ``givenUpLimit``, the oldest.
    private mutating func rememberGivenUp(_ peer: IPAddress, _ entry: Outgoing, now: UInt64) {
        givenUp.remember(peer, destination: entry.destination, sequence: entry.sequence, now: now,
                         window: Self.givenUpWindow, limit: Self.givenUpLimit)
    }

    /// Retransmits the updates that are due (asking the IMS again about a peer silent
    /// after ``sendsBeforeLookup`` sends), gives up on updates whose last wait ended, ends
    /// the challenges whose wait ended, and drops messages that waited too long for a key.
    /// Probes are ``sendDueProbes(now:environment:)``'s, run after these actions are
    /// carried out: a peer dropped here has its probes cancelled first.
    mutating func tick(now: UInt64, environment: some SignalingEnvironment) -> [SignalingAction] {
        logUnansweredSummary(unansweredLog.takeSummary(now: now))
        for peer in outgoingDue.takeDue(now: now) {
            guard var entry = outgoing[peer] else { continue }
            guard let due = entry.schedule.nextSendAt else {
                // The last send has had its full wait.
                guard entry.schedule.hasExpired(at: now) else {
                    setOutgoing(peer, entry)
                    continue
                }
                removeOutgoing(peer)
                rememberGivenUp(peer, entry, now: now)
                counters.updatesUnanswered += 1
                actions.append(.event("unanswered", ["peer": "\(peer)", "at": "\(entry.destination)", "sequence": "\(entry.sequence)"]))
                note(peer) { $0.alert = .unanswered }
                let (write, summary) = unansweredLog.admit(now: now)
                logUnansweredSummary(summary)
                if write {
                    actions.append(.log(.warning, "matd: \(peer) did not acknowledge update seq \(entry.sequence) at \(entry.destination)"))
                }
                actions.append(.settled(hoa: peer, acknowledged: false))
                continue
            }
            guard due <= now else {
                setOutgoing(peer, entry)
                continue
            }
            if entry.schedule.attempts >= Self.sendsBeforeLookup, environment.lookUpAgain(hoa: peer) {
                counters.peersLookedUpAgain += 1
            }
            send(entry.bytes, to: entry.destination, now: now)
            entry.schedule.sent(now: now)
            setOutgoing(peer, entry)
            counters.updatesRetransmitted += 1
        }
        for expiry in challenges.expire(at: now) {
            counters.challengesUnanswered += 1
            actions.append(.unreachable(hoa: expiry.peer, at: expiry.moa))
            if expiry.trialFailed { actions.append(.challengeFailed(hoa: expiry.peer, sequence: expiry.sequence)) }
        }
        if !waitingForKey.isEmpty {
            waitingForKey = waitingForKey.filter { $0.value.since + UpdateChallenges.lifetime > now }
        }
        return takeActions()
    }

    private mutating func logUnansweredSummary(_ left: Int?) {
        guard let left else { return }
        actions.append(.log(.warning, "matd: and \(left) more peer(s) did not acknowledge their update "
            + "(\(unansweredLog.perWindow) logged per \(unansweredLog.window / 1_000) s; all counted in updates_unanswered)"))
    }

    /// `peer` answered its outstanding alert at `now` (a challenge or the ack): a round trip
    /// when the alert went once (Karn), and after a challenge the rest of the exchange
    /// (response, ack) gets a round trip's wait before the alert is resent.
    mutating func alertAnswered(by peer: IPAddress, now: UInt64) {
        guard var entry = outgoing[peer], !entry.answered else { return }
        entry.answered = true
        if entry.schedule.attempts == 1 {
            roundTrips[peer, default: RoundTripEstimate()].record(now - min(now, entry.firstSentAt))
        }
        entry.schedule.answered(now: now, wait: RetransmitSchedule.firstWait(for: roundTrips[peer] ?? RoundTripEstimate()))
        setOutgoing(peer, entry)
    }

    /// The IMS says unanswering `peer` is at `moas` now: its retransmissions go there.
    mutating func redirect(_ peer: IPAddress, to moas: [IPAddress]) -> [SignalingAction] {
        guard let moa = moas.first, var entry = outgoing[peer], moa != entry.destination else { return [] }
        entry.destination = moa
        setOutgoing(peer, entry)
        return [.log(.info, "matd: \(peer) is at \(moa) now (per the IMS); updating it there")]
    }

    /// Probes `peer` at each of `moas` (``ReachabilityProbes``): `reached` follows each
    /// answer from its MoA, `unreachable` each probe that stays unanswered. `key` is the
    /// key the answers must verify with when it is not the one bound to `peer`.
    mutating func probe(_ peer: IPAddress, at moas: [IPAddress], key: VerifyingKey?, now: UInt64,
                        environment: some SignalingEnvironment) -> [SignalingAction] {
        guard !probes.start(peer, at: moas, key: key, now: now).isEmpty else { return [] }
        return sendDueProbes(now: now, environment: environment)
    }

    /// Sends the probes that are due and reports those whose last wait ended.
    mutating func sendDueProbes(now: UInt64, environment: some SignalingEnvironment) -> [SignalingAction] {
        for (nonce, probe) in probes.due(at: now) {
            guard let (home, _) = Self.own(environment.nodeAddresses, family: probe.peer.family) else { continue }
            reply(to: probe.peer, at: probe.moa, home: home, body: .challenge(nonce: nonce, sequence: Self.probeSequence),
                  environment: environment, now: now)
            counters.probesSent += 1
        }
        for probe in probes.expired(at: now) {
            counters.probesUnanswered += 1
            actions.append(.unreachable(hoa: probe.peer, at: probe.moa))
        }
        return takeActions()
    }

    /// A keepalive from the signaling port to `moa`'s: behind a NAT that forwards only what
    /// answers the inside, it keeps open the binding a peer's alert comes back through
    /// (docs/datapath.md, "Behind NAT").
    mutating func keepalive(to moa: IPAddress) -> [SignalingAction] {
        counters.keepalivesSent += 1
        return [.transmit(EncapWire.control(.keepalive), to: moa)]
    }

    // MARK: shared by the decisions

    /// Seals `body` from this node's `home` to `peer` under a fresh sequence and sends it
    /// to `moa`.
    mutating func reply(to peer: IPAddress, at moa: IPAddress, home: IPAddress, body: SignalBody,
                        environment: some SignalingEnvironment, now: UInt64) {
        guard let sequence = environment.takeSequence(for: "a reply to \(peer)") else { return }
        let message = SignalMessage(sequence: sequence, sender: home, receiver: peer, body: body)
        send(SignalCodec.seal(message, with: key), to: moa, now: now)
    }

    /// Sends a sealed message, with `moa`'s cookie when it gave one.
    mutating func send(_ sealed: [UInt8], to moa: IPAddress, now: UInt64) {
        actions.append(.transmit(cookieJar.prepare(sealed, to: moa, now: now), to: moa))
    }

    mutating func note(_ peer: IPAddress, _ change: (inout PeerSignalState) -> Void) {
        change(&peerStates[peer, default: PeerSignalState()])
        peerStatesVersion += 1
    }

    mutating func takeActions() -> [SignalingAction] {
        let taken = actions
        actions = []
        return taken
    }

    /// This node's HoA and announced MoA of `family`, if it has both.
    static func own(_ addresses: NodeAddresses, family: AddressFamily) -> (home: IPAddress, mobile: IPAddress)? {
        switch family {
        case .ipv4:
            guard let home = addresses.home4, let mobile = addresses.mobile4 else { return nil }
            return (.v4(home), .v4(mobile))
        case .ipv6:
            guard let home = addresses.home6, let mobile = addresses.mobile6 else { return nil }
            return (.v6(home), .v6(mobile))
        }
    }
}

/// Alerts whose retransmissions ran out, kept a while for
/// ``SignalingMachine/renumberUpdates(below:now:environment:)``: by peer, and in the order
/// they were given up (the time only grows), so dropping the oldest and those past their
/// window costs the dropped ones, not a walk over every kept one per give-up (a move's
/// 100,000 unanswered peers gave up one by one). An entry in `order` whose peer was given
/// up again since, or forgotten, is skipped when it comes up. Pure.
struct GivenUpAlerts {
    private(set) var entries: [IPAddress: (destination: IPAddress, sequence: UInt64, at: UInt64)] = [:]
    private var order: [(peer: IPAddress, at: UInt64)] = []
    private var head = 0

    /// `peer`'s alert (`sequence`, to `destination`) was given up at `now`: kept, after
    /// those older than `window` are dropped and, at `limit`, the oldest.
    mutating func remember(_ peer: IPAddress, destination: IPAddress, sequence: UInt64, now: UInt64,
                           window: UInt64, limit: Int) {
        while let oldest = oldestLive(), now > oldest.at + window || (entries.count >= limit && entries[peer] == nil) {
            entries[oldest.peer] = nil
            head += 1
        }
        entries[peer] = (destination, sequence, now)
        order.append((peer, now))
        compact()
    }

    /// `peer` is alerted again: its given-up alert is no longer kept.
    mutating func forget(_ peer: IPAddress) {
        guard entries.removeValue(forKey: peer) != nil else { return }
        compact()
    }

    /// The oldest entry of `order` still current, with the stale ones before it skipped.
    private mutating func oldestLive() -> (peer: IPAddress, at: UInt64)? {
        while head < order.count {
            let candidate = order[head]
            if entries[candidate.peer]?.at == candidate.at { return candidate }
            head += 1
        }
        return nil
    }

    /// Drops the skipped part of `order` once it is most of it, so it stays within twice
    /// the kept entries (and a constant): amortised O(1) a change.
    private mutating func compact() {
        guard order.count > 2 * entries.count + 64 else { return }
        order = order[head...].filter { entries[$0.peer]?.at == $0.at }
        head = 0
    }
}
