import MATPacket

/// A first contact's alert waits for the peer's probe (``AnswerTrial``).
///
/// At a first contact this node knows the peer only from an IMS answer, which a holder of
/// the peer's key (or, for a node without an IMS key, anyone on the path) may have aimed
/// at a bystander. The answer's MoAs are probed (140 bytes each); the alert, 1184 bytes
/// padded and retransmitted up to four times, goes only to the first MoA that answers its
/// probe, so a bystander gets at most the probes. The price is one round trip more before
/// the first packets flow (the probe's), which `docs/benchmarks.md` measures.
extension MappingService {
    /// How long an alert waits for a probe's answer: a probe's last wait ends 5.5 s after
    /// its first send; past that the trial has failed (and the peer was forgotten) or
    /// ended otherwise (the peer's own alert came first).
    static let firstContactWait: UInt64 = 6_000

    /// A probe of `hoa` was answered from `moa`: its waiting alert goes there now.
    func alertFirstContact(_ hoa: IPAddress, at moa: IPAddress, now: UInt64) {
        guard firstContactAlerts.removeValue(forKey: hoa) != nil else { return }
        if !signaling.announce(to: hoa, at: moa, now: now) { engine.send(.release(hoa)) }
    }

    /// `hoa`'s first contact ends without an alert (its mapping went): its traffic is
    /// released, to be dropped or looked up afresh.
    func dropFirstContactAlert(_ hoa: IPAddress) {
        guard firstContactAlerts.removeValue(forKey: hoa) != nil else { return }
        engine.send(.release(hoa))
    }

    /// Releases the traffic of first contacts whose trial ended without a probe's answer
    /// by other means than a failure (a signed alert of the peer's replaced it).
    func expireFirstContactAlerts(now: UInt64) {
        for (hoa, since) in firstContactAlerts where now >= since + Self.firstContactWait {
            dropFirstContactAlert(hoa)
        }
    }
}
