import MATMetrics

/// matd's counters in the Prometheus text exposition format (version 0.0.4), for
/// `matctl stats --prometheus` (node_exporter's textfile collector) and `metrics-listen`.
/// Names follow Prometheus's conventions: a `matd_` prefix, `_total` on counters, seconds
/// and bytes as units; docs/operations.md lists them.
public enum PrometheusExposition {
    /// The exposition of `stats`, with one series per peer in `peers` for the per-peer
    /// gauges (address, alert state, last acknowledgement, round trip); `matd_peers` is
    /// `status`'s count of the engine's mappings, or `peers`' count without a status.
    public static func render(stats: StatsReport, peers: [PeerReport], status: StatusReport? = nil) -> String {
        var out = PrometheusWriter()
        out.family("matd_packets_total", "Packets the engine translated, by direction.", .counter, [
            (["direction": "outbound"], .integer(stats.outboundPackets)),
            (["direction": "inbound"], .integer(stats.inboundPackets)),
        ])
        out.family("matd_bytes_total", "Bytes the engine translated, by direction.", .counter, [
            (["direction": "outbound"], .integer(stats.outboundBytes)),
            (["direction": "inbound"], .integer(stats.inboundBytes)),
        ])
        out.family("matd_super_packets_total", "GSO super-packets translated whole.", .counter,
                   [([:], .integer(stats.superPackets))])
        out.family("matd_drops_total", "Packets the engine dropped, by reason.", .counter,
                   stats.drops.sorted { $0.key < $1.key }.map { (["reason": $0.key], .integer($0.value)) })
        out.family("matd_tun_read_errors_total", "Reads from the TUN device that failed.", .counter,
                   [([:], .integer(stats.tunReadErrors ?? 0))])
        out.family("matd_refused_mappings_total", "Mappings the engine's table refused.", .counter,
                   [([:], .integer(stats.refusedMappings ?? 0))])
        out.family("matd_held_packets_sent_total", "Kept packets sent once their peer was released or its new MoA answered.", .counter,
                   [([:], .integer(stats.heldPacketsSent ?? 0))])
        if let signaling = stats.signaling {
            out.family("matd_signaling_events_total", "Mobility signaling: messages sent, received and refused, by event.",
                       .counter, signaling.sorted { $0.key < $1.key }.map { (["event": $0.key], .integer($0.value)) })
        }
        if let encapsulation = stats.encapsulation {
            // The counters' names less their `encap_` prefix: one family, the event a label.
            out.family("matd_encapsulation_events_total",
                       "UDP encapsulation: packets carried, keepalives, probes and refusals, by event.", .counter,
                       encapsulation.sorted { $0.key < $1.key }.map { counter in
                           let event = counter.key.hasPrefix("encap_") ? String(counter.key.dropFirst(6)) : counter.key
                           return (["event": event], .integer(counter.value))
                       })
        }
        if let relay = stats.relay {
            out.family("matd_relay_events_total",
                       "Relay: registrations accepted and refused (for budget too), packets forwarded and refused, by event.",
                       .counter, relay.filter { $0.key != "bindings" && !$0.key.hasPrefix("listening_") }
                           .sorted { $0.key < $1.key }.map { (["event": $0.key], .integer($0.value)) })
            out.family("matd_relay_bindings", "Relay: NAT bindings registered now.", .gauge,
                       [([:], .integer(relay["bindings"] ?? 0))])
            out.family("matd_relay_listening", "Relay: 1 when encap-port is bound in the family, else 0.", .gauge,
                       ["ipv4", "ipv6"].map { (["family": $0], .integer(relay["listening_\($0)"] ?? 0)) })
        }
        if let fast = stats.kernelFastPath {
            // `out4_packets` and the like: direction and family as labels; not in the
            // engine's families above (docs/datapath.md, "Kernel fast path").
            func series(_ unit: String) -> [([String: String], PrometheusWriter.Value)] {
                fast.keys.sorted().compactMap { key in
                    let parts = key.split(separator: "_", maxSplits: 1)
                    guard parts.count == 2, parts[1] == unit, let value = fast[key], let last = parts[0].last,
                          ["4", "6"].contains(last), ["out", "in"].contains(String(parts[0].dropLast())) else { return nil }
                    return (["direction": parts[0].hasPrefix("out") ? "outbound" : "inbound",
                             "family": last == "4" ? "ipv4" : "ipv6"], .integer(value))
                }
            }
            out.family("matd_kernel_fast_path_packets_total",
                       "Packets the kernel fast path translated (not in matd_packets_total), by direction and family.",
                       .counter, series("packets"))
            out.family("matd_kernel_fast_path_bytes_total",
                       "Bytes the kernel fast path translated (not in matd_bytes_total), by direction and family.",
                       .counter, series("bytes"))
            out.family("matd_kernel_fast_path_rule_writes_total", "Transactions that changed the kernel fast path's rules or its maps' elements.",
                       .counter, [([:], .integer(fast["rule_writes"] ?? 0))])
        }
        if let histogram = stats.alertAcknowledged {
            out.histograms("matd_alert_acknowledged_seconds",
                           "From the first send of an alert to the peer's acknowledgement (one sample per peer and move).",
                           [([:], histogram.prometheus)])
        }
        if let requests = stats.imsRequests {
            out.histograms("matd_ims_request_seconds", "IMS registrations and lookups, to the answer or the last timeout.",
                           requests.sorted { $0.key < $1.key }.map { (["kind": $0.key], $0.value.prometheus) })
        }
        if let ims = stats.ims {
            out.family("matd_ims_client_events_total", "IMS client: queries, registrations and failures, by event.",
                       .counter, ims.sorted { $0.key < $1.key }.map { (["event": $0.key], .integer($0.value)) })
        }
        if let control = stats.control {
            out.family("matd_control_events_total", "Control socket: connections and their outcomes, by event.",
                       .counter, control.sorted { $0.key < $1.key }.map { (["event": $0.key], .integer($0.value)) })
        }
        if let status {
            out.family("matd_uptime_seconds", "Seconds since matd started.", .gauge, [([:], .integer(status.uptimeSeconds))])
            out.family("matd_mobile_address_info", "The node's current mobile addresses (value 1).", .gauge,
                       status.mobileAddresses.map { (["address": $0], .integer(1)) })
        }
        out.family("matd_peers", "Peers with a mapping.", .gauge,
                   [([:], .integer(UInt64(status?.peerCount ?? peers.count)))])
        let sorted = peers.sorted { $0.homeAddress < $1.homeAddress }
        out.family("matd_peer_alert_state", "The last alert to each peer (1 for its state).", .gauge,
                   sorted.compactMap { peer in peer.alert.map { (["peer": peer.homeAddress, "state": $0], .integer(1)) } })
        out.family("matd_peer_last_ack_age_seconds", "Seconds since each peer last acknowledged an alert.", .gauge,
                   sorted.compactMap { peer in peer.lastAckSecondsAgo.map { (["peer": peer.homeAddress], .real($0)) } })
        out.family("matd_peer_round_trip_seconds", "Round trip of each peer's last alert acknowledged after one send.",
                   .gauge, sorted.compactMap { peer in
                       peer.roundTripMilliseconds.map { (["peer": peer.homeAddress], .real(Double($0) / 1_000)) }
                   })
        return out.text
    }
}

extension DurationHistogram {
    /// The histogram as the writer takes it: bounds in seconds, cumulative counts.
    var prometheus: PrometheusWriter.Histogram {
        PrometheusWriter.Histogram(boundsSeconds: Self.boundsMilliseconds.map { Double($0) / 1_000 }, cumulative: cumulative,
                                   sumSeconds: Double(sumMilliseconds) / 1_000, count: count)
    }
}
