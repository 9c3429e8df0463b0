#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATSystem
import MATTestSupport
import Testing

/// Loss on the path, made with nftables in the lab's router (docs/security.md, R2 and
/// R7): a blackhole under a TCP flow between the HoAs, and a move whose first alerts are
/// lost. The router's tables go with the lab, and each test deletes its own first.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct LossLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// R7: the router forwards nothing for 2 s while the VM sends the CN 12 MB at 2 MB/s
    /// between their HoAs (learned from the IMS). The connection goes on without a reset
    /// (SHA-256 equal), neither node drops the other, and the flow is back within 5 s of
    /// the blackhole's end (TCP's retransmission timer; asserted), which is reported.
    @Test func aTwoSecondBlackholeUnderATCPFlowEndsWithoutAResetOrADroppedPeer() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        let file = try lab.randomFile("payload", megabytes: 12)
        let transfer = try PacedTransfer(lab, from: "vm", to: "cn", file: file, megabytesPerSecond: 2)
        let progress = FileProgress(transfer.received)
        defer { progress.stop() }
        #expect(progress.wait(forAtLeast: 2_000_000, timeout: 30), "the flow did not start:\n\(lab.matdLog("vm"))")
        let table = "inet mat_test_blackhole"
        try lab.exec("router", "nft", "add table \(table); add chain \(table) forward "
                     + "{ type filter hook forward priority -10; policy drop; }")
        let start = MonotonicClock.seconds()
        usleep(2_000_000)
        _ = try lab.run("router", ["nft", "delete", "table"] + table.split(separator: " ").map(String.init))
        let end = MonotonicClock.seconds()
        try transfer.finish()
        progress.stop()
        let stall = try #require(progress.longestStall(from: start, to: end + 30), "the flow never resumed")
        let recovery = stall.to - end
        for (node, peer) in [("vm", cn), ("cn", vm)] {
            let signaling = try lab.stats(node)["signaling"] as? [String: Int] ?? [:]
            #expect(signaling["peers_dropped", default: 0] == 0 && signaling["idle_peers_dropped", default: 0] == 0,
                    "\(node) dropped a peer: \(signaling)")
            let mobile = node == "vm" ? cn.mobile4 : vm.mobile4
            #expect(try lab.matctl(node, "peers").contains("\(peer.home4) -> \(mobile)"), "\(node) lost \(peer.home4)")
        }
        #expect(stall.seconds >= 1.5, "the flow stood still only \(stall.seconds) s: the blackhole missed it")
        #expect(recovery < 5, "the flow came back \(recovery) s after the blackhole ended")
        print("blackhole 2 s (\(String(format: "%.2f", end - start)) s): the flow stood still \(String(format: "%.2f", stall.seconds)) s, "
              + "back \(String(format: "%.2f", recovery)) s after the blackhole ended; SHA-256 equal, no peer dropped")
    }

    /// R2: the router drops the first two alerts of the VM's move (datagrams of more than
    /// 1000 bytes from its new MoA to the CN's signaling port: the padded updates), under a
    /// TCP flow and a 10 ms UDP probe from the CN. The third send, 600 ms after the first
    /// (`RetransmitSchedule`), moves the CN; the flow finishes (SHA-256 equal). Asserted:
    /// exactly 2 dropped, at least 2 retransmissions, a gap of at least 0.5 s (the drops
    /// mattered) and under 5 s; the gap is reported.
    @Test func aMoveWhoseFirstTwoAlertsAreLostCompletesByRetransmission() throws {
        let move = try moveUnderLoss("ip saddr 203.0.113.10 ip daddr \(cn.mobile4) udp dport 7540 udp length > 1000 "
                                     + "quota until 3000 bytes counter drop")
        #expect(move.dropped == 2, "the router dropped \(move.dropped) alerts")
        #expect(move.resent >= 2, "retransmissions: \(move.resent)")
        #expect(move.gap >= 0.5 && move.gap < 5, "gap \(move.gap) s with the first two alerts lost")
        print("loss during the switch: the first 2 alerts dropped, \(move.resent) retransmission(s); "
              + "gap \(Int(move.gap * 1000)) ms; SHA-256 equal")
    }

    /// R2, partial loss: the router drops 20 % of everything it forwards, both ways, for
    /// the first 2 s of the move, under the same flow and probe. The move completes (the CN
    /// takes the new MoA) within the update's retransmissions, the flow finishes (SHA-256
    /// equal), and the gap stays under 8 s (asserted); gap, drops and retransmissions are
    /// reported.
    @Test func aMoveUnderTwentyPercentLossForTwoSecondsCompletes() throws {
        let move = try moveUnderLoss("numgen random mod 100 < 20 counter drop", for: 2)
        #expect(move.dropped > 0, "the router dropped nothing")
        #expect(move.gap < 8, "gap \(move.gap) s under 20 % loss for 2 s")
        print("20 % loss for 2 s during the switch: \(move.dropped) packets dropped, \(move.resent) retransmission(s); "
              + "gap \(Int(move.gap * 1000)) ms; SHA-256 equal")
    }

    /// R7, the new path blackholed after a move: the VM moves to site B, the CN takes the
    /// new MoA, and then the router drops everything from and to it (nftables, counting
    /// per kind) while 50 datagrams/s go each way between the HoAs. The CN notices (its
    /// probes of the silent VM go unanswered), drops the VM's mapping and reports it
    /// (`idle_peers_dropped`, an `idle_peer_dropped` event, a log line); from then on no
    /// more of its data goes into the hole
    /// (the router's count of it stops rising), nor of the VM's. Once the hole goes, both
    /// flows come back within the hold-off of the IMS answers probed into the hole and
    /// refused (`RefusedAnswers`: 10 s after the first refusal, doubling at each), well
    /// before the 5 min it was at first.
    @Test func aNewPathBlackholedAfterAMoveIsReportedAndNothingIsSentIntoItForever() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        let newMoA = "203.0.113.10"
        #expect(try lab.ping("cn", vm.home4) || lab.ping("cn", vm.home4))
        try lab.moveVM(to: "b")
        try waitUntil("new MoA at the CN", seconds: 20) { try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(newMoA)*") }
        let sinks = (vm: try lab.spawn("vm", ["python3", LabPaths.udpTrace, "sink", "5003", "150"]),
                     cn: try lab.spawn("cn", ["python3", LabPaths.udpTrace, "sink", "5004", "150"]))
        for sink in [sinks.vm, sinks.cn] where !sink.waitForOutput(timeout: 10, { $0.contains("listening") }) {
            throw LabError("udp sink did not start:\n\(sink.wait(timeout: 1).summary)")
        }
        let flows = [try lab.spawn("cn", ["python3", LabPaths.udpTrace, "send", vm.home4, "5003", "140", "0.02"]),
                     try lab.spawn("vm", ["python3", LabPaths.udpTrace, "send", cn.home4, "5004", "140", "0.02"])]
        defer { for process in flows + [sinks.vm, sinks.cn] { process.signal(SIGKILL); process.wait(timeout: 10) } }
        func arrived(_ sink: Spawned, since: Double) -> Int {
            sink.stdout.split(separator: "\n").filter { (Double($0.split(separator: " ").first ?? "") ?? 0) >= since }.count
        }
        let flowing = Date().timeIntervalSince1970
        try waitUntil("datagrams of both flows", seconds: 15) {
            arrived(sinks.vm, since: flowing) > 20 && arrived(sinks.cn, since: flowing) > 20
        }

        let table = ["inet", "mat_test_hole"]
        try lab.exec("router", "nft", """
            add table inet mat_test_hole
            add chain inet mat_test_hole forward { type filter hook forward priority -10; }
            add rule inet mat_test_hole forward ip daddr \(newMoA) udp dport 5003 counter drop comment "data"
            add rule inet mat_test_hole forward ip saddr \(newMoA) udp dport 5004 counter drop comment "data"
            add rule inet mat_test_hole forward ip daddr \(newMoA) counter drop
            add rule inet mat_test_hole forward ip saddr \(newMoA) counter drop
            """)
        defer { _ = try? lab.run("router", ["nft", "delete", "table"] + table) }
        let holed = MonotonicClock.seconds()
        func dataIntoTheHole() throws -> Int {
            let listing = try lab.exec("router", "nft", "list", "table", "inet", "mat_test_hole")
            return listing.split(separator: "\n").filter { $0.contains("comment \"data\"") }.reduce(0) { total, line in
                total + (line.range(of: "packets ").flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) } ?? 0)
            }
        }
        func idleDrops() throws -> Int { (try lab.stats("cn")["signaling"] as? [String: Int])?["idle_peers_dropped"] ?? 0 }

        // Three record TTLs (5 s) of silence, then a probe round of 5.5 s: about 21 s.
        guard try poll(seconds: 45, { try idleDrops() >= 1 }) else { throw LabError("the CN never dropped the VM:\n\(lab.matdLog("cn"))") }
        let noticed = MonotonicClock.seconds() - holed
        #expect(lab.matdLog("cn").contains("dropping peer \(vm.home4): silent for"), "\(lab.matdLog("cn"))")
        let events = try sendControlRequest(ControlRequest(command: .events, after: 0), to: lab.socket("cn")).events ?? []
        #expect(events.contains { $0.kind == "idle_peer_dropped" && $0.details["peer"] == vm.home4 }, "\(events)")
        // The VM, which hears nothing from the CN either, stops sending into the hole too:
        // then the count stops rising.
        var settled: [Int] = []
        let bound = Date().addingTimeInterval(40)
        repeat {
            sleep(2)
            settled.append(try dataIntoTheHole())
        } while Date() < bound && !(settled.count >= 3 && settled.suffix(3).allSatisfy { $0 == settled.last })
        let stoppedAfter = MonotonicClock.seconds() - holed
        let stopped = settled.count >= 3 && settled.suffix(3).allSatisfy { $0 == settled.last }
        #expect(stopped, "datagrams still went into the hole \(Int(stoppedAfter)) s on: \(settled)")
        let intoTheHole = settled.last ?? 0
        #expect(intoTheHole > 0, "nothing went into the hole: the test shows nothing")
        sleep(3)
        #expect(try dataIntoTheHole() == intoTheHole, "datagrams went into the hole again")

        // The hole goes: each end's next trial of the other's IMS answer is answered.
        try lab.exec("router", "nft", "delete", "table", "inet", "mat_test_hole")
        let healed = Date().timeIntervalSince1970
        let back = poll(seconds: 75, every: 0.5) { arrived(sinks.vm, since: healed) > 0 && arrived(sinks.cn, since: healed) > 0 }
        let recovered = Date().timeIntervalSince1970 - healed
        let flowsRan = Int(healed - flowing)
        #expect(back, "no datagrams 75 s after the hole went (the flows had run \(flowsRan) of 140 s): \(lab.matdLog("cn"))")

        print("new path blackholed after a move: the CN dropped the VM \(String(format: "%.1f", noticed)) s in; "
              + "\(intoTheHole) datagrams (at 50/s each way) went into the hole, none after \(Int(stoppedAfter)) s; "
              + "both flows back \(String(format: "%.1f", recovered)) s after the hole went")
    }

    /// What a move under loss showed: the probe's largest silence around it, the packets
    /// the rule dropped, the VM's update retransmissions.
    struct MoveUnderLoss { var gap: Double; var dropped: Int; var resent: Int }

    /// Moves the VM from site A to B while the router's forward chain has `rule` (for
    /// `seconds` from the move on, or to the end), under a 2 MB/s TCP flow VM to CN and a
    /// 10 ms UDP probe CN to VM between the HoAs. The CN must take the new MoA and the
    /// flow's bytes must arrive (both asserted here).
    func moveUnderLoss(_ rule: String, for seconds: Double? = nil) throws -> MoveUnderLoss {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        let echo = try lab.spawn("vm", ["python3", LabPaths.handoff, "echo", vm.home4, "5301"])
        guard echo.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("echo did not start:\n\(echo.wait(timeout: 1).summary)")
        }
        let file = try lab.randomFile("payload", megabytes: 10)
        let transfer = try PacedTransfer(lab, from: "vm", to: "cn", file: file, megabytesPerSecond: 2)
        let probe = try lab.spawn("cn", ["python3", LabPaths.handoff, "probe", vm.home4, "5301", "14"])
        // The move alerts the CN only once the VM knows it (its first contact is done).
        _ = try poll(seconds: 30, every: 0.1) { try lab.matctl("vm", "peers").contains("\(cn.home4) -> \(cn.mobile4)") }
        try #require(lab.matctl("vm", "peers").contains("\(cn.home4) -> \(cn.mobile4)"), "\(lab.matdLog("vm"))")
        usleep(1_000_000)
        let table = ["inet", "mat_test_loss"]
        try lab.exec("router", "nft", "add table inet mat_test_loss; add chain inet mat_test_loss forward "
                     + "{ type filter hook forward priority -10; }; add rule inet mat_test_loss forward \(rule)")
        defer { _ = try? lab.run("router", ["nft", "delete", "table"] + table) }
        let before = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
        let moved = MonotonicClock.seconds()
        try lab.moveVM(to: "b")
        var listing = ""
        if let seconds {
            usleep(UInt32(max(0, moved + seconds - MonotonicClock.seconds()) * 1_000_000))
            listing = try lab.exec("router", "nft", "list", "table", "inet", "mat_test_loss")
            _ = try lab.run("router", ["nft", "delete", "table"] + table)
        }
        _ = try poll(seconds: 20, every: 0.1) { try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10*") }
        if seconds == nil { listing = try lab.exec("router", "nft", "list", "table", "inet", "mat_test_loss") }
        try transfer.finish()
        let probeResult = probe.wait(timeout: 30)
        echo.signal(SIGTERM)
        let after = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10*"), "\(lab.matdLog("cn"))")
        let dropped = listing.range(of: "counter packets ").flatMap { Int(listing[$0.upperBound...].prefix { $0.isNumber }) }
        // The largest silence from 0.5 s before the move to 8 s after it.
        let echoes = try FloodLabTests().echoTimes(probeResult).filter { $0 >= moved - 0.5 && $0 <= moved + 8 }
        return MoveUnderLoss(gap: zip(echoes, echoes.dropFirst()).map { $1 - $0 }.max() ?? 8.5, dropped: dropped ?? -1,
                             resent: after["updates_retransmitted", default: 0] - before["updates_retransmitted", default: 0])
    }
}
