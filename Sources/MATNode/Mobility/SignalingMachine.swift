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
    private var replay = ReplayGuard()
    private var admission: SignalAdmission
    private var cookieJar = CookieJar()
    /// IMS lookups of unknown senders' keys, all senders together: forged senders must not
    /// turn the node into a query generator.
    private var keyLookupBudget = TokenBucket(rate: 10, burst: 20)
    private var outgoing: [IPAddress: Outgoing] = [:]
    private var challenges = UpdateChallenges()
    private var probes = ReachabilityProbes()
    /// The latest message of each sender whose key is being looked up, handled again when
    /// the key arrives.
    private var waitingForKey: [IPAddress: (signal: UnverifiedSignal, source: IPAddress, since: UInt64)] = [:]
    /// What the signaling did and refused so far.
    private(set) var counters = SignalingCounters()
    /// How each peer's alerts went, for `matctl peers`.
    private(set) var peerStates: [IPAddress: PeerSignalState] = [:]
    /// Bumped whenever ``peerStates`` changes, so the driver publishes only then.
    private(set) var peerStatesVersion = 0
    /// Bumped whenever ``replayEntries`` changes, so the service knows to save it.
    private(set) var replayChanges = 0
    /// What the event being handled decided, handed out when it returns.
    private var actions: [SignalingAction] = []

    /// An update of this node's mapping waiting for a peer's acknowledgement.
    private struct Outgoing {
        var destination: IPAddress
        var bytes: [UInt8]
        var sequence: UInt64
        var schedule: RetransmitSchedule
        var firstSentAt: UInt64
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

    /// Drops the probes of `peer` (its mapping went).
    mutating func cancelProbes(of peer: IPAddress) { probes.cancel(peer) }

    /// Whether the message of `hoa` waiting for its key verifies with `key`.
    func waitingMessageVerifies(from hoa: IPAddress, with key: VerifyingKey) -> Bool {
        guard let waiting = waitingForKey[hoa] else { return false }
        return (try? waiting.signal.verify(with: key)) != nil
    }

    /// When the machine next needs a ``tick(now:environment:)`` or
    /// ``sendDueProbes(now:environment:)``: a retransmission or a wait's end, a probe, a
    /// challenge's expiry.
    var nextEventAt: UInt64? {
        (outgoing.values.map { $0.schedule.nextSendAt ?? $0.schedule.deadline }
            + [probes.nextEvent, challenges.nextExpiry].compactMap { $0 }).min()
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
                             sequence: sequence, schedule: RetransmitSchedule(now: now), firstSentAt: now)
        send(entry.bytes, to: moa, now: now)
        entry.schedule.sent(now: now)
        outgoing[peer] = entry
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
    /// with a number from the corrected clock, sent at once to the same MoA. Returns the
    /// actions; the peers alerted again are the `alert` events among them.
    mutating func renumberUpdates(below floor: UInt64, now: UInt64,
                                  environment: some SignalingEnvironment) -> [SignalingAction] {
        var renumbered: [SignalingAction] = []
        for (peer, entry) in outgoing.sorted(by: { $0.key < $1.key }) where entry.sequence < floor {
            renumbered += announce(to: peer, at: entry.destination, now: now, environment: environment) ?? []
        }
        return renumbered
    }

    /// Retransmits the updates that are due (asking the IMS again about a peer silent
    /// after ``sendsBeforeLookup`` sends), gives up on updates whose last wait ended, ends
    /// the challenges whose wait ended, and drops messages that waited too long for a key.
    /// Probes are ``sendDueProbes(now:environment:)``'s, run after these actions are
    /// carried out: a peer dropped here has its probes cancelled first.
    mutating func tick(now: UInt64, environment: some SignalingEnvironment) -> [SignalingAction] {
        for (peer, var entry) in outgoing {
            guard let due = entry.schedule.nextSendAt else {
                // The last send has had its full wait.
                guard entry.schedule.hasExpired(at: now) else { continue }
                outgoing[peer] = nil
                counters.updatesUnanswered += 1
                actions.append(.event("unanswered", ["peer": "\(peer)", "at": "\(entry.destination)", "sequence": "\(entry.sequence)"]))
                note(peer) { $0.alert = .unanswered }
                actions.append(.log(.warning, "matd: \(peer) did not acknowledge update seq \(entry.sequence) at \(entry.destination)"))
                actions.append(.settled(hoa: peer, acknowledged: false))
                continue
            }
            guard due <= now else { continue }
            if entry.schedule.attempts >= Self.sendsBeforeLookup, environment.lookUpAgain(hoa: peer) {
                counters.peersLookedUpAgain += 1
            }
            send(entry.bytes, to: entry.destination, now: now)
            entry.schedule.sent(now: now)
            outgoing[peer] = entry
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

    /// The IMS says unanswering `peer` is at `moas` now: its retransmissions go there.
    mutating func redirect(_ peer: IPAddress, to moas: [IPAddress]) -> [SignalingAction] {
        guard let moa = moas.first, var entry = outgoing[peer], moa != entry.destination else { return [] }
        entry.destination = moa
        outgoing[peer] = entry
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
    private mutating func reply(to peer: IPAddress, at moa: IPAddress, home: IPAddress, body: SignalBody,
                        environment: some SignalingEnvironment, now: UInt64) {
        guard let sequence = environment.takeSequence(for: "a reply to \(peer)") else { return }
        let message = SignalMessage(sequence: sequence, sender: home, receiver: peer, body: body)
        send(SignalCodec.seal(message, with: key), to: moa, now: now)
    }

    /// Sends a sealed message, with `moa`'s cookie when it gave one.
    private mutating func send(_ sealed: [UInt8], to moa: IPAddress, now: UInt64) {
        actions.append(.transmit(cookieJar.prepare(sealed, to: moa, now: now), to: moa))
    }

    private mutating func note(_ peer: IPAddress, _ change: (inout PeerSignalState) -> Void) {
        change(&peerStates[peer, default: PeerSignalState()])
        peerStatesVersion += 1
    }

    private mutating func takeActions() -> [SignalingAction] {
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

// MARK: inbound

extension SignalingMachine {
    /// A datagram arrived on the signaling port from `source`: decides on it.
    mutating func receive(_ datagram: UnsafeRawBufferPointer, from source: IPAddress, now: UInt64,
                          environment: some SignalingEnvironment) -> [SignalingAction] {
        if EncapWire.parse(datagram) == .keepalive {
            // A peer behind NAT holding open the binding this node's alerts reach it through.
            counters.keepalivesReceived += 1
            return []
        }
        if SignalCodec.isCookieReply(datagram) {
            takeCookieReply(datagram, from: source, now: now)
            return takeActions()
        }
        guard let trailer = SignalCodec.peekTrailer(datagram) else {
            counters.refusedMalformed += 1
            return []
        }
        switch admission.admit(from: source, cookie: trailer.cookie, now: now) {
        case .accept:
            break
        case .refuse:
            counters.refusedRateLimited += 1
            return []
        case .askForCookie(let cookie):
            // Stateless, and smaller than what it answers: no work for a stranger under load.
            counters.cookiesSent += 1
            return [.transmit(SignalCodec.seal(CookieReply(echo: trailer.echo, cookie: cookie)), to: source)]
        }
        guard let signal = try? SignalCodec.open(datagram) else {
            counters.refusedMalformed += 1
            return []
        }
        process(signal, from: source, size: datagram.count, now: now, environment: environment)
        return takeActions()
    }

    /// The IMS answered with `hoa`'s key: the message that waited for it is decided now.
    mutating func keyArrived(for hoa: IPAddress, now: UInt64, environment: some SignalingEnvironment) -> [SignalingAction] {
        guard let waiting = waitingForKey.removeValue(forKey: hoa) else { return [] }
        process(waiting.signal, from: waiting.source, size: waiting.signal.datagramLength, now: now, environment: environment)
        return takeActions()
    }

    /// A cookie reply to the last message sent to `source`: send that message again, with
    /// the cookie, now; and attach the cookie to what follows.
    private mutating func takeCookieReply(_ datagram: UnsafeRawBufferPointer, from source: IPAddress, now: UInt64) {
        guard admission.admitCookieReply(from: source, now: now) else {
            counters.refusedRateLimited += 1
            return
        }
        guard let reply = try? SignalCodec.openCookieReply(datagram) else {
            counters.refusedMalformed += 1
            return
        }
        guard let again = cookieJar.take(reply, from: source, now: now) else {
            counters.refusedUnexpected += 1
            return
        }
        counters.cookiesReceived += 1
        actions.append(.transmit(again, to: source))
    }

    /// A framed message within its budgets: receiver, staleness, key, signature, then its kind.
    private mutating func process(_ signal: UnverifiedSignal, from source: IPAddress, size: Int, now: UInt64,
                                  environment: some SignalingEnvironment) {
        guard let home = environment.nodeAddresses.homeAddresses.first(where: { $0.family == signal.receiver.family }),
              signal.receiver == home else {
            counters.refusedWrongReceiver += 1
            return
        }
        // A binding update older than the last accepted is dropped before any cryptography.
        if signal.type == .bindingUpdate, let last = replay.lastSequence(from: signal.sender), signal.sequence < last {
            counters.refusedReplayed += 1
            return
        }
        guard let (message, candidate) = verify(signal, from: source, now: now, environment: environment) else { return }
        switch message.body {
        case .bindingUpdate(let moas, let lifetime):
            handleUpdate(message, moas: moas, lifetime: lifetime, home: home, size: size, now: now, environment: environment)
        case .challenge(let nonce, Self.probeSequence):
            // A probe: answered from here, whatever this node has sent.
            reply(to: message.sender, at: source, home: home,
                  body: .challengeResponse(nonce: nonce, sequence: Self.probeSequence), environment: environment, now: now)
            counters.probesReceived += 1
        case .challenge(let nonce, let sequence):
            guard let entry = outgoing[message.sender], entry.sequence == sequence else {
                counters.refusedUnexpected += 1
                return
            }
            reply(to: message.sender, at: source, home: home, body: .challengeResponse(nonce: nonce, sequence: sequence),
                  environment: environment, now: now)
            counters.challengesAnswered += 1
            actions.append(.reached(hoa: message.sender, at: source, key: nil))
            actions.append(.peerIsAlive(hoa: message.sender))
        case .challengeResponse(let nonce, Self.probeSequence):
            guard probes.candidateKey(for: nonce, from: message.sender) == candidate,
                  let probe = probes.answered(nonce, by: message.sender, from: source) else {
                counters.refusedUnexpected += 1
                return
            }
            counters.probesAnswered += 1
            actions.append(.reached(hoa: probe.peer, at: probe.moa, key: probe.key))
        case .challengeResponse(let nonce, let sequence):
            guard let proof = challenges.response(nonce, from: message.sender, sequence: sequence, source: source) else {
                counters.refusedUnexpected += 1
                return
            }
            actions.append(.adopt(hoa: message.sender, moas: proof.moas, lifetime: proof.lifetime, sequence: sequence))
            actions.append(.reached(hoa: message.sender, at: source, key: nil))
            counters.bindingsAdopted += 1
            actions.append(.event("adopted", ["peer": "\(message.sender)", "mobile": proof.moas.map(\.description).joined(separator: " "),
                                              "sequence": "\(sequence)"]))
            if proof.first { acknowledge(message.sender, sequence: sequence, at: source, home: home, environment: environment, now: now) }
        case .bindingAck(let sequence, _):
            guard let entry = outgoing[message.sender], entry.sequence == sequence else {
                counters.refusedUnexpected += 1
                return
            }
            actions.append(.reached(hoa: message.sender, at: source, key: nil))
            outgoing[message.sender] = nil
            let took = now - min(now, entry.firstSentAt)
            counters.acksReceived += 1
            counters.alertAcknowledged.record(milliseconds: took)
            actions.append(.event("ack", ["peer": "\(message.sender)", "milliseconds": "\(took)"]))
            note(message.sender) { state in
                state.alert = .acknowledged
                state.lastAckAt = now
                // Only an update sent once gives a round trip that means something (Karn).
                state.roundTripMilliseconds = entry.schedule.attempts == 1 ? took : nil
            }
            actions.append(.settled(hoa: message.sender, acknowledged: true))
        }
    }

    /// The sender's key, then the signature: the verified message, with the key it
    /// verified with when that is a probe's candidate rather than the one bound to the
    /// sender. Nil when refused, or when the message waits for an IMS answer with the key.
    private mutating func verify(_ signal: UnverifiedSignal, from source: IPAddress, now: UInt64,
                                 environment: some SignalingEnvironment) -> (SignalMessage, VerifyingKey?)? {
        let key: VerifyingKey
        switch environment.verifyingKey(for: signal.sender, mayLookUp: { keyLookupBudget.take(now: now) }) {
        case .known(let known):
            key = known
        case .lookingUp:
            if waitingForKey[signal.sender] == nil && waitingForKey.count >= Self.waitingForKeyLimit {
                counters.refusedUnknownKey += 1
                return nil
            }
            waitingForKey[signal.sender] = (signal, source, now)
            return nil
        case .unknown:
            counters.refusedUnknownKey += 1
            return nil
        }
        do {
            return (try signal.verify(with: key), nil)
        } catch .badSignature where signal.type == .challengeResponse && !probes.candidateKeys(of: signal.sender).isEmpty {
            // The answer to a probe of a key an IMS answer named: verified with that key,
            // and good for that probe only.
            guard let verified = probes.candidateKeys(of: signal.sender).lazy
                .compactMap({ key in (try? signal.verify(with: key)).map { (message: $0, key: key) } }).first else {
                counters.refusedBadSignature += 1
                return nil
            }
            return (verified.message, verified.key)
        } catch .badSignature {
            // The sender may have rotated its key: the message waits for the IMS's answer
            // (at most one lookup per sender every 5 s, within the global budget), and is
            // refused if it still does not verify.
            if waitingForKey[signal.sender] != nil || waitingForKey.count < Self.waitingForKeyLimit,
               environment.keyMayHaveChanged(for: signal.sender, mayLookUp: { keyLookupBudget.take(now: now) }) {
                waitingForKey[signal.sender] = (signal, source, now)
                return nil
            }
            counters.refusedBadSignature += 1
            return nil
        } catch {
            counters.refusedMalformed += 1
            return nil
        }
    }

    /// A verified update: already known (a retransmission, or first contact from a peer
    /// this node looked up), acknowledged at once; otherwise the new MoA is challenged.
    private mutating func handleUpdate(_ message: SignalMessage, moas: [IPAddress], lifetime: UInt32, home: IPAddress,
                                       size: Int, now: UInt64, environment: some SignalingEnvironment) {
        let peer = message.sender
        let isNewest = replay.accept(sequence: message.sequence, from: peer)
        if isNewest { replayChanges += 1 }
        guard isNewest || replay.lastSequence(from: peer) == message.sequence else {
            counters.refusedReplayed += 1
            return
        }
        if isNewest {
            counters.updatesReceived += 1
            // Newest, so signed now: the peer is alive (where, only a challenge tells).
            actions.append(.reached(hoa: peer, at: nil, key: nil))
        }
        guard let target = moas.first else { return }
        let decision = challenges.update(from: peer, sequence: message.sequence, moas: moas, lifetime: lifetime,
                                         inUse: environment.currentMoAs(of: peer), now: now)
        switch decision {
        case .again(let open):
            // A retransmission while its challenges are out: the same challenges again.
            for (nonce, moa) in open {
                challenge(peer, at: moa, nonce: nonce, sequence: message.sequence, home: home, environment: environment, now: now)
            }
        case .failedBefore:
            counters.refusedUnexpected += 1
        case .known(let adopt):
            if let adopt { actions.append(.adopt(hoa: peer, moas: adopt, lifetime: lifetime, sequence: message.sequence)) }
            acknowledge(peer, sequence: message.sequence, at: target, home: home, environment: environment, now: now)
        case .challenge(let sent, let unproven, let void):
            for moa in void { actions.append(.unreachable(hoa: peer, at: moa)) }
            let listed = challenges.trials[peer]?.moas ?? moas
            actions.append(.tryOut(hoa: peer, moas: listed, unproven: unproven, sequence: message.sequence, updateBytes: UInt64(size)))
            for (nonce, moa) in sent {
                challenge(peer, at: moa, nonce: nonce, sequence: message.sequence, home: home, environment: environment, now: now)
            }
        }
    }

    private mutating func challenge(_ peer: IPAddress, at moa: IPAddress, nonce: Nonce, sequence: UInt64, home: IPAddress,
                                    environment: some SignalingEnvironment, now: UInt64) {
        reply(to: peer, at: moa, home: home, body: .challenge(nonce: nonce, sequence: sequence), environment: environment, now: now)
        counters.challengesSent += 1
    }

    private mutating func acknowledge(_ peer: IPAddress, sequence: UInt64, at moa: IPAddress, home: IPAddress,
                                      environment: some SignalingEnvironment, now: UInt64) {
        reply(to: peer, at: moa, home: home, body: .bindingAck(sequence: sequence, status: .accepted),
              environment: environment, now: now)
        counters.acksSent += 1
    }
}
