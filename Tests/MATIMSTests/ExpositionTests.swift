import MATConfig
import MATDNS
import MATIMS
import MATIMSCore
import MATPacket
import Testing

/// mat-ims's Prometheus exposition: every counter is there (zeros too) under its family,
/// the zone gauges follow the zone, and `metrics-listen` parses like matd's.
@Suite struct ExpositionTests {
    @Test func countersAndZonesAreExposed() throws {
        let core = try makeCore()
        try send(try update(node1Key) { $0.add(hoa("198.51.100.10"), ttl: 10, a("192.0.2.10")) }, to: core)
        try send(try update(nil) { $0.add(hoa("198.51.100.10"), ttl: 10, a("203.0.113.66")) }, to: core)
        let text = IMSExposition.render(core: core, uptimeSeconds: 7, endpoint: ["metrics_requests": 2])
        let lines = Set(text.split(separator: "\n").map(String.init))
        #expect(lines.contains("mat_ims_updates_total{result=\"accepted\"} 1"), "\(text)")
        #expect(lines.contains("mat_ims_updates_total{result=\"refused-unsigned\"} 1"), "\(text)")
        #expect(lines.contains("mat_ims_updates_total{result=\"refused-policy\"} 0"), "\(text)")
        #expect(lines.contains("mat_ims_tsig_errors_total{error=\"badsig\"} 0"), "\(text)")
        #expect(lines.contains("mat_ims_rate_limit_total{action=\"dropped\"} 0"), "\(text)")
        #expect(lines.contains("mat_ims_events_total{event=\"axfr-served\"} 0"), "\(text)")
        let serial = try #require(core.zone(zoneName)?.serial)
        #expect(lines.contains("mat_ims_zone_serial{zone=\"\(zoneName)\"} \(serial)"), "\(text)")
        #expect(lines.contains("mat_ims_uptime_seconds 7"))
        #expect(lines.contains("mat_ims_metrics_events_total{event=\"metrics_requests\"} 2"))
        // Kept in memory: no journal, so no journal series (but its HELP and TYPE).
        #expect(!text.contains("mat_ims_journal_bytes{"))
        #expect(lines.contains("# TYPE mat_ims_journal_bytes gauge"))
        // Every counter, exactly once, in some family.
        let samples = lines.filter { $0.hasPrefix("mat_ims_") && $0.contains("_total") }
        #expect(samples.count == IMSCounter.allCases.count + 1, "\(samples.sorted())")   // + the metrics endpoint's one
    }

    @Test func metricsListenNeedsAnAddressAndAPort() throws {
        let parse = { (line: String) throws(ConfigError) -> IMSConfiguration in
            try IMSConfiguration.parse("[server]\nlisten = 127.0.0.1:53\n\(line)\n[zone]\nname = mat.example.\nns = ns.mat.example.\n",
                                       baseDirectory: "/etc/mat") { (path: String) throws(ConfigError) -> String in
                throw ConfigError(line: 0, key: nil, message: "cannot read \(path)")
            }
        }
        #expect(try parse("metrics-listen = [::1]:9475").metricsListen == IPEndpoint("[::1]:9475", defaultPort: nil))
        #expect(try parse("").metricsListen == nil)
        #expect(throws: ConfigError.self) { try parse("metrics-listen = 127.0.0.1") }
    }
}
