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
