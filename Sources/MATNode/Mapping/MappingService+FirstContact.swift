import MATIMSClient
import MATPacket

/// A first contact's alert waits for the peer's probe (``AnswerTrial``); ``FirstContacts``
/// decides, this extension drives the engine and the signaling.
///
/// At a first contact this node knows the peer only from an IMS answer, which a holder of
/// the peer's key (or, for a node without an IMS key, anyone on the path) may have aimed
/// at a bystander. The answer's MoAs are probed (140 bytes each); the alert, 1184 bytes
/// padded and retransmitted up to four times, goes only to the first MoA that answers its
/// probe, so a bystander gets at most the probes. The price is one round trip more before
/// the first packets flow (the probe's), which `docs/benchmarks.md` measures.
extension MappingService {
    /// Holds `hoa`'s traffic, puts the IMS `answer` for its first contact into the table
    /// and alerts the peer at `moa` (the answer's first MoA), at once or after its probe.
    /// Returns whether the table's MoAs changed.
    func beginFirstContact(_ hoa: IPAddress, _ answer: PeerMappingAnswer, at moa: IPAddress, now: UInt64) -> Bool {
        engine.send(.hold(hoa))
        let changed = install(answer, now: now)
        switch firstContacts.start(hoa, installed: learned[hoa] != nil, onTrial: answerTrials[hoa] != nil, now: now) {
        case .release: engine.send(.release(hoa))
        case .awaitProbe: break
        case .alert: if !signaling.announce(to: hoa, at: moa, now: now) { engine.send(.release(hoa)) }
        }
        return changed
    }

    /// A probe of `hoa` was answered from `moa`: its waiting alert goes there now.
    func alertFirstContact(_ hoa: IPAddress, at moa: IPAddress, now: UInt64) {
        guard firstContacts.probeAnswered(hoa) else { return }
        if !signaling.announce(to: hoa, at: moa, now: now) { engine.send(.release(hoa)) }
    }

    /// `hoa`'s first contact ends without an alert (its mapping went): its traffic is
    /// released, to be dropped or looked up afresh.
    func dropFirstContactAlert(_ hoa: IPAddress) {
        guard firstContacts.drop(hoa) else { return }
        engine.send(.release(hoa))
    }

    /// Releases the traffic of first contacts whose trial ended without a probe's answer
    /// by other means than a failure (a signed alert of the peer's replaced it).
    func expireFirstContactAlerts(now: UInt64) {
        for hoa in firstContacts.expire(now: now) { engine.send(.release(hoa)) }
    }
}
