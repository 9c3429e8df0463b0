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
        let block = try #require(section.components(separatedBy: "```").dropFirst().first)
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
        let outbound = lines.first { $0.hasPrefix("matd_packets_total{direction=\"outbound\"} ") }
        #expect(outbound.flatMap { UInt64($0.split(separator: " ").last ?? "") }.map { $0 >= 3 } == true, "\(text)")
        #expect(lines.contains { $0.hasPrefix("matd_ims_client_events_total{event=") }, "\(text)")
        // --json and --prometheus together are a usage error, not a silent choice.
        let both = try runCommand([LabPaths.matctl, "stats", "--prometheus", "--json", "--socket", lab.socket("cn")])
        #expect(!both.succeeded && both.stderr.contains("exclude each other"), "\(both.summary)")
    }
}
