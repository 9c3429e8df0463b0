import MATPacket

/// A relay's counters for `matctl stats` and the metrics (`[relay] serve = on`).
extension Engine {
    /// The relay's counters by name and the bindings it holds (`bindings`), as of the last
    /// publication; nil on a node that is no relay.
    public var relayStatistics: [String: UInt64]? {
        guard let published = publishedRelay.withLock({ $0 }) else { return nil }
        return Dictionary(uniqueKeysWithValues: published.counters.named + [("bindings", UInt64(published.bindings))])
    }

    /// Copies the relay's counters for the other threads (from ``publish()``; allocates nothing).
    func publishRelay(_ relay: RelayForwarder) {
        let counters = relay.counters, bindings = relay.table.count
        publishedRelay.withLock { $0 = (counters, bindings) }
    }
}
