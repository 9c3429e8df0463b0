import MATPacket

/// A relay's counters for `matctl stats` and the metrics (`[relay] serve = on`).
extension Engine {
    /// The relay's counters by name, the bindings it holds (`bindings`), as of the last
    /// publication, and whether it listens on IPv4 and IPv6 (`listening_ipv4`,
    /// `listening_ipv6`: 1 or 0, ``EncapFamilies``); nil on a node that is no relay.
    public var relayStatistics: [String: UInt64]? {
        guard let published = publishedRelay.withLock({ $0 }) else { return nil }
        let families = encap?.families ?? []
        return Dictionary(uniqueKeysWithValues: published.counters.named + [
            ("bindings", UInt64(published.bindings)),
            ("listening_ipv4", families.contains(.ipv4) ? 1 : 0), ("listening_ipv6", families.contains(.ipv6) ? 1 : 0),
        ])
    }

    /// Copies the relay's counters for the other threads (from ``publish()``; allocates nothing).
    func publishRelay(_ relay: RelayForwarder) {
        let counters = relay.counters, bindings = relay.table.count
        publishedRelay.withLock { $0 = (counters, bindings) }
    }
}
