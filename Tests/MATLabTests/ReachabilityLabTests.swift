#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATSignaling
import Testing

/// Reachability checks of what a peer has not proven itself (docs/security.md, D3, R8 and
/// Open 1-2): an IMS answer's new MoAs and key are probed before anything of it is taken,
/// and a learned peer silent for three record TTLs (15 s here) is probed and dropped if
/// it does not answer.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct ReachabilityLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    /// `record-ttl` of the lab's IMS configurations.
    static let recordTTL = 5.0
    /// Silence before a learned peer is probed: three record TTLs.
    static let idleAfter = 15.0
    /// A probe's last wait ends 5.5 s after its first send.
    static let probeWait = 5.5
    /// For a loaded machine.
    static let slack = 10.0

    /// A holder of the VM's IMS key (stolen) registers the VM's HoA at a bystander (the
    /// plain host) and the VM's MoA, with a key of its own and the largest sequence number.
    /// The CN probes both MoAs with that key: the bystander does not answer, the VM answers
    /// with its real key, so nothing of the answer is taken. The bystander gets none of the
    /// CN's traffic for the VM, the VM gets all of it; the VM's next move is taken as ever,
    /// and once it has registered again the CN's next lookup finds nothing to probe.
    @Test func aHostileAnswerChangesNothingLastingAndTheBystanderGetsNoTraffic() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4) || lab.ping("cn", vm.home4))
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)"))

        let sinkVM = try lab.spawn("vm", ["python3", LabPaths.udpTrace, "sink", "5003", "120"])
        let sinkBystander = try lab.spawn("plain", ["python3", LabPaths.udpTrace, "sink", "5003", "120"])
        for sink in [sinkVM, sinkBystander] where !sink.waitForOutput(timeout: 10, { $0.contains("listening") }) {
            throw LabError("udp sink did not start:\n\(sink.wait(timeout: 1).summary)")
        }
        let flow = try lab.spawn("cn", ["python3", LabPaths.udpTrace, "send", vm.home4, "5003", "120", "0.05"])
        defer { for process in [flow, sinkVM, sinkBystander] { process.signal(SIGKILL); process.wait(timeout: 10) } }
        func signaling() throws -> [String: Int] { try lab.stats("cn")["signaling"] as? [String: Int] ?? [:] }
        let before = try signaling()

        let foreign = SigningKey.generate().publicKey.base64
        let name = "10.100.51.198.hoa.mat.example."
        // The first contact was probed too: only what comes after counts.
        let probingBefore = lab.matdLog("cn").components(separatedBy: "probing").count
        let attackedAt = Date().timeIntervalSince1970
        let update = try lab.run("plain", ["sh", "-c", """
            printf 'server 192.0.2.132\\nzone mat.example.\\nupdate delete \(name) A\\nupdate delete \(name) TXT\\n\
            update add \(name) 5 A \(Addr.plain4)\\nupdate add \(name) 5 A \(vm.mobile4)\\n\
            update add \(name) 5 TXT "v=1" "seq=18446744073709551615" "key=\(foreign)" "life=300"\\nsend\\n' \
            | nsupdate -t 5 -k \(lab.path("keys/vm.key"))
            """], timeout: 30)
        #expect(update.status == 0, "\(update.summary)")

        // The CN reads the hostile answer at its next lookup and probes its MoAs.
        let readings = { lab.matdLog("cn").components(separatedBy: "probing").count - probingBefore }
        let readDeadline = Date().addingTimeInterval(Self.recordTTL + Self.slack)
        while readings() == 0 && Date() < readDeadline { usleep(100_000) }
        #expect(readings() >= 1, "\(lab.matdLog("cn"))")
        #expect(lab.waitForLog("cn", "; not taken", timeout: Self.probeWait + Self.slack), "\(lab.matdLog("cn"))")
        let probed = try signaling()
        #expect(probed["probes_unanswered", default: 0] >= before["probes_unanswered", default: 0] + 2, "\(before) -> \(probed)")
        #expect(!lab.matdLog("cn").contains("has a new signing key"), "\(lab.matdLog("cn"))")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)"))

        // Nothing lasting: the VM's next move is adopted as ever, and its registration
        // replaces the hostile answer, which the CN's next lookup takes with nothing to probe.
        let movedAt = Date().timeIntervalSince1970
        try lab.moveVM(to: "b")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10"))
        let moved = try signaling()
        #expect(moved["bindings_adopted", default: 0] > probed["bindings_adopted", default: 0], "\(probed) -> \(moved)")
        #expect(lab.waitForLog("vm", "registered \(vm.home4) -> 203.0.113.10"), "\(lab.matdLog("vm"))")
        // A lookup that started before the registration may still bring the hostile answer back.
        usleep(UInt32((Self.recordTTL + Self.probeWait) * 1_000_000))
        let settled = readings()
        usleep(UInt32(2 * Self.recordTTL * 1_000_000))
        #expect(readings() == settled, "the CN still reads the hostile answer: \(lab.matdLog("cn"))")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10"))
        let afterwards = try signaling()
        // At most four probes per MoA and reading of the hostile answer, and one an idle
        // period for the VM.
        let probes = afterwards["probes_sent", default: 0] - before["probes_sent", default: 0]
        #expect(probes <= 8 * settled + 4, "\(probes) probes for \(settled) readings")

        for process in [flow, sinkVM, sinkBystander] { process.signal(SIGKILL) }
        for process in [flow, sinkVM, sinkBystander] { process.wait(timeout: 10) }
        func times(_ sink: Spawned) -> [Double] {
            sink.stdout.split(separator: "\n").compactMap { line in
                line.split(separator: " ").first.flatMap { Double($0) }
            }
        }
        let atBystander = times(sinkBystander)
        let atVM = times(sinkVM).filter { $0 >= attackedAt && $0 < movedAt }
        #expect(atBystander.isEmpty, "the bystander got \(atBystander.count) of the CN's datagrams for the VM")
        // 20 a second were sent from the attack to the move; the VM got them all but a few.
        let sent = (movedAt - attackedAt) * 20
        #expect(Double(atVM.count) >= sent * 0.9, "the VM got \(atVM.count) of about \(Int(sent)) datagrams")
        print("hostile answer: \(probes) probes for \(settled) reading(s) of it, the bystander got "
              + "\(atBystander.count) datagrams, the VM \(atVM.count) of about \(Int(sent)) "
              + "(moved \(String(format: "%.1f", movedAt - attackedAt)) s after the attack)")
    }

    /// A live idle peer is probed and kept; a dead one is dropped about three record TTLs
    /// plus one probe's wait after it died, not at the end of its registration lifetime
    /// (300 s here).
    @Test func anIdlePeerIsProbedKeptWhileItAnswersAndDroppedOnceItDoesNot() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4) || lab.ping("cn", vm.home4))
        func signaling() throws -> [String: Int] { try lab.stats("cn")["signaling"] as? [String: Int] ?? [:] }
        // Quiet for longer than an idle period and a probe's wait: the VM answers, and stays.
        let quietSince = Date()
        var answered = try signaling()
        while answered["probes_answered", default: 0] == 0 && Date().timeIntervalSince(quietSince) < Self.idleAfter + Self.probeWait + Self.slack {
            usleep(500_000)
            answered = try signaling()
        }
        #expect(answered["probes_answered", default: 0] >= 1, "\(answered)")
        #expect(answered["idle_peers_dropped", default: 0] == 0, "\(answered)")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)"))

        try lab.killMatd("vm")
        let killedAt = Date()
        var droppedAfter: Double?
        while droppedAfter == nil && Date().timeIntervalSince(killedAt) < 2 * Self.idleAfter + Self.probeWait + Self.slack {
            if try !lab.matctl("cn", "peers").contains(vm.home4) { droppedAfter = Date().timeIntervalSince(killedAt) }
            usleep(200_000)
        }
        let dropped = try signaling()
        #expect(droppedAfter != nil, "the CN still maps the dead VM:\n\(lab.matdLog("cn"))")
        #expect(dropped["idle_peers_dropped", default: 0] == 1, "\(dropped)")
        #expect(lab.matdLog("cn").contains("dropping peer \(vm.home4): silent for 15 s"), "\(lab.matdLog("cn"))")
        print("idle probing: the live VM answered \(answered["probes_answered", default: 0]) probe(s) "
              + "\(String(format: "%.1f", Date().timeIntervalSince(quietSince))) s into its silence; "
              + "the dead VM was dropped \(droppedAfter.map { String(format: "%.1f", $0) } ?? "never") s after it died "
              + "(idle after \(Int(Self.idleAfter)) s, lifetime 300 s)")
    }
}
