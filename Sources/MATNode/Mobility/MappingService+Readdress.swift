import MATLinux

/// The end of an `on-notify-peers` renewal (``Readdresser``), on the service thread.
extension MappingService {
    /// For each renewal that ended: when the MoAs are still those of the announcement (the
    /// guest stayed on its site, or the renewal failed), alert the peers again, as a
    /// migration without a renewal command does, so they check the MoA answers from the
    /// new host. A renewal that brought a new address has moved the node, alerts and all.
    func takeRenewals(now: UInt64) {
        guard let readdresser else { return }
        for before in readdresser.takeFinished() where before == addresses {
            log("matd: the address renewal left the MoAs as they were (\(addresses.mobileDescription)); alerting the peers again")
            announceEvenIfUnchanged = true
            debounce.readNow(at: now)
        }
    }
}
