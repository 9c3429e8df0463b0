#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATSignaling
import Testing

/// matd with 100,000 learned mappings (issue 9, "Never blocks"): the control plane and
/// the engine do no work in proportion to the table per command, so `matctl` still answers
/// at once and a move still reaches the one live peer at once.
@Suite(.serialized) struct ScaleLabTests {

    /// The VM's state file holds 100,000 learned IPv6 peers (HoAs in 2001:db8:4000::/96, MoAs
    /// in 2001:db8:4001::/96, where nothing answers), as after a restart of a busy node; the
    /// CN is a configured peer with a pinned key, both ways. Times `matctl peers` and
    /// `matctl status`, then moves the VM and times the CN's adoption of its new IPv4 MoA.
    /// Run without the learned peers first, as the baseline the figures compare with, then
    /// with them on the engine's path, then with the kernel fast path on: its maps get all
    /// 100,001 peers (elements written a part per turn of the engine's loop), and after
    /// the move the CN's traffic is translated by the kernel again.
    @Test(arguments: [(0, false), (100_000, false), (100_000, true)])
    func aMoveWithAHundredThousandMappingsLoaded(learnedPeers: Int, fastPath: Bool) throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.writeLearnedIPv6Peers(lab.path("vm-state"), count: learnedPeers)
        try lab.writeStaticPeerConfigurations("scale", extra: Self.proofLifetime)
        let started = Date()
        // Parsing the file and writing 100,000 set elements takes a while in a debug build
        // on a loaded machine.
        let environment = [KernelFastPath.environmentVariable: fastPath ? "on" : "off"]
        try lab.startMatd("vm", config: lab.path("vm-scale.conf"), environment: environment, timeout: 180)
        let startSeconds = Date().timeIntervalSince(started)
        try lab.startMatd("cn", config: lab.path("cn-scale.conf"), environment: environment)
        #expect(learnedPeers == 0 || lab.matdLog("vm").contains("restored \(learnedPeers) learned peer(s)"), "\(lab.matdLog("vm"))")
        #expect(try lab.ping("vm", Addr.cn.home4))
        var filled: Double?
        if fastPath {
            // Every peer goes into the kernel's maps, while matd answers and carries traffic.
            let want = "kernel fast path: on, \(learnedPeers + 1) peer(s)"
            while filled == nil && Date().timeIntervalSince(started) < 180 {
                if try lab.matctl("vm", "status").contains(want) { filled = Date().timeIntervalSince(started) } else { usleep(200_000) }
            }
            let status = try lab.matctl("vm", "status")
            #expect(filled != nil, "\(status)\n\(lab.matdLog("vm").suffix(3_000))")
        }

        // Lab.matctl gives up after 20 s; at a load of 20 this build took longer.
        let (peers, peersSeconds) = try timed {
            try lab.run("vm", [LabPaths.matctl, "peers", "--socket", lab.socket("vm")], timeout: 60).stdout
        }
        let (_, statusSeconds) = try timed { try lab.matctl("vm", "status") }
        let listed = peers.split(separator: "\n").filter { $0.contains("2001:db8:4000::") }.count
        #expect(listed == learnedPeers, "matctl peers listed \(listed)")
        if fastPath {
            let cnLine = peers.split(separator: "\n").first { $0.contains("\(Addr.cn.home4) ->") }
            #expect(cnLine?.contains("path kernel") == true, "\(cnLine ?? "no line for the CN")")
        }
        #expect(peersSeconds < 15, "matctl peers took \(peersSeconds) s")
        // The engine read its table a part per turn, packets handled between the parts.
        let listing = try lab.stats("vm")["peerListing"] as? [String: Any] ?? [:]
        let number = { (key: String) in (listing[key] as? NSNumber)?.intValue ?? -1 }
        #expect(number("mappings") == learnedPeers + 1, "\(listing)")
        #expect(number("parts") >= (learnedPeers + 1 + Engine.listingPart - 1) / Engine.listingPart, "\(listing)")
        #expect(number("longest_part_us") < 250_000, "the engine stopped \(number("longest_part_us")) us for one part")
        #expect(statusSeconds < 0.5, "matctl status took \(statusSeconds) s")

        // The IPv6 MoA changes too: the 100,000 IPv6 peers are alerted, the CN first.
        try lab.moveVM(to: "b")
        let start = Date()
        var adopted: Double?
        while adopted == nil && Date().timeIntervalSince(start) < 30 {
            if try lab.matctl("cn", "peers").contains("\(Addr.vm.home4) -> 203.0.113.10*") {
                adopted = Date().timeIntervalSince(start)
            } else {
                usleep(10_000)
            }
        }
        let (_, statusDuringMove) = try timed { try lab.matctl("vm", "status") }
        let firstAlert = Self.firstAlertMilliseconds(lab.matdLog("vm"))
        print("scale: learned=\(learnedPeers) fast_path=\(fastPath) fill_s=\(filled.map(format) ?? "-") start_s=\(format(startSeconds)) peers_s=\(format(peersSeconds)) status_s=\(format(statusSeconds)) "
            + "listing_parts=\(number("parts")) listing_longest_part_ms=\(format(Double(number("longest_part_us")) / 1_000)) "
            + "first_alert_ms=\(firstAlert.map { String($0) } ?? "-") "
            + "move_adopted_s=\(adopted.map(format) ?? "never") status_after_move_s=\(format(statusDuringMove))")
        // From the reading of the uplinks to the CN's alert, the diversion's rewrite for the
        // new MoAs between them (O(changed), whatever the number of peers): logged by the move.
        #expect(firstAlert != nil, "the VM's matd logged no move\n\(lab.matdLog("vm").suffix(2_000))")
        let logs = "vm: \(lab.matdLog("vm").suffix(3_000))\ncn: \(lab.matdLog("cn").suffix(3_000))"
        #expect(adopted.map { $0 < 5 } == true, "the CN adopted the VM's new MoA after \(adopted.map(format) ?? "never") s\n\(logs)")
        #expect(statusDuringMove < 0.5, "matctl status took \(statusDuringMove) s right after the move")
        // The VM holds its traffic to the CN until the CN's challenge arrives.
        var flowing: Double?
        while flowing == nil && Date().timeIntervalSince(start) < 30 {
            if try lab.ping("vm", Addr.cn.home4, count: 1) { flowing = Date().timeIntervalSince(start) }
        }
        #expect(flowing.map { $0 < 10 } == true, "VM to CN after the move: \(flowing.map(format) ?? "never") s\n\(logs)")
        // With the fast path on, the CN is back on it once released (matctl peers' path
        // column), while the 100,000 alerted peers stay held.
        var translated: Double?
        while fastPath && translated == nil && Date().timeIntervalSince(start) < 90 {
            _ = try lab.ping("vm", Addr.cn.home4, count: 1)
            let listing = try lab.run("vm", [LabPaths.matctl, "peers", "--socket", lab.socket("vm")], timeout: 60).stdout
            if listing.split(separator: "\n").contains(where: { $0.contains("\(Addr.cn.home4) ->") && $0.contains("path kernel") }) {
                translated = Date().timeIntervalSince(start)
            }
        }
        // The kernel's counters, read over nfnetlink: nft read every element of the maps
        // first, seconds beside 100,000 peers, past matctl stats' 5 s under load.
        var statsSeconds: Double?
        if fastPath {
            let (stats, seconds) = try timed { try lab.stats("vm") }
            statsSeconds = seconds
            let counters = stats["kernelFastPath"] as? [String: Any] ?? [:]
            #expect((counters["out4_packets"] as? NSNumber)?.uint64Value ?? 0 > 0, "\(counters)")
            #expect(seconds < 2, "matctl stats took \(seconds) s")
        }
        print("scale: learned=\(learnedPeers) fast_path=\(fastPath) flow_back_s=\(flowing.map(format) ?? "never") "
            + "kernel_again_s=\(translated.map(format) ?? "-") stats_s=\(statsSeconds.map(format) ?? "-")")
        #expect(!fastPath || translated != nil, "the CN's traffic never went back to the kernel fast path\n\(logs)")
        // The learned peers' alerts run out 9.4 s after the move (in the fast path's case,
        // still running then): a line each for 100,000 peers would be a cost in proportion
        // to the table; ten per 10 s and a count of the rest.
        let log = lab.matdLog("vm")
        let perPeer = ["did not acknowledge update seq", "dropping peer 2001:db8:4000::"].map { line in
            log.components(separatedBy: line).count - 1
        }
        let elapsed = Date().timeIntervalSince(start)
        print("scale: learned=\(learnedPeers) fast_path=\(fastPath) unanswered_lines=\(perPeer[0]) dropped_lines=\(perPeer[1]) "
            + "summaries=\(log.components(separatedBy: "more peer(s)").count - 1) log_lines=\(log.split(separator: "\n").count) after_s=\(format(elapsed))")
        let bound = 10 * (Int(elapsed / 10) + 2)
        #expect(perPeer.allSatisfy { $0 <= bound }, "per-peer lines \(perPeer) in \(format(elapsed)) s, at most \(bound) each")
    }

    /// The restored peers' proofs (`proof-lifetime`, 40 s by default) run from matd's start,
    /// and the 100,000 lapse at once if the start takes longer (43 s at load 17-20, debug
    /// build): an engine command and a probe round each, which this test does not measure
    /// and which kept the move from running in time. Ten minutes covers any start here.
    static func proofLifetime(_ node: String) -> [String] { node == "vm" ? ["proof-lifetime = 600"] : [] }

    /// `matctl rebind` with 1,000 learned peers where nothing answers: the move alerts
    /// them 256 per turn, and the report comes only once the whole round went out and ran
    /// its course, counting every peer (the CN acknowledged, the 1,000 unanswered), not
    /// when the peers of the first turn were done.
    @Test func aRebindReportsTheWholeRoundOfAlerts() throws {
        let lab = try Lab()
        defer { lab.close() }
        let learnedPeers = 1_000
        try lab.writeLearnedIPv6Peers(lab.path("vm-state"), count: learnedPeers)
        try lab.writeStaticPeerConfigurations("scale", extra: Self.proofLifetime)
        try lab.startMatd("vm", config: lab.path("vm-scale.conf"), environment: [KernelFastPath.environmentVariable: "off"],
                          timeout: 120)
        try lab.startMatd("cn", config: lab.path("cn-scale.conf"), environment: [KernelFastPath.environmentVariable: "off"])
        #expect(try lab.ping("vm", Addr.cn.home4))
        let started = Date()
        let result = try lab.run("vm", [LabPaths.matctl, "rebind", "--json", "--socket", lab.socket("vm")], timeout: 60)
        let seconds = Date().timeIntervalSince(started)
        // Exit status 1: peers did not answer.
        #expect(result.status == 1, "\(result.summary)")
        let report = try JSONDecoder().decode(RebindReport.self, from: Data(result.stdout.utf8))
        print("scale: rebind learned=\(learnedPeers) alerted=\(report.alerted) acknowledged=\(report.acknowledged.count) "
            + "unanswered=\(report.unanswered.count) took_s=\(format(seconds))")
        #expect(report.alerted == learnedPeers + 1, "\(report.alerted) alerted")
        #expect(report.acknowledged == [Addr.cn.home4], "\(report.acknowledged)")
        #expect(report.unanswered.count == learnedPeers)
        #expect(report.unanswered.contains("2001:db8:4000::3e7"), "the peer of index 999 counts")
        // The 1,000 that never answered were dropped when their retransmissions ran out:
        // a second rebind alerts only the CN.
        let text = try lab.run("vm", [LabPaths.matctl, "rebind", "--socket", lab.socket("vm")], timeout: 60)
        #expect(text.stdout.contains("peers:            1 alerted, 1 acknowledged, 0 unanswered"), "\(text.summary)")
    }

    /// The VM's "alerted N ms after the reading" of its move (matd's log), in ms.
    static func firstAlertMilliseconds(_ log: String) -> Double? {
        guard let found = log.range(of: "configured peer(s) alerted ") else { return nil }
        return Double(log[found.upperBound...].prefix { $0.isNumber || $0 == "." })
    }

    private func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let start = Date()
        let value = try body()
        return (value, Date().timeIntervalSince(start))
    }

    private func format(_ seconds: Double) -> String { String(format: "%.3f", seconds) }
}
