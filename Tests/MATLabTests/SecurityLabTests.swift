#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATPacket
import MATSignaling
import MATTestSupport
import Testing

/// Signaling that names a bystander (docs/security.md, S4): what the bystander gets is
/// bounded, and nothing of it is taken.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct SecurityLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    /// The size of a padded binding update (`SignalCodec.paddedUpdateLength`).
    static let updateBytes = 1184

    /// The CN's key signs an alert that lists the plain host (a bystander) first and the
    /// CN's own MoA after it, as a redirecting peer would. The VM challenges the bystander
    /// (the CN's MoA is proven already) and, until the challenge ends unanswered 5 s
    /// later, sends the bystander at most 3x the alert's bytes of the flow it sends the
    /// CN's HoA meanwhile; the bystander is never adopted, and the CN has all of the flow
    /// back afterwards.
    @Test func anAlertListingABystanderGetsItOneChallengeAndNoFlood() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        // The VM learns the CN from the CN's first-contact alert.
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        #expect(try lab.ping("vm", cn.home4, count: 3) || lab.ping("vm", cn.home4, count: 3))
        #expect(try lab.matctl("vm", "peers").contains("\(cn.home4) -> \(cn.mobile4)"))

        // Every datagram the bystander gets, signaling and data, with its size.
        let signalingSink = try lab.spawn("plain", ["python3", "-c", Self.sizedSink, "7540", "60"])
        let dataSink = try lab.spawn("plain", ["python3", "-c", Self.sizedSink, "5003", "60"])
        let cnSink = try lab.spawn("cn", ["python3", "-c", Self.sizedSink, "5003", "60"])
        defer { for process in [signalingSink, dataSink, cnSink] { process.signal(SIGKILL); process.wait(timeout: 10) } }
        for sink in [signalingSink, dataSink, cnSink] where !sink.waitForOutput(timeout: 10, { $0.contains("listening") }) {
            throw LabError("udp sink did not start:\n\(sink.wait(timeout: 1).summary)")
        }
        func signaling() throws -> [String: Int] { try lab.stats("vm")["signaling"] as? [String: Int] ?? [:] }
        let before = try signaling()

        // Up to 200 datagrams of 1000 bytes a second from the VM to the CN's HoA, for 12 s.
        let flowStart = Date()
        let flow = try lab.spawnUDPFlow("vm", to: cn.home4, port: 5003, seconds: 12)
        defer { flow.signal(SIGKILL); flow.wait(timeout: 10) }
        usleep(1_000_000)

        let keyText = try String(contentsOfFile: lab.path("cn-state/signing.key"), encoding: .utf8)
        let cnKey = try SigningKey(rawRepresentation: Array(Data(base64Encoded: keyText.trimmingCharacters(in: .whitespacesAndNewlines))!))
        let used = try String(contentsOfFile: lab.path("cn-state/sequence"), encoding: .utf8)
        let sequence = try #require(UInt64(used.trimmingCharacters(in: .whitespacesAndNewlines))) + 1_000_000
        let alert = SignalCodec.seal(SignalMessage(sequence: sequence, sender: IPAddress(cn.home4)!, receiver: IPAddress(vm.home4)!,
                                                   body: .bindingUpdate(moas: [IPAddress(Addr.plain4)!, IPAddress(cn.mobile4)!],
                                                                        lifetime: 60)),
                                     with: cnKey, paddedTo: Self.updateBytes)
        let hex = alert.map { String(format: "%02x", $0) }.joined()
        try lab.exec("cn", "python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 7540))
            """, hex, vm.mobile4)
        let sentAt = Date()
        var trial = try lab.matctl("vm", "peers")
        // Under load matctl may answer before the VM has read the alert (its trial lasts 5 s).
        while !trial.contains(Addr.plain4) && Date().timeIntervalSince(sentAt) < 3 {
            usleep(50_000)
            trial = try lab.matctl("vm", "peers")
        }
        // The trial's end: the challenge's 5 s wait, then back to the CN's own MoA.
        var peers = trial
        while !(peers.contains("\(cn.home4) -> \(cn.mobile4)") && !peers.contains(Addr.plain4)),
              Date().timeIntervalSince(sentAt) < 15 {
            usleep(200_000)
            peers = try lab.matctl("vm", "peers")
        }
        let endedAfter = Date().timeIntervalSince(sentAt)
        let trialEnded = Date().timeIntervalSince1970
        #expect(trial.contains(Addr.plain4), "the alert was not even tried: \(trial)\n\(lab.matdLog("vm"))")
        #expect(peers.contains("\(cn.home4) -> \(cn.mobile4)") && !peers.contains(Addr.plain4), "\(peers)")
        let after = try signaling()
        #expect(after["challenges_sent", default: 0] == before["challenges_sent", default: 0] + 1, "\(before) -> \(after)")
        #expect(after["challenges_unanswered", default: 0] == before["challenges_unanswered", default: 0] + 1)
        #expect(after["bindings_adopted", default: 0] == before["bindings_adopted", default: 0], "the bystander was adopted")

        flow.wait(timeout: 30)
        usleep(500_000)
        for process in [signalingSink, dataSink, cnSink] { process.signal(SIGKILL) }
        for process in [signalingSink, dataSink, cnSink] { process.wait(timeout: 10) }
        let signalingAtBystander = Self.datagrams(signalingSink)
        let dataAtBystander = Self.datagrams(dataSink)
        let dataAtCN = Self.datagrams(cnSink)
        let dataBytes = dataAtBystander.map(\.bytes).reduce(0, +)
        let sent = flow.stdout.split(separator: " ").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let flowEnd = flowStart.timeIntervalSince1970 + 12
        // One challenge, no retransmission of it and nothing else; data within 3x the alert.
        #expect(signalingAtBystander.count == 1 && signalingAtBystander.allSatisfy { $0.bytes <= 200 },
                "the bystander got \(signalingAtBystander) on its signaling port")
        #expect(dataBytes <= 3 * Self.updateBytes, "the bystander got \(dataBytes) bytes of data")
        // During the trial the flow went to the bystander within its budget, the rest was
        // dropped; once the trial ended the CN had all of it again.
        let afterTrial = dataAtCN.filter { $0.at > trialEnded }.count
        let expected = Double(sent) * (flowEnd - trialEnded) / 12
        #expect(sent > 0 && Double(afterTrial) >= expected * 0.8,
                "the CN got \(afterTrial) datagrams after the trial, of about \(Int(expected)) (\(sent) sent in all)")
        print("alert listing a bystander: the bystander got \(signalingAtBystander.count) signaling datagram(s) "
              + "(\(signalingAtBystander.map(\.bytes).reduce(0, +)) bytes) and \(dataAtBystander.count) data datagrams "
              + "(\(dataBytes) bytes, of the \(sent) x 1000 bytes the VM sent the CN's HoA; the CN got \(afterTrial) of about \(Int(expected)) after the trial); "
              + "the trial ended \(String(format: "%.1f", endedAfter)) s after the alert")
    }

    /// A node without an IMS key (the CN: lookups only, unsigned) has nothing to check an
    /// answer for a peer it holds no key for: the answer's key would pass its own probe,
    /// whoever wrote it (someone on the path answers with a key and an address of its
    /// own). So it learns no peer from the IMS, not even the genuine one: neither the key
    /// of a sender whose alert it got (the VM pins the CN's key in a `[peer]` and moves)
    /// nor a first contact of its own, and it challenges, probes and alerts nobody; a
    /// forger on the path answering its lookups (the plain host as the VM's MoA, a key
    /// nobody holds, the largest sequence) gets nothing either. (Before: trust on first
    /// use; the CN took the genuine key and answer, and would have taken the forger's had
    /// it answered its probe.)
    @Test func aNodeWithoutAnIMSKeyLearnsNoPeerFromAnUnsignedAnswer() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS()
        let cnKey = try lab.writeSigningKey("cn")
        let genuine = try String(contentsOfFile: try lab.writeIMSConfig("cn"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("key-file") }.joined(separator: "\n")
        try genuine.write(toFile: lab.path("cn-ims.conf"), atomically: true, encoding: .utf8)
        try lab.startMatd("cn", config: lab.path("cn-ims.conf"))
        let vmConfig = try String(contentsOfFile: try lab.writeIMSConfig("vm"), encoding: .utf8) + """
            [peer]
            home-address = \(cn.home4)
            mobile-address = \(cn.mobile4)
            public-key = \(cnKey.publicKey.base64)

            """
        try vmConfig.write(toFile: lab.path("vm-ims.conf"), atomically: true, encoding: .utf8)
        try lab.startMatd("vm", config: lab.path("vm-ims.conf"))
        #expect(lab.waitForLog("vm", "registered \(vm.home4)"), "\(lab.matdLog("vm"))")
        func signaling() throws -> [String: Int] { try lab.stats("cn")["signaling"] as? [String: Int] ?? [:] }

        // The VM's alert: the CN asks the IMS for the VM's key, unsigned, and takes none.
        try lab.moveVM(to: "b")
        #expect(lab.waitForLog("cn", "\(vm.home4): not learned from the IMS"), "\(lab.matdLog("cn"))")
        #expect(try !lab.matctl("cn", "peers").contains(vm.home4))
        let alerted = try signaling()
        #expect(alerted["challenges_sent", default: 0] == 0 && alerted["updates_received", default: 0] == 0,
                "the CN took the VM's alert on a key from an unsigned answer: \(alerted)")
        // Its own first contact: the same.
        #expect(try !lab.ping("cn", vm.home4, count: 3), "the CN reached the VM on an unsigned answer")
        #expect(try !lab.matctl("cn", "peers").contains(vm.home4))

        let forger = try lab.spawn("plain", ["python3", LabPaths.forgedIMS, Addr.plain4, Addr.plain4])
        defer { forger.signal(SIGKILL); forger.wait(timeout: 10) }
        guard forger.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("the forger did not start:\n\(forger.wait(timeout: 1).summary)")
        }
        try genuine.replacingOccurrences(of: "server = 192.0.2.132", with: "server = \(Addr.plain4)")
            .write(toFile: lab.path("cn-ims.conf"), atomically: true, encoding: .utf8)
        try lab.signalMatd("cn", SIGHUP)
        #expect(lab.waitForLog("cn", "reload: [ims] section applied"), "\(lab.matdLog("cn"))")
        _ = try poll(seconds: 20, every: 0) {
            if forger.stdout.contains("answered type 16 from \(cn.mobile4)") { return true }
            _ = try lab.ping("cn", vm.home4, count: 1)
            return false
        }
        #expect(forger.stdout.contains("answered type 16 from \(cn.mobile4)"),
                "the CN never read the forgery:\n\(forger.stdout)\n\(lab.matdLog("cn"))")
        #expect(try !lab.ping("cn", vm.home4, count: 2), "the CN reached the VM on a forged answer")
        #expect(try !lab.matctl("cn", "peers").contains(vm.home4))
        let counters = try signaling()
        #expect(counters["probes_sent", default: 0] == 0 && counters["updates_sent", default: 0] == 0,
                "the CN probed or alerted on an unsigned answer: \(counters)")
        let saved = (try? String(contentsOfFile: lab.path("cn-state/peers.json"), encoding: .utf8)) ?? ""
        #expect(!saved.contains(vm.home4), "\(saved)")
    }

    /// A node without an IMS key that holds a peer's key (the CN learned the VM while it
    /// had one; restarted without its key-file, it keeps the VM's mapping and key from
    /// peers.json) asks unsigned, and whoever answers is believed less (docs/security.md,
    /// D3): a forged answer with a key of its own, the plain host as the VM's MoA and the
    /// largest sequence is refused whole (no key change, nothing probed or sent to the
    /// plain host); one with the VM's genuine key and MoA and the largest sequence is
    /// taken without its sequence, so the genuine IMS's answer after the VM's next move
    /// (the VM's own, far smaller number) still wins, and the CN follows the VM, lastingly.
    @Test func aNodeWithoutAnIMSKeyTakesNoKeyChangeAndNoSequenceFromAnUnsignedAnswer() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)"), "\(lab.matdLog("cn"))")
        let keyText = try String(contentsOfFile: lab.path("vm-state/signing.key"), encoding: .utf8)
        let vmKey = try SigningKey(rawRepresentation: Array(Data(base64Encoded: keyText.trimmingCharacters(in: .whitespacesAndNewlines))!))
        let genuine = try String(contentsOfFile: lab.path("cn-ims.conf"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("key-file") }.joined(separator: "\n")
        try genuine.write(toFile: lab.path("cn-keyless-genuine.conf"), atomically: true, encoding: .utf8)
        let keyless = genuine.replacingOccurrences(of: "server = 192.0.2.132", with: "server = \(Addr.plain4)")
        #expect(keyless.contains("server = \(Addr.plain4)"), "\(keyless)")
        try keyless.write(toFile: lab.path("cn-keyless.conf"), atomically: true, encoding: .utf8)
        // Whatever the CN sends the plain host (a probe, an alert) arrives here.
        let bystander = try lab.spawn("plain", ["python3", "-c", Self.sizedSink, "7540", "120"])
        defer { bystander.signal(SIGKILL); bystander.wait(timeout: 10) }
        guard bystander.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("udp sink did not start:\n\(bystander.wait(timeout: 1).summary)")
        }
        func vmPeer() throws -> PeerReport? {
            try JSONDecoder().decode([PeerReport].self, from: Data(lab.matctl("cn", "peers", "--json").utf8))
                .first { $0.homeAddress == vm.home4 }
        }
        /// Restarts the CN without its IMS key, asking `forger`, and waits until it read
        /// the forger's answer for the VM (restored mappings are looked up a second later).
        func restartCN(asking forger: [String]) throws -> Spawned {
            _ = try lab.stopMatd("cn")
            let spawned = try lab.spawn("plain", ["python3", LabPaths.forgedIMS, Addr.plain4] + forger)
            guard spawned.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
                throw LabError("the forger did not start:\n\(spawned.wait(timeout: 1).summary)")
            }
            try lab.startMatd("cn", config: lab.path("cn-keyless.conf"))
            #expect(lab.waitForLog("cn", "restored 1 learned peer"), "\(lab.matdLog("cn"))")
            #expect(spawned.waitForOutput(timeout: 20, { $0.contains("answered type 16 from \(self.cn.mobile4)") }),
                    "the CN never read the forgery:\n\(spawned.stdout)\n\(lab.matdLog("cn"))")
            return spawned
        }

        // A foreign key: refused whole.
        let foreign = try restartCN(asking: [Addr.plain4])
        #expect(lab.waitForLog("cn", "an unsigned IMS answer names another key than the one held"), "\(lab.matdLog("cn"))")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let afterForeign = try vmPeer()
        #expect(afterForeign?.mobileAddresses.map(\.address) == [vm.mobile4], "\(String(describing: afterForeign))")
        #expect(afterForeign?.sequence != UInt64.max)
        #expect(Self.datagrams(bystander).isEmpty, "the CN sent the plain host \(Self.datagrams(bystander).count) datagram(s)")
        foreign.signal(SIGKILL)
        foreign.wait(timeout: 10)

        // The genuine key and MoA with the largest sequence: taken, but not its number.
        let sequence = try restartCN(asking: [vm.mobile4, vmKey.publicKey.base64])
        defer { sequence.signal(SIGKILL); sequence.wait(timeout: 10) }
        usleep(1_000_000)
        let taken = try vmPeer()
        #expect(taken?.mobileAddresses.map(\.address) == [vm.mobile4], "\(String(describing: taken))")
        // What the CN keeps of it (peers.json) meets the genuine IMS's next answer: the VM
        // moves while the CN is stopped (no alert reaches it) and registers its new MoA;
        // the CN, started again without a key and asking the real IMS, looks the restored
        // VM up and must take that answer, whose sequence is the VM's own and so far below
        // the forged one (which, had it been kept, would make the answer look older and
        // leave the CN at the VM's old address for good).
        _ = try lab.stopMatd("cn")
        func registrations() -> Int { lab.matdLog("vm").components(separatedBy: "registered \(vm.home4)").count - 1 }
        let registered = registrations()
        try lab.moveVM(to: "b")
        _ = poll(seconds: 20, every: 0.2) { registrations() > registered }
        #expect(registrations() > registered, "the VM did not register its new MoA:\n\(lab.matdLog("vm"))")
        try lab.startMatd("cn", config: lab.path("cn-keyless-genuine.conf"))
        var moved = try vmPeer()
        _ = try poll(seconds: 20, every: 0.2) {
            moved = try vmPeer()
            return moved?.mobileAddresses.first?.address ?? vm.mobile4 != vm.mobile4
        }
        let newMoA = moved?.mobileAddresses.first?.address
        #expect(newMoA != nil && newMoA != vm.mobile4, "the CN did not follow the VM: \(String(describing: moved))\n\(lab.matdLog("cn"))")
        #expect((moved?.sequence ?? .max) < UInt64.max / 2, "\(String(describing: moved))")
        let lasting = Date().addingTimeInterval(3 * ReachabilityLabTests.recordTTL)
        while newMoA != vm.mobile4 && Date() < lasting {
            #expect(try vmPeer()?.mobileAddresses.first?.address == newMoA, "\(lab.matdLog("cn"))")
            usleep(1_000_000)
        }
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        #expect(Self.datagrams(bystander).isEmpty, "the CN sent the plain host \(Self.datagrams(bystander).count) datagram(s)")
        print("keyless: a foreign key refused, a forged sequence not kept (the CN has \(moved?.sequence ?? 0)); "
              + "the genuine answer after the VM's move taken at \(newMoA ?? "?") and kept for \(Int(3 * ReachabilityLabTests.recordTTL)) s")
    }

    /// Prints "listening", then "<unix time> <source> <bytes>" per datagram on the port.
    static let sizedSink = """
        import socket, sys, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(sys.argv[1])))
        print("listening", flush=True)
        end = time.time() + float(sys.argv[2])
        while time.time() < end:
            s.settimeout(max(0.01, end - time.time()))
            try:
                data, source = s.recvfrom(65535)
            except socket.timeout:
                break
            print(f"{time.time():.3f} {source[0]} {len(data)}", flush=True)
        """

    /// The datagrams a `sizedSink` printed: when, from where, how many bytes.
    static func datagrams(_ sink: Spawned) -> [(at: Double, source: String, bytes: Int)] {
        sink.stdout.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == 3, let at = Double(fields[0]), let bytes = Int(fields[2]) else { return nil }
            return (at, String(fields[1]), bytes)
        }
    }
}
