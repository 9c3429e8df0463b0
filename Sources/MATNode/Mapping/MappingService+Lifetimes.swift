import MATIMSClient
import MATLog
import MATPacket

/// Registration lifetimes on the peer's side (``MappingLifetimes``): a learned mapping
/// whose registration was not renewed in time is dropped, so a dead node's old MoA, now
/// someone else's, neither gets its traffic nor has its packets taken as that node's.
extension MappingService {
    /// Whether an IMS answer may go into the table: not a registration that has passed its
    /// lifetime. A refused answer drops the mapping it would have refreshed.
    func admitLifetime(of answer: PeerMappingAnswer, now: UInt64) -> Bool {
        guard !lifetimes.admit(answer.hoa, sequence: answer.sequence, lifetime: answer.lifetime, now: now) else {
            return true
        }
        if learned[answer.hoa] != nil { dropLapsed(answer.hoa, why: "read again unrenewed: \(answer)") }
        return false
    }

    /// Asks the IMS again about every learned mapping whose registration lifetime has
    /// passed here: the answer decides (``admitLifetime(of:now:)``). The same sequence
    /// again, fresh or served stale while the IMS is unreachable, drops the mapping; a newer
    /// one (a renewal this node had not read yet: its lookups come a TTL apart) keeps it.
    func checkLapsedMappings(now: UInt64) {
        for hoa in lifetimes.lapse(at: now) where learned[hoa] != nil { lookUp(hoa, for: .refresh) }
    }

    private func dropLapsed(_ hoa: IPAddress, why: String) {
        // A trial in progress restores nothing: the peer is gone either way.
        provisional[hoa] = nil
        forget(hoa)
        signaling.countMappingLapsed()
        log(.notice, "matd: dropping the mapping of \(hoa): \(why)")
        EventLog.shared.post("mapping_lapsed", ["peer": "\(hoa)"])
    }
}
