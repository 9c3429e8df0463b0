#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// mat-ims's `metrics-listen`: after two nodes registered and looked each other up, and one
/// unsigned UPDATE was refused, a scrape as Prometheus makes it passes `promtool check
/// metrics` and shows those figures.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct IMSMetricsLabTests {
    @Test func metricsListenServesCountersThatPassPromtool() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS(metricsListen: "127.0.0.1:9475")
        for node in ["vm", "cn"] {
            try lab.startMatd(node, config: try lab.writeIMSConfig(node))
            #expect(lab.waitForLog(node, "registered \(Addr.node(node).home4)"), "\(node) did not register")
        }
        // First contact: the CN looks the VM up (queries), the VM looks the CN up by its MoA.
        #expect(try lab.ping("cn", Addr.node("vm").home4, count: 3) || lab.ping("cn", Addr.node("vm").home4, count: 3))
        // An unsigned UPDATE: refused, and counted as such.
        let unsigned = try lab.run("cn", ["bash", "-c",
            "printf 'server 192.0.2.132\\nzone mat.example.\\nupdate add x.hoa.mat.example. 10 A 192.0.2.99\\nsend\\n' | nsupdate -t 3"])
        #expect(!unsigned.succeeded && (unsigned.stdout + unsigned.stderr).contains("REFUSED"), "\(unsigned.summary)")

        let scrape = try lab.run("ims", ["python3", "-c", """
            import urllib.request
            with urllib.request.urlopen("http://127.0.0.1:9475/metrics", timeout=10) as r:
                print(r.headers["Content-Type"])
                print(r.read().decode(), end="")
            """])
        #expect(scrape.succeeded, "\(scrape.summary)")
        let contentType = scrape.stdout.prefix { $0 != "\n" }
        let text = String(scrape.stdout.drop { $0 != "\n" }.dropFirst())
        #expect(contentType == "text/plain; version=0.0.4; charset=utf-8", "\(scrape.stdout)")
        try text.write(toFile: lab.path("ims.prom"), atomically: true, encoding: .utf8)
        let lint = try runCommand(["bash", "-c", "promtool check metrics < \"$1\"", "promtool", lab.path("ims.prom")], timeout: 30)
        #expect(lint.succeeded, "promtool check metrics:\n\(lint.summary)\n\(text)")

        func value(_ series: String) -> UInt64? {
            text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { UInt64($0.split(separator: " ").last ?? "") }
        }
        // Two registrations at least (one per node; a lookup's answer may bring more).
        #expect((value("mat_ims_updates_total{result=\"accepted\"}") ?? 0) >= 2, "\(text)")
        #expect(value("mat_ims_updates_total{result=\"refused-unsigned\"}") == 1, "\(text)")
        #expect(value("mat_ims_updates_total{result=\"refused-policy\"}") == 0, "\(text)")
        #expect((value("mat_ims_queries_total") ?? 0) >= 1, "\(text)")
        #expect(value("mat_ims_rate_limit_total{action=\"dropped\"}") == 0, "\(text)")
        #expect((value("mat_ims_zone_serial{zone=\"mat.example.\"}") ?? 0) > 0, "\(text)")
        #expect((value("mat_ims_zone_names{zone=\"mat.example.\"}") ?? 0) >= 2, "\(text)")
        #expect((value("mat_ims_journal_bytes{zone=\"mat.example.\"}") ?? 0) > 0, "\(text)")
        #expect(value("mat_ims_metrics_events_total{event=\"metrics_requests\"}") == 1, "\(text)")
        #expect(text.contains("# TYPE mat_ims_updates_total counter\n"), "\(text)")
    }
}
