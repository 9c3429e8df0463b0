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
    /// carried packets use. Returns when it next has something to do.
    func tickRelay(now: UInt64) -> UInt64? {
        guard let relay = config.relay?.address, let encap = engine.encap else { return nil }
        if signaling.relaySend == nil {
            let port = config.encapPort
            signaling.relaySend = { bytes in
                try encap.sendControl(RelayedSignal.wrap(bytes), to: relay, port: port)
                encap.countRelayedSignal()
            }
        }
        takeRelayedSignals(now: now)
        var schedule = relaySchedule ?? RelayRegistrationSchedule(interval: config.encapKeepalive * 1_000, now: now)
        schedule.follow(addresses.mobileAddresses, now: now)
        if schedule.isDue(now: now) {
            do {
                let hoas = Array(config.homeAddresses.prefix(RelayRegistration.maximumHoAs))
                let bytes = signaling.sealRelayRegistration(hoas: hoas, sequence: try signaling.nextSequence())
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
    /// for the service's next turn; more are dropped, as a full socket buffer drops them.
    public func relayedSignal(from origin: IPAddress, _ bytes: [UInt8]) {
        guard let control = encapControl else { return }
        let added = control.relayedSignals.withLock { queue -> Bool in
            guard queue.count < 64 else { return false }
            queue.append((origin, bytes))
            return true
        }
        if added { wakeup.signal() }
    }

    /// Hands the messages that came through the relay to the signaling, each as sent
    /// from the origin the relay stamped.
    private func takeRelayedSignals(now: UInt64) {
        guard let control = encapControl else { return }
        for (origin, bytes) in control.relayedSignals.withLock({ queue in defer { queue.removeAll() }; return queue }) {
            signaling.receiveRelayed(bytes, from: origin, now: now)
        }
    }

    /// An IMS answer names the relay its HoA is reached through: when that is this node's
    /// relay, the signaling to that HoA goes through it (the peer's NAT drops what comes
    /// to its `signaling-port`); an answer naming no relay, or another one, sends it
    /// direct again. Only the IMS says so, as it binds the peer's key: a message that
    /// came through the relay does not, so a datagram forged to look like the relay's
    /// cannot move a peer's signaling away from its direct path.
    func followRelay(of answer: PeerMappingAnswer) {
        guard let relay = config.relay?.address else { return }
        let through = answer.relay == relay
        if signaling.reachThroughRelay(answer.hoa, through) {
            log(through ? "matd: \(answer.hoa) is reached through the relay \(relay): its signaling goes there"
                        : "matd: \(answer.hoa) names no relay of this node's now: its signaling goes direct")
        }
    }
}
