import MATNode
import Testing

@Suite("Prometheus exposition")
struct PrometheusExpositionTests {
    @Test func countersHistogramAndPeersInTheTextFormat() {
        var counters = EngineCounters()
        counters.outboundPackets = 7
        counters.inboundBytes = 1_500
        var histogram = DurationHistogram()
        for milliseconds: UInt64 in [3, 5, 6, 40, 20_000] { histogram.record(milliseconds: milliseconds) }
        var lookups = DurationHistogram()
        lookups.record(milliseconds: 1_200)
        let stats = StatsReport(counters, ims: ["queries": 2], signaling: ["acks_received": 4], control: nil,
                                alertAcknowledged: histogram, imsRequests: ["lookup": lookups, "registration": DurationHistogram()])
        let peers = [
            PeerReport(homeAddress: "198.51.100.20", mobileAddresses: [], preferred: nil, sequence: 1,
                       alert: "awaiting_ack"),
            PeerReport(homeAddress: "198.51.100.10", mobileAddresses: [], preferred: nil, sequence: 1,
                       alert: "acknowledged", lastAckSecondsAgo: 2.5, roundTripMilliseconds: 12),
        ]
        let text = PrometheusExposition.render(stats: stats, peers: peers)
        let lines = text.split(separator: "\n").map(String.init)
        for expected in [
            "# HELP matd_packets_total Packets the engine translated, by direction.",
            "# TYPE matd_packets_total counter",
            "matd_packets_total{direction=\"outbound\"} 7",
            "matd_bytes_total{direction=\"inbound\"} 1500",
            "matd_signaling_events_total{event=\"acks_received\"} 4",
            "matd_ims_client_events_total{event=\"queries\"} 2",
            "# TYPE matd_alert_acknowledged_seconds histogram",
            "matd_alert_acknowledged_seconds_bucket{le=\"0.005\"} 2",
            "matd_alert_acknowledged_seconds_bucket{le=\"0.01\"} 3",
            "matd_alert_acknowledged_seconds_bucket{le=\"0.05\"} 4",
            "matd_alert_acknowledged_seconds_bucket{le=\"10.0\"} 4",
            "matd_alert_acknowledged_seconds_bucket{le=\"+Inf\"} 5",
            "matd_alert_acknowledged_seconds_sum 20.054",
            "matd_alert_acknowledged_seconds_count 5",
            "# TYPE matd_ims_request_seconds histogram",
            "matd_ims_request_seconds_bucket{kind=\"lookup\",le=\"1.0\"} 0",
            "matd_ims_request_seconds_bucket{kind=\"lookup\",le=\"2.5\"} 1",
            "matd_ims_request_seconds_sum{kind=\"lookup\"} 1.2",
            "matd_ims_request_seconds_count{kind=\"registration\"} 0",
            "matd_peers 2",
            "matd_peer_alert_state{peer=\"198.51.100.10\",state=\"acknowledged\"} 1",
            "matd_peer_alert_state{peer=\"198.51.100.20\",state=\"awaiting_ack\"} 1",
            "matd_peer_last_ack_age_seconds{peer=\"198.51.100.10\"} 2.5",
            "matd_peer_round_trip_seconds{peer=\"198.51.100.10\"} 0.012",
        ] {
            #expect(lines.contains(expected), "missing \(expected) in\n\(text)")
        }
        // Every drop reason is there, zeros included, so a rate() never starts from nothing.
        #expect(lines.filter { $0.hasPrefix("matd_drops_total{") }.count == counters.dropsByReason.count)
        // Peers come sorted; the control family is absent without counters.
        #expect(lines.firstIndex(of: "matd_peer_alert_state{peer=\"198.51.100.10\",state=\"acknowledged\"} 1")!
                < lines.firstIndex(of: "matd_peer_alert_state{peer=\"198.51.100.20\",state=\"awaiting_ack\"} 1")!)
        #expect(!text.contains("matd_control_events_total"))
        #expect(text.hasSuffix("\n"))
    }

    /// The UDP encapsulation's counters are one family, the event a label without the
    /// `encap_` prefix; absent when the encapsulation is off (no counters).
    @Test func encapsulationCountersAreOneFamily() {
        var stats = StatsReport(EngineCounters())
        #expect(!PrometheusExposition.render(stats: stats, peers: []).contains("matd_encapsulation"))
        var counters = EncapCounters()
        counters.packetsSent = 812
        counters.refused = 3
        stats.encapsulation = Dictionary(uniqueKeysWithValues: counters.named)
        let lines = PrometheusExposition.render(stats: stats, peers: []).split(separator: "\n").map(String.init)
        #expect(lines.contains("# TYPE matd_encapsulation_events_total counter"))
        #expect(lines.contains("matd_encapsulation_events_total{event=\"packets_sent\"} 812"))
        #expect(lines.contains("matd_encapsulation_events_total{event=\"refused\"} 3"))
        #expect(lines.contains("matd_encapsulation_events_total{event=\"keepalives_received\"} 0"))
        #expect(lines.filter { $0.hasPrefix("matd_encapsulation_events_total{") }.count == counters.named.count)
    }

    /// A relay's counters are one family, the event a label, and its bindings and the
    /// families it listens on gauges;
    /// absent on a node that is no relay.
    @Test func relayCountersAreOneFamilyAndBindingsAGauge() {
        var stats = StatsReport(EngineCounters())
        #expect(!PrometheusExposition.render(stats: stats, peers: []).contains("matd_relay"))
        var counters = RelayForwarder.Counters()
        counters.forwarded = 40
        counters.refusedForSourceBudget = 48
        stats.relay = Dictionary(uniqueKeysWithValues: counters.named + [("bindings", 3), ("listening_ipv4", 1),
                                                                          ("listening_ipv6", 0)])
        let lines = PrometheusExposition.render(stats: stats, peers: []).split(separator: "\n").map(String.init)
        #expect(lines.contains("# TYPE matd_relay_events_total counter"))
        #expect(lines.contains("matd_relay_events_total{event=\"forwarded\"} 40"))
        #expect(lines.contains("matd_relay_events_total{event=\"refused_source_budget\"} 48"))
        #expect(lines.contains("matd_relay_events_total{event=\"refused_verification_budget\"} 0"))
        #expect(lines.filter { $0.hasPrefix("matd_relay_events_total{") }.count == counters.named.count)
        #expect(lines.contains("# TYPE matd_relay_bindings gauge") && lines.contains("matd_relay_bindings 3"))
        // The families it listens on are a gauge too, not events.
        #expect(lines.contains("# TYPE matd_relay_listening gauge"))
        #expect(lines.contains("matd_relay_listening{family=\"ipv4\"} 1")
                && lines.contains("matd_relay_listening{family=\"ipv6\"} 0"), "\(lines)")
    }

    /// The kernel fast path's counters: direction and family as labels, and its rule
    /// writes; absent when the fast path is off.
    @Test func kernelFastPathCounters() {
        var stats = StatsReport(EngineCounters())
        #expect(!PrometheusExposition.render(stats: stats, peers: []).contains("matd_kernel_fast_path"))
        stats.kernelFastPath = ["out4_packets": 10, "out4_bytes": 1_000, "in6_packets": 7, "in6_bytes": 700,
                                "in4_packets": 0, "in4_bytes": 0, "out6_packets": 0, "out6_bytes": 0, "rule_writes": 3]
        let lines = PrometheusExposition.render(stats: stats, peers: []).split(separator: "\n").map(String.init)
        #expect(lines.contains("# TYPE matd_kernel_fast_path_packets_total counter"))
        #expect(lines.contains("matd_kernel_fast_path_packets_total{direction=\"outbound\",family=\"ipv4\"} 10"))
        #expect(lines.contains("matd_kernel_fast_path_bytes_total{direction=\"inbound\",family=\"ipv6\"} 700"))
        #expect(lines.filter { $0.hasPrefix("matd_kernel_fast_path_packets_total{") }.count == 4)
        #expect(lines.contains("matd_kernel_fast_path_rule_writes_total 3"))
    }

    @Test func labelValuesAreEscaped() {
        let peers = [PeerReport(homeAddress: "a\"b\\c\nd", mobileAddresses: [], preferred: nil, sequence: 0, alert: "x")]
        let text = PrometheusExposition.render(stats: StatsReport(EngineCounters()), peers: peers)
        #expect(text.contains("matd_peer_alert_state{peer=\"a\\\"b\\\\c\\nd\",state=\"x\"} 1"), "\(text)")
    }
}
