/// matd's counters in the Prometheus text exposition format (version 0.0.4), for
/// `matctl stats --prometheus` (node_exporter's textfile collector) and `metrics-listen`.
/// Names follow Prometheus's conventions: a `matd_` prefix, `_total` on counters, seconds
/// and bytes as units; docs/operations.md lists them.
public enum PrometheusExposition {
    /// The Content-Type of the text format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The exposition of `stats`, with one series per peer in `peers` for the per-peer
    /// gauges (address, alert state, last acknowledgement, round trip).
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
        out.family("matd_held_packets_sent_total", "Held packets sent once their peer was released.", .counter,
                   [([:], .integer(stats.heldPacketsSent ?? 0))])
        if let signaling = stats.signaling {
            out.family("matd_signaling_events_total", "Mobility signaling: messages sent, received and refused, by event.",
                       .counter, signaling.sorted { $0.key < $1.key }.map { (["event": $0.key], .integer($0.value)) })
        }
        if let histogram = stats.alertAcknowledged {
            out.histogram("matd_alert_acknowledged_seconds",
                          "From the first send of an alert to the peer's acknowledgement (one sample per peer and move).",
                          histogram)
        }
        if let requests = stats.imsRequests {
            out.histograms("matd_ims_request_seconds", "IMS registrations and lookups, to the answer or the last timeout.",
                           label: "kind", requests.sorted { $0.key < $1.key })
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
        out.family("matd_peers", "Peers with a mapping.", .gauge, [([:], .integer(UInt64(peers.count)))])
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

/// Writes metric families: HELP and TYPE lines, then the samples with escaped labels.
struct PrometheusWriter {
    enum Kind: String { case counter, gauge, histogram }
    enum Value {
        case integer(UInt64)
        case real(Double)

        var text: String {
            switch self {
            case .integer(let value): String(value)
            case .real(let value): value.isFinite ? String(value) : (value.isNaN ? "NaN" : (value > 0 ? "+Inf" : "-Inf"))
            }
        }
    }

    private(set) var text = ""

    /// One family; written even without samples, so scrapers always see its HELP and TYPE.
    mutating func family(_ name: String, _ help: String, _ kind: Kind, _ samples: [([String: String], Value)]) {
        header(name, help, kind)
        for (labels, value) in samples { sample(name, labels, value) }
    }

    mutating func histogram(_ name: String, _ help: String, _ histogram: DurationHistogram) {
        header(name, help, .histogram)
        samples(of: histogram, name, [:])
    }

    /// One histogram family with a series per value of `label`.
    mutating func histograms(_ name: String, _ help: String, label: String, _ series: [(String, DurationHistogram)]) {
        header(name, help, .histogram)
        for (value, histogram) in series { samples(of: histogram, name, [label: value]) }
    }

    private mutating func samples(of histogram: DurationHistogram, _ name: String, _ labels: [String: String]) {
        let bounds = DurationHistogram.boundsMilliseconds.map { String(Double($0) / 1_000) } + ["+Inf"]
        for (bound, count) in zip(bounds, histogram.cumulative) {
            sample(name + "_bucket", labels.merging(["le": bound]) { $1 }, .integer(count))
        }
        sample(name + "_sum", labels, .real(Double(histogram.sumMilliseconds) / 1_000))
        sample(name + "_count", labels, .integer(histogram.count))
    }

    private mutating func header(_ name: String, _ help: String, _ kind: Kind) {
        text += "# HELP \(name) \(Self.escape(help, quotes: false))\n# TYPE \(name) \(kind.rawValue)\n"
    }

    private mutating func sample(_ name: String, _ labels: [String: String], _ value: Value) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escape($0.value))\"" }
                .joined(separator: ",") + "}"
        }
        text += " \(value.text)\n"
    }

    /// Text escaped as the format wants: backslash and newline always, the double quote in
    /// label values (`quotes`) but not in HELP text.
    static func escape(_ value: String, quotes: Bool = true) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"" where quotes: out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }
}
