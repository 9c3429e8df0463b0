#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// `matctl stats --prometheus` against a running matd: what node_exporter's textfile
/// collector would read passes `promtool check metrics` and carries the engine's, the
/// signaling's and the per-peer figures.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct MetricsLabTests {
    @Test func prometheusExpositionPassesPromtoolAndCarriesTheFigures() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        let vm = Addr.node("vm")
        // First contact: the CN looks the VM up, alerts it and gets its acknowledgement.
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        usleep(300_000)
        // docs/operations.md's textfile-collector lines, run as written but for the directory
        // and the control socket.
        let docs = try String(contentsOf: LabPaths.repositoryRoot.appendingPathComponent("docs/operations.md"), encoding: .utf8)
        let section = try #require(docs.components(separatedBy: "## Metrics").dropFirst().first)
        let blocks = section.components(separatedBy: "## ").first!.components(separatedBy: "```").enumerated()
            .filter { $0.offset % 2 == 1 }.map(\.element)
        let block = try #require(blocks.first { $0.contains("matctl stats --prometheus") })
        // The scrape configuration there is one Prometheus takes.
        let scrapeConfig = try #require(blocks.first { $0.contains("scrape_configs") })
        try scrapeConfig.write(toFile: lab.path("prometheus.yml"), atomically: true, encoding: .utf8)
        let checked = try runCommand(["promtool", "check", "config", lab.path("prometheus.yml")], timeout: 30)
        #expect(checked.succeeded, "promtool check config:\n\(checked.summary)")
        let script = block
            .replacingOccurrences(of: "dir=/var/lib/prometheus/node-exporter", with: "dir=\(lab.path("collector"))")
            .replacingOccurrences(of: "matctl stats --prometheus", with: "\(LabPaths.matctl) stats --prometheus --socket \(lab.socket("cn"))")
        #expect(script != block && script.contains("--socket"), "the documented lines changed:\n\(block)")
        try FileManager.default.createDirectory(atPath: lab.path("collector"), withIntermediateDirectories: true)
        let ran = try runCommand(["bash", "-euc", script], timeout: 30)
        #expect(ran.succeeded, "\(ran.summary)")
        let file = lab.path("collector/matd.prom")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(!FileManager.default.fileExists(atPath: lab.path("collector/matd.prom.tmp")))
        let lint = try runCommand(["bash", "-c", "promtool check metrics < \"$1\"", "promtool", file], timeout: 30)
        #expect(lint.succeeded, "promtool check metrics:\n\(lint.summary)\n\(text)")

        let lines = Set(text.split(separator: "\n").map(String.init))
        #expect(lines.contains("# TYPE matd_packets_total counter"))
        #expect(lines.contains("# TYPE matd_alert_acknowledged_seconds histogram"))
        #expect(lines.contains("matd_alert_acknowledged_seconds_count 1"), "\(text)")
        #expect(lines.contains("matd_alert_acknowledged_seconds_bucket{le=\"+Inf\"} 1"), "\(text)")
        #expect(lines.contains("matd_peer_alert_state{peer=\"\(vm.home4)\",state=\"acknowledged\"} 1"), "\(text)")
        #expect(lines.contains("matd_signaling_events_total{event=\"acks_received\"} 1"), "\(text)")
        #expect(lines.contains("matd_mobile_address_info{address=\"\(Addr.cn.mobile4)\"} 1"), "\(text)")
        // The pings went out through the engine or the kernel fast path (its own family).
        let outbound = lines.filter {
            $0.hasPrefix("matd_packets_total{direction=\"outbound\"} ")
                || $0.hasPrefix("matd_kernel_fast_path_packets_total{direction=\"outbound\",")
        }.compactMap { UInt64($0.split(separator: " ").last ?? "") }
        #expect(outbound.reduce(0, +) >= 3, "\(text)")
        #expect(lines.contains { $0.hasPrefix("matd_ims_client_events_total{event=") }, "\(text)")
        // The registration at start and the first-contact lookup, each timed.
        for kind in ["registration", "lookup"] {
            let count = lines.first { $0.hasPrefix("matd_ims_request_seconds_count{kind=\"\(kind)\"} ") }
            #expect(count.flatMap { UInt64($0.split(separator: " ").last ?? "") }.map { $0 >= 1 } == true, "\(kind): \(text)")
        }
        // --json and --prometheus together are a usage error, not a silent choice.
        let both = try runCommand([LabPaths.matctl, "stats", "--prometheus", "--json", "--socket", lab.socket("cn")])
        #expect(!both.succeeded && both.stderr.contains("exclude each other"), "\(both.summary)")
    }

    /// `metrics-listen`: matd serves the same exposition over HTTP, as Prometheus scrapes it.
    @Test func metricsListenServesTheExpositionOverHTTP() throws {
        let lab = try Lab()
        defer { lab.close() }
        let file = try lab.writeConfig("vm", adding: "metrics-listen = 127.0.0.1:9474", file: "vm-metrics.conf")
        try lab.startMatd("vm", config: file)
        try lab.startMatd("cn")
        #expect(try lab.ping("vm", Addr.cn.home4, count: 3))
        let scrape = try lab.exec("vm", "python3", "-c", """
            import urllib.request
            with urllib.request.urlopen("http://127.0.0.1:9474/metrics", timeout=10) as r:
                print(r.headers["Content-Type"])
                print(r.read().decode(), end="")
            """)
        let (contentType, body) = (scrape.prefix { $0 != "\n" }, scrape.drop { $0 != "\n" }.dropFirst())
        #expect(contentType == "text/plain; version=0.0.4; charset=utf-8", "\(scrape)")
        let saved = lab.path("scraped.prom")
        try String(body).write(toFile: saved, atomically: true, encoding: .utf8)
        let lint = try runCommand(["bash", "-c", "promtool check metrics < \"$1\"", "promtool", saved], timeout: 30)
        #expect(lint.succeeded, "promtool check metrics:\n\(lint.summary)\n\(body)")
        #expect(body.contains("matd_peers 2\n"), "\(body)")
        #expect(body.contains("matd_control_events_total{event=\"metrics_requests\"}"), "\(body)")
        let ping = body.split(separator: "\n").filter {
            $0.hasPrefix("matd_packets_total{direction=\"outbound\"} ")
                || $0.hasPrefix("matd_kernel_fast_path_packets_total{direction=\"outbound\",")
        }.compactMap { UInt64($0.split(separator: " ").last ?? "") }
        #expect(ping.reduce(0, +) >= 3, "\(body)")
        // Only on the configured address: the node's MoA does not answer.
        let elsewhere = try runCommand(lab.inNode("cn", ["python3", "-c", """
            import socket
            socket.create_connection(("\(Addr.vm.mobile4)", 9474), timeout=3)
            """]))
        #expect(!elsewhere.succeeded, "the metrics port answers on the MoA")
    }
}
