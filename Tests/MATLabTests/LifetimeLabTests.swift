#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// Old-address takeover (docs/security.md, S6): VM X dies without a word (matd killed with
/// SIGKILL, its link gone) and its MoA is given to another host Z. X's registration
/// lifetime (short here: the configurable minimum) runs out, so the CN stops sending X's
/// traffic to Z and stops taking Z's packets as X's, whether mat-ims expires the mapping or,
/// with the IMS gone too, the CN lets the stale mapping lapse itself.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct LifetimeLabTests {
    /// `[ims] lifetime` of the nodes, seconds: the smallest matd takes.
    static let lifetime = 10.0
    /// `record-ttl` of the lab's IMS configurations: how often the CN reads a peer again.
    static let recordTTL = 5.0
    /// For a loaded machine: lookups, the engine's turn, process start-up.
    static let slack = 10.0
    /// `proof-lifetime` (F) where a test sets it, seconds: the smallest matd takes.
    static let proofLifetime = 10.0

    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// mat-ims expires X's mapping: the CN drops it within lifetime + one record TTL of X's
    /// death, after which Z gets none of X's traffic and Z's packets reach the CN as Z's.
    @Test func aDeadNodesMoAGivenToAnotherHostLosesItsTrafficAndIdentityAtTheIMSExpiry() throws {
        let (lab, ims) = try learnedLab()
        defer { lab.close() }
        let run = try takeOver(lab, alsoKilling: nil)
        #expect(ims.stderr.contains("10.100.51.198.hoa.mat.example. expired"), "\(ims.stderr)")
        try check(run, lab: lab)
    }

    /// The IMS dies with X: the CN keeps getting X's mapping from its cache (stale), until
    /// the sequence number, unrenewed for a lifetime, makes it lapse.
    @Test func withTheIMSGoneTooTheStaleMappingLapsesAfterItsLifetime() throws {
        let (lab, ims) = try learnedLab()
        defer { lab.close() }
        let run = try takeOver(lab, alsoKilling: ims)
        let signaling = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        #expect(signaling["mappings_lapsed", default: 0] >= 1, "\(signaling)")
        #expect(lab.matdLog("cn").contains("serving stale mapping"), "\(lab.matdLog("cn"))")
        try check(run, lab: lab)
    }

    /// `matctl deregister` on a node going away: the IMS stops mapping it, the CN drops
    /// it at its next lookup (a record TTL) instead of at the end of its lifetime (300 s
    /// here), nothing registers it again, and `matctl rebind` brings it back.
    @Test func aDeregisteredNodeIsDroppedAtThePeersNextLookupAndRebindBringsItBack() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4) || lab.ping("cn", vm.home4))
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)"))
        let registrations = lab.matdLog("vm").components(separatedBy: "registered \(vm.home4) -> \(vm.mobile4) ").count
        let output = try lab.matctl("vm", "deregister")
        #expect(output.contains("deregistered: \(vm.home4)"), "\(output)")
        let started = Date()
        var dropped: Double?
        while dropped == nil && Date().timeIntervalSince(started) < Self.recordTTL + Self.slack {
            if try !lab.matctl("cn", "peers").contains(vm.home4) { dropped = Date().timeIntervalSince(started) }
            usleep(200_000)
        }
        #expect(dropped != nil, "the CN still maps \(vm.home4):\n\(lab.matdLog("cn"))")
        print("deregister: the CN dropped the VM \(dropped.map { String(format: "%.1f", $0) } ?? "never") s after")
        // Withdrawn stays withdrawn: the CN finds no mapping, and the VM registers nothing.
        #expect(try !lab.ping("cn", vm.home4, count: 2))
        #expect(lab.matdLog("vm").components(separatedBy: "registered \(vm.home4) -> \(vm.mobile4) ").count == registrations,
                "\(lab.matdLog("vm"))")
        let rebind = try lab.run("vm", [LabPaths.matctl, "rebind", "--socket", lab.socket("vm")], timeout: 60)
        #expect(rebind.stdout.contains("registration:     confirmed"), "\(rebind.summary)")
        #expect(lab.matdLog("vm").components(separatedBy: "registered \(vm.home4) -> \(vm.mobile4) ").count > registrations,
                "\(lab.matdLog("vm"))")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
    }

    /// X's registration has 300 s to go, and Z, on X's MoA, keeps sending the CN packets
    /// (which the CN's engine translates as X's: the kernel fast path is pinned off, its
    /// packets count for nothing). Data is evidence of X for two idle periods at most: the
    /// CN probes X then whatever Z sends, nobody answers for X, and the CN drops X within
    /// two idle periods and a probe's wait of X's last signed word, long before the
    /// lifetime; from then on Z's packets reach the CN as Z's. (Before: ten idle periods.)
    ///
    /// Then the CN sends to X's HoA again while X's registration still stands: a first
    /// contact at X's old MoA, Z's now, whose probe nobody answers. Z's packets in that
    /// window are dropped, never delivered as X's (before: for up to 5.5 s they were).
    @Test func aNewTenantsDataKeepsADeadNodesMappingForAtMostTwoIdlePeriods() throws {
        let (lab, _) = try learnedLab(lifetime: 300, environment: ["MATD_KERNEL_FAST_PATH": "off"])
        defer { lab.close() }
        let sinkCN = try lab.spawn("cn", ["python3", LabPaths.udpTrace, "sink", "5004", "120"])
        guard sinkCN.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("udp sink did not start:\n\(sinkCN.wait(timeout: 1).summary)")
        }
        try lab.killMatd("vm")
        try lab.exec("vm", "ip", "link", "set", "eth0", "down")
        let killedAt = Date().timeIntervalSince1970
        try giveXsMoAToZ(lab)
        let bound = 2 * 3 * Self.recordTTL + 5.5
        let fromZ = try lab.spawn("plain", ["python3", LabPaths.udpTrace, "send", cn.mobile4, "5004", "\(Int(bound + 40))", "0.05"])
        defer { for process in [fromZ, sinkCN] { process.signal(SIGKILL); process.wait(timeout: 10) } }
        var droppedAt: Double?
        while droppedAt == nil && Date().timeIntervalSince1970 < killedAt + bound + Self.slack {
            if try !lab.matctl("cn", "peers").contains(vm.home4) { droppedAt = Date().timeIntervalSince1970 }
            usleep(200_000)
        }
        guard let droppedAt else {
            throw LabError("the CN still maps \(vm.home4) \(Int(bound + Self.slack)) s after X died, with Z sending:\n"
                           + "\(try lab.matctl("cn", "peers"))\n\(lab.matdLog("cn"))")
        }
        sleep(3)
        let firstContact = try contactDeadNodeAgain(lab)
        #expect(fromZ.isRunning, "Z stopped sending before the drop: the test shows nothing")
        for process in [fromZ, sinkCN] { process.signal(SIGKILL) }
        for process in [fromZ, sinkCN] { process.wait(timeout: 10) }
        let atCN = trace(sinkCN)
        let settled = droppedAt + 1
        let asX = atCN.filter { $0.1 == vm.home4 }
        #expect(asX.contains { $0.0 >= droppedAt - 2 }, "Z's packets were not taken as X's up to the drop: the test shows nothing")
        #expect(!asX.contains { $0.0 >= settled }, "Z's packets were still delivered as X after the drop")
        #expect(atCN.contains { $0.0 >= settled && $0.1 == vm.mobile4 }, "Z's packets did not reach the CN as Z's: \(atCN.suffix(5))")
        let signaling = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        #expect(signaling["idle_peers_dropped", default: 0] == 1, "\(signaling)")
        let inWindow = atCN.filter { $0.0 >= firstContact.start && $0.0 < firstContact.end }
        #expect(!inWindow.contains { $0.1 == vm.home4 }, "Z's packets were taken as X's during the first contact")
        print("tenant's data: the CN dropped X \(String(format: "%.1f", droppedAt - killedAt)) s after X died "
              + "while Z sent it \(asX.count) datagrams taken as X's (bound: two idle periods + a probe's wait, "
              + "\(Int(bound)) s, lifetime 300 s)")
        print("first contact at Z: X's old MoA was mapped \(String(format: "%.1f", firstContact.end - firstContact.start)) s "
              + "while its probe went unanswered; \(firstContact.refused) of Z's packets dropped as unproven, "
              + "0 delivered as X's (\(inWindow.count) as Z's around it)")
    }

    /// Proof freshness (docs/security.md, S6 and R8): a learned peer's MoA is its own for F
    /// (`proof-lifetime`, 10 s here) after the last word signed with its key that came from
    /// there. A live peer under a flow both ways for more than 2F is probed before its
    /// proof runs out and loses no datagram. Then X's matd is killed (its registration has
    /// 300 s to go), and once its proof has run out Z takes X's MoA and sends the CN
    /// datagrams continuously: the CN, which still maps X there until X's idle probe goes
    /// unanswered, delivers none of them as X's HoA. (Before: Z was taken for X for up to
    /// two idle periods and a probe round after X's last signed word.) The kernel fast path
    /// is on (matd's default): the lapse takes X from it, so Z's packets meet the engine.
    @Test func aDeadNodesMoAIsNotItsOwnOnceItsProofRunsOutWhileALivePeerLosesNothing() throws {
        let (lab, _) = try learnedLab(lifetime: 300, proofLifetime: Int(Self.proofLifetime))
        defer { lab.close() }
        let flowSeconds = Int(2 * Self.proofLifetime + 2)
        let sinkCN = try lab.spawn("cn", ["python3", LabPaths.udpTrace, "sink", "5004", "\(flowSeconds + 90)"])
        let sinkVM = try lab.spawn("vm", ["python3", LabPaths.udpTrace, "sink", "5003", "\(flowSeconds + 30)"])
        for sink in [sinkCN, sinkVM] where !sink.waitForOutput(timeout: 10, { $0.contains("listening") }) {
            throw LabError("udp sink did not start:\n\(sink.wait(timeout: 1).summary)")
        }
        func signaling() throws -> [String: Int] { try lab.stats("cn")["signaling"] as? [String: Int] ?? [:] }
        func refused(_ node: String) throws -> UInt64 { drops(try lab.stats(node))["unvalidated_path"] ?? 0 }
        let answeredBefore = try signaling()["probes_answered", default: 0]
        let refusedBefore = (cn: try refused("cn"), vm: try refused("vm"))
        let toCN = try lab.spawn("vm", ["python3", LabPaths.udpTrace, "send", cn.home4, "5004", "\(flowSeconds)", "0.02"])
        let toVM = try lab.spawn("cn", ["python3", LabPaths.udpTrace, "send", vm.home4, "5003", "\(flowSeconds)", "0.02"])
        var fromZ: Spawned?
        defer { for process in [toCN, toVM, sinkCN, sinkVM] + (fromZ.map { [$0] } ?? []) { process.signal(SIGKILL); process.wait(timeout: 10) } }
        for sender in [toCN, toVM] where !sender.waitForOutput(timeout: Double(flowSeconds) + 30, { $0.contains("sent ") }) {
            throw LabError("the flow did not end:\n\(sender.wait(timeout: 1).summary)")
        }
        sleep(1)
        func sent(_ sender: Spawned) -> Int { Int(sender.stdout.components(separatedBy: "sent ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1 }
        let atCN = trace(sinkCN).filter { $0.1 == vm.home4 }.count, atVM = trace(sinkVM).filter { $0.1 == cn.home4 }.count
        let answered = try signaling()["probes_answered", default: 0] - answeredBefore
        #expect(atCN == sent(toCN) && atVM == sent(toVM),
                "a live peer lost datagrams: \(atCN) of \(sent(toCN)) at the CN, \(atVM) of \(sent(toVM)) at the VM")
        #expect(try refused("cn") == refusedBefore.cn && refused("vm") == refusedBefore.vm, "a live peer's packets were refused")
        for (node, peer) in [("cn", vm.home4), ("vm", cn.home4)] {
            #expect(!lab.matdLog(node).contains("\(peer): nothing signed from"), "a live peer's proof ran out:\n\(lab.matdLog(node))")
        }
        #expect(answered >= 2, "the CN renewed the VM's proof \(answered) times in \(flowSeconds) s: the test shows nothing")
        #expect(try signaling()["proofs_lapsed", default: -1] == 0, "a live peer's proof was counted as lapsed")

        try lab.killMatd("vm")
        try lab.exec("vm", "ip", "link", "set", "eth0", "down")
        let killedAt = Date().timeIntervalSince1970
        // X's last signed word came before its death: its proof runs out at most F later.
        guard lab.waitForLog("cn", "\(vm.home4): nothing signed from \(vm.mobile4)", timeout: Self.proofLifetime + Self.slack) else {
            throw LabError("X's proof did not run out at the CN:\n\(lab.matdLog("cn"))")
        }
        let lapsedAfter = Date().timeIntervalSince1970 - killedAt
        #expect(lapsedAfter <= Self.proofLifetime + 3, "X's proof ran out \(lapsedAfter) s after its death")
        #expect(try signaling()["proofs_lapsed", default: 0] >= 1, "X's lapsed proof is not counted in proofs_lapsed")
        try giveXsMoAToZ(lab)
        let refusedAtLapse = try refused("cn")
        let zStarted = Date().timeIntervalSince1970
        let tenant = try lab.spawn("plain", ["python3", LabPaths.udpTrace, "send", cn.mobile4, "5004", "8", "0.02"])
        fromZ = tenant
        let stillMapped = try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)")
        guard tenant.waitForOutput(timeout: 40, { $0.contains("sent ") }) else {
            throw LabError("Z's sender did not end:\n\(tenant.wait(timeout: 1).summary)")
        }
        sleep(1)
        let fromZAtCN = trace(sinkCN).filter { $0.0 >= zStarted }
        let asX = fromZAtCN.filter { $0.1 == vm.home4 }
        let asZ = fromZAtCN.filter { $0.1 == vm.mobile4 }
        let dropped = try refused("cn") - refusedAtLapse
        #expect(stillMapped, "the CN no longer mapped X when Z began: the test shows nothing")
        #expect(dropped > 0, "the CN's engine dropped none of Z's packets: the test shows nothing")
        #expect(asX.isEmpty, "\(asX.count) of Z's \(sent(tenant)) datagrams reached the CN's application as X's HoA")
        print("proof freshness (F = \(Int(Self.proofLifetime)) s): a live peer, \(sent(toCN)) + \(sent(toVM)) datagrams "
              + "in \(flowSeconds) s, lost \(sent(toCN) - atCN + sent(toVM) - atVM), \(answered) renewals answered; "
              + "X's proof ran out \(String(format: "%.1f", lapsedAfter)) s after its death; of Z's \(sent(tenant)) datagrams "
              + "\(asX.count) reached the CN as X's, \(dropped) were dropped as unproven, \(asZ.count) reached it as Z's "
              + "(after X was dropped)")
    }

    /// The datagrams a `udp-trace.py sink` received: (Unix time, source address).
    private func trace(_ sink: Spawned) -> [(Double, String)] {
        sink.stdout.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count == 2, let time = Double(parts[0]) else { return nil }
            return (time, String(parts[1]))
        }
    }

    /// After X was dropped: the CN's application sends to X's HoA, whose registration
    /// still stands, so the CN starts a first contact at X's old MoA (Z's now) and probes
    /// it. Returns when the CN mapped X again and when it forgot it (the probe went
    /// unanswered), and how many packets its engine dropped from the unproven MoA.
    private func contactDeadNodeAgain(_ lab: Lab) throws -> (start: Double, end: Double, refused: UInt64) {
        let before = drops(try lab.stats("cn"))["unvalidated_path"] ?? 0
        let toX = try lab.spawn("cn", ["python3", LabPaths.udpTrace, "send", vm.home4, "5003", "30", "0.05"])
        defer {
            toX.signal(SIGKILL)
            toX.wait(timeout: 10)
        }
        let asked = Date().timeIntervalSince1970
        var start: Double?, end: Double?
        while end == nil && Date().timeIntervalSince1970 < asked + 6 + 2 * Self.slack {
            let mapped = try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)")
            let now = Date().timeIntervalSince1970
            if mapped && start == nil { start = now }
            if !mapped && start != nil { end = now }
            usleep(100_000)
        }
        guard let start, let end else {
            throw LabError("the CN's first contact with \(vm.home4) at \(vm.mobile4) did not \(start == nil ? "start" : "end"):\n"
                           + "\(lab.matdLog("cn"))")
        }
        let refused = (drops(try lab.stats("cn"))["unvalidated_path"] ?? 0) - before
        #expect(lab.matdLog("cn").contains("no MoA of the IMS answer"), "the probe's failure is not logged:\n\(lab.matdLog("cn"))")
        #expect(refused > 0, "the CN dropped nothing of Z's in the first contact: the test shows nothing")
        // The first sighting is up to a poll late; the engine had the mapping no earlier
        // than the CN's first packet for X.
        return (min(start, asked), end, refused)
    }

    // MARK: the scenario

    /// mat-ims, matd on both nodes with `lifetime` (the short one by default) and
    /// `proofLifetime` (matd's default when nil), and the CN has learned the VM.
    private func learnedLab(lifetime: Int = Int(Self.lifetime), proofLifetime: Int? = nil,
                            environment: [String: String] = [:]) throws -> (Lab, Spawned) {
        let lab = try Lab()
        do {
            let ims = try lab.startIMS()
            for node in ["vm", "cn"] {
                try lab.startMatd(node, config: try lab.writeIMSConfig(node, lifetime: lifetime, proofLifetime: proofLifetime),
                                  environment: environment)
                guard lab.waitForLog(node, "registered \(Addr.node(node).home4)") else {
                    throw LabError("matd in \(node) did not register:\n\(lab.matdLog(node))")
                }
            }
            #expect(try lab.ping("cn", vm.home4) || lab.ping("cn", vm.home4))
            #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)"))
            return (lab, ims)
        } catch {
            lab.close()
            throw error
        }
    }

    struct Takeover {
        /// When X died (Unix seconds).
        var killedAt: Double
        /// When the CN's table no longer held X.
        var droppedAt: Double
        /// What Z received from the CN, and what the CN received from Z: "<time> <source>".
        var atZ: [(Double, String)]
        var atCN: [(Double, String)]
    }

    /// X dies, Z takes X's MoA on X's site, and both talk: the CN sends to X's HoA, Z
    /// sends to the CN's MoA. Returns once the CN has dropped X, with what each side saw.
    private func takeOver(_ lab: Lab, alsoKilling ims: Spawned?) throws -> Takeover {
        let sinkZ = try lab.spawn("plain", ["python3", LabPaths.udpTrace, "sink", "5003", "300"])
        let sinkCN = try lab.spawn("cn", ["python3", LabPaths.udpTrace, "sink", "5004", "300"])
        for sink in [sinkZ, sinkCN] where !sink.waitForOutput(timeout: 10, { $0.contains("listening") }) {
            throw LabError("udp sink did not start:\n\(sink.wait(timeout: 1).summary)")
        }
        try lab.killMatd("vm")
        try lab.exec("vm", "ip", "link", "set", "eth0", "down")
        if let ims {
            ims.signal(SIGKILL)
            ims.wait(timeout: 10)
        }
        let killedAt = Date().timeIntervalSince1970
        try giveXsMoAToZ(lab)
        let toX = try lab.spawn("cn", ["python3", LabPaths.udpTrace, "send", vm.home4, "5003", "300", "0.05"])
        let fromZ = try lab.spawn("plain", ["python3", LabPaths.udpTrace, "send", cn.mobile4, "5004", "300", "0.05"])

        let deadline = killedAt + Self.lifetime + Self.recordTTL + Self.slack
        var droppedAt: Double?
        while Date().timeIntervalSince1970 < deadline + 20 {
            if try !lab.matctl("cn", "peers").contains(vm.home4) {
                droppedAt = Date().timeIntervalSince1970
                break
            }
            usleep(200_000)
        }
        guard let droppedAt else {
            throw LabError("the CN still maps \(vm.home4) \(Int(deadline + 20 - killedAt)) s after X died:\n"
                           + "\(try lab.matctl("cn", "peers"))\n\(lab.matdLog("cn"))")
        }
        // Traffic for a while after the drop, to see where it goes.
        sleep(3)
        // SIGKILL: the sinks flush every line, and SIGTERM may be blocked in what the
        // test runner passes on.
        for process in [toX, fromZ, sinkZ, sinkCN] { process.signal(SIGKILL) }
        for process in [toX, fromZ, sinkZ, sinkCN] { process.wait(timeout: 10) }
        let taken = droppedAt - killedAt
        print("takeover: the CN dropped X \(String(format: "%.1f", taken)) s after X died "
              + "(lifetime \(Int(Self.lifetime)) s, record TTL \(Int(Self.recordTTL)) s, IMS \(ims == nil ? "up" : "down"))")
        #expect(taken <= deadline - killedAt, "dropped after \(taken) s")
        return Takeover(killedAt: killedAt, droppedAt: droppedAt, atZ: trace(sinkZ), atCN: trace(sinkCN))
    }

    /// Z: the host without MAT, moved onto site A with X's MoA.
    private func giveXsMoAToZ(_ lab: Lab) throws {
        try lab.exec("router", "ip", "link", "set", lab.routerPort("plain"), "master", "br-a")
        try lab.exec("plain", "ip", "-4", "addr", "flush", "dev", "eth0")
        try lab.exec("plain", "ip", "addr", "add", "\(vm.mobile4)/25", "dev", "eth0")
        try lab.exec("plain", "ip", "route", "replace", "default", "via", "192.0.2.1", "dev", "eth0")
        try lab.exec("router", "ip", "neigh", "flush", "dev", "br-a")
    }

    /// What must hold once the CN has dropped X: nothing of X's reaches Z any more, and
    /// Z's packets are Z's. Before, both happened: the hazard the lifetime bounds.
    private func check(_ run: Takeover, lab: Lab) throws {
        // The engine applies the removal within a turn; a second covers the datagrams in flight.
        let settled = run.droppedAt + 1
        let toZBefore = run.atZ.filter { $0.0 < run.droppedAt }
        let toZAfter = run.atZ.filter { $0.0 >= settled }
        #expect(!toZBefore.isEmpty, "X's traffic never reached Z: the takeover did not happen, so the test shows nothing")
        #expect(toZAfter.isEmpty, "Z still got X's traffic after the drop: \(toZAfter.prefix(5))")
        let asX = run.atCN.filter { $0.1 == vm.home4 }
        let afterAsX = asX.filter { $0.0 >= settled }
        let afterAsZ = run.atCN.filter { $0.0 >= settled && $0.1 == vm.mobile4 }
        #expect(!asX.isEmpty, "Z's packets were never taken as X's before the drop: the test shows nothing")
        #expect(afterAsX.isEmpty, "Z's packets were still delivered as X after the drop: \(afterAsX.prefix(5))")
        #expect(!afterAsZ.isEmpty, "Z's packets did not reach the CN as Z's after the drop: \(run.atCN.suffix(5))")
        let lastAsX = asX.last.map { $0.0 - run.killedAt } ?? 0
        print("takeover: Z's packets were taken as X's until \(String(format: "%.1f", lastAsX)) s after X died; "
              + "\(toZBefore.count) of the CN's datagrams for X reached Z, none after the drop")
    }
}
