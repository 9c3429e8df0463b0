#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATTestSupport
import Testing

/// README.md's "Running matd by hand" block, run as written on the lab's VM node: each
/// command line of it (but `swift build`: the test runs this build's binaries, in place of
/// `.build/release/`), with the lab's configuration file in place of `/etc/mat/matd.conf`,
/// through `sh` in a machine of its own: the VM node's network namespace and a private
/// mount namespace with an empty `/run`, so `matctl`'s default control socket
/// (`/run/matd/control.sock`) is this matd's and no one else's. Each command must do what
/// the comment beside it says; a line the test has no check for fails it.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct ReadmeByHandLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// The block's command lines by what they run (`matd run`, `matctl status`), as written.
    static func commands() throws -> [String: String] {
        let readme = try DocExamplesTests.document("README.md")
        guard let heading = readme.range(of: "\n## Running matd by hand\n"),
              let block = DocText.fencedBlocks(in: String(readme[heading.upperBound...])).first, block.info == "sh" else {
            throw LabError("README.md has no sh block under ## Running matd by hand")
        }
        var commands: [String: String] = [:]
        for line in block.lines {
            let code = (line.components(separatedBy: " #").first ?? line).trimmingCharacters(in: .whitespaces)
            let words = code.split(separator: " ").map(String.init)
            guard words.count >= 2, !code.hasPrefix("#") else { continue }
            if words[0] == "swift" { continue }  // the build: this test runs the build it is part of
            let key = "\((words[0] as NSString).lastPathComponent) \(words[1])"
            commands[key] = code
        }
        return commands
    }

    @Test func theReadmesRunningMatdByHandBlockDoesWhatItsCommentsSay() throws {
        var commands = try Self.commands()
        let checked = ["matd check-config", "matd run", "matctl status", "matctl rebind", "matctl rotate-key",
                       "matctl deregister", "matd cleanup"]
        #expect(Set(commands.keys) == Set(checked),
                "README.md's block changed: this test checks \(checked), the block has \(commands.keys.sorted())")
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS()
        let vmName = try lab.hoaName(vm.home4)
        let config = lab.path("matd.conf")
        let configText = """
            [node]
            home-address = \(vm.home4)
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            state-directory = \(lab.path("vm-state"))
            [ims]
            server = 192.0.2.132
            zone = mat.example.
            key-file = \(lab.path("keys/vm.key"))
            record-ttl = 5

            """
        try configText.write(toFile: config, atomically: true, encoding: .utf8)
        for (key, line) in commands {
            commands[key] = line.replacingOccurrences(of: ".build/release/", with: LabPaths.binDirectory + "/")
                .replacingOccurrences(of: "/etc/mat/matd.conf", with: config)
        }
        func written(_ key: String) throws -> String {
            guard let text = commands[key] else { throw LabError("README.md's block has no `\(key)` line") }
            return text
        }

        // The machine: the VM node's network, a mount namespace of its own with an empty /run.
        let holder = try lab.spawn("vm", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                          "mount -t tmpfs -o mode=0755 run /run && echo ready && exec sleep infinity"])
        guard holder.waitForOutput(timeout: 10, { $0.contains("ready") }) else {
            throw LabError("the VM's machine did not start:\n\(holder.wait(timeout: 1).summary)")
        }
        func onMachine(_ script: String) -> [String] {
            ["nsenter", "--target", "\(holder.pid)", "--mount", "--net", "--", "sh", "-c", script]
        }
        func run(_ script: String, timeout: Double = 60) throws -> CommandResult {
            try runCommand(onMachine(script), timeout: timeout)
        }
        var daemons: [Spawned] = []
        defer {
            for daemon in daemons where daemon.isRunning {
                daemon.signal(SIGTERM)
                daemon.wait(timeout: 15)
            }
        }
        /// `matd run` as written; returns once `matctl status` as written answers.
        func startMatd() throws -> Spawned {
            let daemon = try Spawned(onMachine("exec " + (try written("matd run"))))
            daemons.append(daemon)
            let answered = try poll(seconds: 30, every: 0.1) {
                if !daemon.isRunning { throw LabError("matd run ended at start:\n\(daemon.wait(timeout: 1).summary)") }
                return try run(try written("matctl status"), timeout: 10).succeeded
            }
            if answered { return daemon }
            throw LabError("matd run: matctl status did not answer within 30 s:\n\(daemon.stderr)")
        }
        func hasMat0(_ state: [String: String]) -> Bool { state["ip link"]?.contains(": mat0:") == true }

        try lab.startMatd("cn", config: try lab.writeIMSConfig("cn"))
        let bare = try lab.hostState("vm")

        // check-config: "validate, touch nothing".
        let checkConfig = try run(try written("matd check-config"))
        #expect(checkConfig.succeeded && checkConfig.stdout.contains("\(config): ok ("), "\(checkConfig.summary)")
        let afterCheck = stateDifferences(bare, try lab.hostState("vm"))
        #expect(afterCheck.isEmpty, "check-config changed the host: \(afterCheck)")
        #expect(!FileManager.default.fileExists(atPath: lab.path("vm-state")), "check-config made the state directory")
        #expect(!(try run("test -e /run/matd").succeeded), "check-config made /run/matd")

        // run, then status "also: peers, stats; --json".
        let first = try startMatd()
        #expect(try poll(seconds: 20, every: 0.2) { first.stderr.contains("registered \(vm.home4)") }, "no registration within 20 s: \(first.stderr)")
        let status = try run(try written("matctl status"))
        #expect(status.stdout.contains("home addresses:  \(vm.home4)") && status.stdout.contains("mobile addresses: \(vm.mobile4)"),
                "\(status.summary)")
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4))
        let statusLine = try written("matctl status")
        let peers = try run(statusLine.replacingOccurrences(of: " status", with: " peers"))
        #expect(peers.stdout.contains("\(cn.home4) -> \(cn.mobile4)"), "\(peers.summary)")
        let stats = try run(statusLine.replacingOccurrences(of: " status", with: " stats"))
        #expect(stats.succeeded && stats.stdout.contains("outbound: ") && stats.stdout.contains("drops:"), "\(stats.summary)")
        let json = try run(statusLine + " --json")
        let report = try? JSONDecoder().decode(StatusReport.self, from: Data(json.stdout.utf8))
        #expect(report?.homeAddresses == [vm.home4], "\(json.summary)")

        // "SIGHUP reloads peers and [ims]": a static peer and another registration lifetime.
        try (configText + "lifetime = 120\n[peer]\nhome-address = 198.51.100.77\nmobile-address = 203.0.113.77\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        first.signal(SIGHUP)
        #expect(try poll(seconds: 20, every: 0.2) {
            try run(statusLine.replacingOccurrences(of: " status", with: " peers")).stdout.contains("198.51.100.77 -> 203.0.113.77")
        }, "no reloaded peer within 20 s")
        #expect(try poll(seconds: 20, every: 0.2) { try lab.imsAnswer(vmName, "TXT").contains("\"life=120\"") },
                "no reloaded [ims] lifetime within 20 s")
        try configText.write(toFile: config, atomically: true, encoding: .utf8)

        // "SIGUSR2 hands over to the next matd (exit 75)": the datapath stays, the next
        // matd (run as written again) takes it and the learned peer.
        first.signal(SIGUSR2)
        let handedOver = first.wait(timeout: 15)
        #expect(handedOver.status == Daemon.handOverExitStatus && !handedOver.signalled, "\(handedOver.summary)")
        #expect(hasMat0(try lab.hostState("vm")), "the hand-over removed mat0")
        let second = try startMatd()
        #expect(try run(statusLine.replacingOccurrences(of: " status", with: " peers")).stdout.contains("\(cn.home4) -> "),
                "the next matd lacks the learned peer:\n\(second.stderr)")

        // rotate-key: "a new signing key, registered at once".
        let oldKey = try #require(report?.publicKey)
        let rotated = try run(try written("matctl rotate-key"))
        let fields = Self.fields(rotated.stdout)
        let newKey = fields["public key"] ?? ""
        #expect(rotated.succeeded && fields["registration"] == "confirmed" && fields["was"] == oldKey && newKey != oldKey
                && !newKey.isEmpty, "\(rotated.summary)")
        #expect(try lab.imsAnswer(vmName, "TXT").contains("\"key=\(newKey)\""), "the IMS does not have the new key at once")
        let afterRotation = try? JSONDecoder().decode(StatusReport.self, from: Data(try run(statusLine + " --json").stdout.utf8))
        #expect(afterRotation?.publicKey == newKey)
        // docs/operations.md's sample output of it has the fields it prints, in its order.
        #expect(Self.fieldNames(rotated.stdout) == (try Self.rotateKeySampleFields()), "\(rotated.stdout)")

        // "SIGTERM restores the host".
        second.signal(SIGTERM)
        let stopped = second.wait(timeout: 15)
        #expect(stopped.succeeded, "\(stopped.summary)")
        let afterStop = stateDifferences(bare, try lab.hostState("vm"))
        #expect(afterStop.isEmpty, "after SIGTERM: \(afterStop)")

        // cleanup "after a kill -9".
        let third = try startMatd()
        third.signal(SIGKILL)
        _ = third.wait(timeout: 15)
        #expect(hasMat0(try lab.hostState("vm")), "kill -9 left no datapath to clean up")
        let cleanup = try run(try written("matd cleanup"))
        #expect(cleanup.succeeded && cleanup.stdout.contains("removed "), "\(cleanup.summary)")
        let afterCleanup = stateDifferences(bare, try lab.hostState("vm"))
        #expect(afterCleanup.isEmpty, "after cleanup: \(afterCleanup)")

        // rebind "after a migration: register, alert peers".
        _ = try startMatd()
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4))
        try lab.moveVM(to: "b")
        let rebind = try run(try written("matctl rebind"))
        let rebound = Self.fields(rebind.stdout)
        #expect(rebind.succeeded && rebound["registration"] == "confirmed" && rebound["acknowledged"] == cn.home4
                && rebound["mobile addresses"]?.hasPrefix("203.0.113.10, ") == true, "\(rebind.summary)")
        #expect(try lab.imsAnswer(vmName, "A") == "203.0.113.10")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10"))
        // docs/operations.md's sample `matctl monitor` lines: the move, alert and ack events this
        // node kept have the fields the sample shows, in its order.
        let monitor = try run("timeout 3 " + statusLine.replacingOccurrences(of: " status", with: " monitor --history"))
        let real = Self.eventShapes(monitor.stdout)
        let sample = try Self.monitorSampleShapes()
        #expect(sample.count >= 3, "\(sample)")
        for (kind, shape) in sample {
            #expect(real[kind] == shape, "\(kind): docs/operations.md shows \(shape), matctl monitor printed \(real[kind] ?? [])")
        }

        // deregister: "a node going away for good: withdraw it from the IMS".
        let deregister = try run(try written("matctl deregister"))
        #expect(deregister.succeeded && Self.fields(deregister.stdout)["deregistered"] == vm.home4, "\(deregister.summary)")
        #expect(try poll(seconds: 20, every: 0.2) { try lab.imsAnswer(vmName, "A").isEmpty }, "no withdrawal within 20 s")
    }

    /// `label: value` lines (matctl's human output), by label.
    static func fields(_ output: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in output.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    static func fieldNames(_ output: String) -> [String] {
        output.split(separator: "\n").compactMap { line in line.firstIndex(of: ":").map { String(line[..<$0]) } }
    }

    /// The fields of each kind of event in `matctl monitor` lines (the first of each kind):
    /// the top-level keys, then `details.` and the details' keys, as printed.
    static func eventShapes(_ output: String) -> [String: [String]] {
        var shapes: [String: [String]] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("{") {
            guard let kind = line.firstMatch(of: /"kind":"([a-z_]+)"/)?.output.1, shapes[String(kind)] == nil else { continue }
            let details = line.firstMatch(of: /"details":\{([^}]*)\}/).map { String($0.output.1) } ?? ""
            let outer = line.replacing(/"details":\{[^}]*\}/, with: "\"details\":{}")
            func keys(_ text: String) -> [String] { text.matches(of: /"([a-z_]+)":/).map { String($0.output.1) } }
            shapes[String(kind)] = keys(String(outer)) + keys(details).map { "details.\($0)" }
        }
        return shapes
    }

    /// The shapes of docs/operations.md's sample `matctl monitor` lines (its Monitor section's block).
    static func monitorSampleShapes() throws -> [String: [String]] {
        let doc = try DocExamplesTests.document("docs/operations.md")
        guard let block = DocText.fencedBlocks(in: doc).first(where: { $0.lines.first?.hasPrefix("{\"details\"") == true }) else {
            throw LabError("docs/operations.md has no block of matctl monitor lines")
        }
        return eventShapes(block.lines.joined(separator: "\n"))
    }

    /// The labels of docs/operations.md's sample `matctl rotate-key` output (`# label: ...`
    /// lines under the command).
    static func rotateKeySampleFields() throws -> [String] {
        let doc = try DocExamplesTests.document("docs/operations.md")
        guard let block = DocText.fencedBlocks(in: doc).first(where: { $0.lines.first == "matctl rotate-key" }) else {
            throw LabError("docs/operations.md has no block starting with matctl rotate-key")
        }
        return block.lines.dropFirst().compactMap { line in
            guard line.hasPrefix("# "), let colon = line.firstIndex(of: ":") else { return nil }
            return String(line[line.index(line.startIndex, offsetBy: 2)..<colon])
        }
    }
}
