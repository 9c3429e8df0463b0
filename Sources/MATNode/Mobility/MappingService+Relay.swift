import MATIMSClient
import MATLog
import MATPacket
import MATSignaling

extension MappingService {
    /// Registers this node with the relay `[relay] address` names (docs/signaling.md,
    /// "Relay"), as ``RelayRegistrationSchedule`` says: the node's HoAs, a sequence number
    /// from the node's one persisted counter (never repeated across restarts, so the relay
    /// never takes a registration for a replay after one), signed with the node key, sent
    /// from the encapsulation socket so that the relay learns the NAT binding this node's
    /// carried packets use, with this node's half of the key agreement on the relay secret
    /// (``RelaySecrets``: a new exchange key every 5 minutes). Returns when it next has
    /// something to do.
    func tickRelay(now: UInt64) -> UInt64? {
        if config.relay?.serves == true { lookUpRelayKeys(now: now) }
        guard let relay = config.relay?.address, let encap = engine.encap else { return nil }
        if signaling.relaySend == nil {
            let port = config.encapPort
            signaling.relaySend = { bytes in
                try encap.sendControl(RelayedSignal.wrap(bytes), to: relay, port: port)
                encap.countRelayedSignal()
            }
            followConfiguredRelays()
        }
        takeRelayedSignals(now: now)
        var schedule = relaySchedule ?? RelayRegistrationSchedule(interval: config.encapKeepalive * 1_000, now: now)
        schedule.follow(addresses.mobileAddresses, now: now)
        if encap.relaySecrets.withLock({ $0.takeRecovery() }) { schedule.registerNow(now) }
        if schedule.isDue(now: now) {
            do {
                let hoas = Array(config.homeAddresses.prefix(RelayRegistration.maximumHoAs))
                let sequence = try signaling.nextSequence()
                let keys = encap.relaySecrets.withLock { $0.registration(now: now) }
                let bytes = signaling.sealRelayRegistration(hoas: hoas, sequence: sequence, nodeKey: keys.nodeKey,
                                                            relayKey: keys.relayKey)
                try encap.sendControl(bytes, to: relay, port: config.encapPort)
                encap.countRegistration(sent: true)
                if relaySchedule == nil || schedule.failures > 0 {
                    log("matd: registering \(hoas.map(\.description).joined(separator: ", ")) with the relay \(relay) "
                        + "every \(config.encapKeepalive) s")
                }
                schedule.sent(now: now)
            } catch {
                encap.countRegistration(sent: false)
                schedule.failed(now: now)
                if schedule.failures == 1 {
                    log(.warning, "matd: registration with the relay \(relay): \(error); trying again every "
                        + "\(schedule.retryInterval / 1_000) s")
                }
            }
        }
        relaySchedule = schedule
        return schedule.dueAt
    }
}

extension MappingService {
    /// Called by the engine thread with a signaling message that came through this node's
    /// relay and the origin the relay stamped on it (``RelayedSignal``). At most 64 wait
    /// for the service's next turn; more are dropped, as a full socket buffer drops them,
    /// before they are copied out of the engine's buffer.
    public func relayedSignal(from origin: IPAddress, _ bytes: UnsafeRawBufferPointer) {
        guard let control = encapControl else { return }
        let added = control.relayedSignals.withLock { queue -> Bool in
            guard queue.count < 64 else { return false }
            queue.append((origin, Array(bytes)))
            return true
        }
        if added { wakeup.signal() }
    }

    /// Called by the engine thread when a relayed signal from the relay failed its MAC and
    /// a registration is wanted at once (``RelaySecrets/refused(now:)``): wakes the
    /// service, whose ``tickRelay(now:)`` sends it.
    public func relayAnswerWanted() { wakeup.signal() }

    /// Hands the messages that came through the relay to the signaling, each as sent
    /// from the origin the relay stamped.
    private func takeRelayedSignals(now: UInt64) {
        guard let control = encapControl else { return }
        for (origin, bytes) in control.relayedSignals.withLock({ queue in defer { queue.removeAll() }; return queue }) {
            signaling.receiveRelayed(bytes, from: origin, now: now)
        }
    }

    /// An IMS answer for `hoa` (a relay's own key lookups go to ``takeRelayKey(_:_:)``
    /// instead). A node with a relay follows what it says of the relay
    /// `hoa` is reached through: when that is this node's relay, the signaling to `hoa`
    /// goes through it (the peer's NAT drops what comes to its `signaling-port`); an answer
    /// naming no relay, or another one, sends it direct again. Only the IMS says so, as it
    /// binds the peer's key: a message that came through the relay does not, so a datagram
    /// forged to look like the relay's cannot move a peer's signaling off its direct path.
    func followRelay(_ hoa: IPAddress, _ result: Result<PeerMappingAnswer, IMSClientError>) {
        guard let relay = config.relay?.address, case .success(let answer) = result else { return }
        // A `[peer]` that names the relay stays behind it whatever its record says.
        guard encapControl?.configuredRelayPeers.contains(hoa) == false else { return }
        behindRelay(hoa, answer.relay == relay, relay: relay, source: "its IMS record")
    }

    /// Applies the `[peer]` sections' `relay` (at the first turn with a relay, and after a
    /// reload): a peer whose section names this node's relay is reached through it as one
    /// whose IMS record names it.
    func followConfiguredRelays() {
        guard let relay = config.relay?.address, let control = encapControl else { return }
        let named = Set(config.peers.filter { $0.relay == relay }.map(\.homeAddress))
        guard named != control.configuredRelayPeers else { return }
        let changed = named.symmetricDifference(control.configuredRelayPeers)
        control.configuredRelayPeers = named
        for hoa in changed { behindRelay(hoa, named.contains(hoa), relay: relay, source: "its [peer] section") }
    }

    /// Whether `hoa` is behind this node's `relay`, as `source` says: its traffic in UDP
    /// goes there at once, and its signaling when direct goes unanswered (``SignalRoutes``).
    private func behindRelay(_ hoa: IPAddress, _ through: Bool, relay: IPAddress, source: String) {
        guard let control = encapControl else { return }
        let changed = through ? control.relayedHoAs.insert(hoa).inserted : control.relayedHoAs.remove(hoa) != nil
        // A peer whose traffic is in UDP already: the engine follows the record now, not
        // only when the next peer goes in UDP.
        if changed {
            let peers = activePeers()
            for moa in Set(peers.filter { $0.hoa == hoa }.map(\.moa)) where host.encapsulatedMoAs.contains(moa) {
                engine.encapsulate(.relayAtOnce(moa, EncapControl.relaysAtOnce(moa, peers: peers,
                                                                                relayedHoAs: control.relayedHoAs)))
            }
        }
        if signaling.reachThroughRelay(hoa, through) {
            log(through ? "matd: \(hoa) is behind the relay \(relay) (\(source)): its signaling goes there when direct "
                            + "goes unanswered"
                        : "matd: \(hoa) names no relay of this node's now (\(source)): its signaling goes direct")
        }
    }
}

extension MappingService {
    /// A relay's key lookups (``RelayKeyLookups``) by counter name: `key_lookups` started,
    /// `key_lookups_deferred` over their bound; nil on a node that is no relay.
    public var relayKeyLookupCounters: [String: UInt64]? {
        guard config.relay?.serves == true, let control = encapControl else { return nil }
        let counts = control.relayKeyLookupCounts.withLock { $0 }
        return ["key_lookups": counts.started, "key_lookups_deferred": counts.overBudget]
    }

    /// Called by the engine thread of a relay with a HoA whose registration it has no key
    /// for, or whose key from the IMS no longer verifies it. At most 64 wait for the
    /// service's next turn.
    public func relayKeyWanted(_ hoa: IPAddress) {
        guard let control = encapControl else { return }
        let added = control.relayKeyMisses.withLock { queue -> Bool in
            guard queue.count < 64, !queue.contains(hoa) else { return false }
            queue.append(hoa)
            return true
        }
        if added { wakeup.signal() }
    }

    /// Looks up, within ``RelayKeyLookups``'s bounds, the keys of the HoAs the relay's
    /// engine reported: only with an IMS to ask.
    private func lookUpRelayKeys(now: UInt64) {
        guard let control = encapControl else { return }
        let wanted = control.relayKeyMisses.withLock { queue in defer { queue.removeAll() }; return queue }
        guard client != nil, !wanted.isEmpty else { return }
        // An unsigned answer's key is never taken (``takeRelayKey(_:_:)``): not asked.
        guard lookupsAreSigned else {
            if control.relayKeyWarnedAt.map({ now >= $0 + 10_000 }) ?? true {
                control.relayKeyWarnedAt = now
                log(.warning, "matd: relay: keys for registrations are not looked up: this node has no IMS key to sign "
                    + "its lookups with ([ims] key-file); pin them ([relay] client-key)")
            }
            return
        }
        for hoa in wanted {
            switch control.relayKeyLookups.request(hoa, domains: config.domainPrefixes, now: now) {
            case .lookUp:
                log(.debug, "matd: relay: looking up the key of \(hoa) in the IMS for its registration")
                lookUp(hoa, for: .relayKey)
            case .overBudget:
                if control.relayKeyWarnedAt.map({ now >= $0 + 10_000 }) ?? true {
                    control.relayKeyWarnedAt = now
                    log(.warning, "matd: relay: key lookups over their bound: \(hoa) is looked up at one of its next "
                        + "registrations (\(control.relayKeyLookups.overBudget) deferred so far)")
                }
            case .outsideDomain, .tooSoon:
                break
            }
        }
    }

    /// The IMS's answer to a relay's lookup of `hoa`'s key (``IMSWorker/Purpose/relayKey``):
    /// the key goes to the engine's forwarder when the answer is signed (an unsigned one
    /// could be anyone's, and would let its writer register as `hoa`), and nowhere else:
    /// not to this node's peer keys or state file, nor to its signaling, since anyone can
    /// make the relay ask by sending a registration naming a HoA.
    func takeRelayKey(_ hoa: IPAddress, _ result: Result<PeerMappingAnswer, IMSClientError>) {
        _ = encapControl?.relayKeyLookups.answered(hoa)
        switch result {
        case .success(let answer):
            guard lookupsAreSigned else {
                log(.warning, "matd: relay: the key of \(hoa) is not taken from the IMS: this node has no IMS key to sign "
                    + "its lookups with ([ims] key-file), or pin it ([relay] client-key)")
                return
            }
            guard let text = answer.publicKey, let key = VerifyingKey(base64: text) else {
                log("matd: relay: the IMS publishes no key for \(hoa); its registrations are refused")
                return
            }
            engine.encapsulate(.relayKey(hoa, key))
            log("matd: relay: took the key of \(hoa) from the IMS (\(text)) for its registrations")
        case .failure(let error):
            log(.warning, "matd: relay: looking up the key of \(hoa) failed: \(error)")
        }
    }
}
