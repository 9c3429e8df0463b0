import MATPacket
import MATSignaling

/// The inbound half of ``SignalingMachine``: datagrams on the signaling port, in the order
/// of the checks the type's documentation lists, and the keys that come for messages that
/// waited for them.
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
            alertAnswered(by: message.sender, now: now)
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
            alertAnswered(by: message.sender, now: now)
            removeOutgoing(message.sender)
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
