#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATTestSupport
import Testing

/// End-to-end tests of matd in the testbed: a lab of network namespaces per test
/// (Tools/testbed with a unique LAB prefix), matd started in the VM node and the CN, traffic
/// between their home addresses, captures on the router's ports. Root only; in CI they are
/// enabled even without root, so a non-root CI run fails instead of skipping.
///
/// Serialized: each test builds its own lab, but the machine has two cores and the
/// transfers and captures are timing-sensitive.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct LabTests {
    init() throws {
        guard FileManager.default.isExecutableFile(atPath: LabPaths.matd),
              FileManager.default.isExecutableFile(atPath: LabPaths.matctl) else {
            throw LabError("matd / matctl not found in \(LabPaths.binDirectory) (set MATLAB_BIN_DIR)")
        }
    }

    // MARK: traffic

    @Test func tcpUdpIcmpBetweenHomeAddressesAwayFromHome() throws {
        let lab = try Lab()
        defer { lab.close() }
        // The engine's path: its counters must carry the traffic (KernelFastPathLabTests
        // runs the same with the kernel fast path).
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: "kernel-fast-path = off")) }
        let file = try lab.randomFile("payload", megabytes: 50)
        try trafficMatrix(lab, file: file)

        for node in ["vm", "cn"] {
            let stats = try lab.stats(node)
            #expect(counter(stats, "outboundPackets") > 70_000 / 64, "\(node): \(stats)")
            #expect(counter(stats, "inboundPackets") > 70_000 / 64, "\(node): \(stats)")
            #expect(counter(stats, "outboundBytes") > 200_000_000, "\(node): \(stats)")
            #expect(counter(stats, "inboundBytes") > 200_000_000, "\(node): \(stats)")
            // 50 MB through the TUN device in far fewer reads than wire packets.
            #expect(counter(stats, "superPackets") > 0, "\(node): \(stats)")
            #expect(drops(stats).isEmpty, "\(node) dropped packets: \(drops(stats))")
        }
    }

    /// At home the VM node's uplink carries its HoA (MoA == HoA), and the CN maps the VM's
    /// HoA to itself.
    @Test func tcpUdpIcmpWithTheVMNodeAtHome() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.vmAtHome()
        try lab.startMatd("vm")
        try lab.startMatd("cn", config: lab.writeConfig("cn", peerMobile4: Addr.vm.home4, peerMobile6: Addr.vm.home6))
        let status = try JSONDecoder().decode(StatusReport.self, from: Data(lab.matctl("vm", "status", "--json").utf8))
        #expect(status.mobileAddresses == [Addr.vm.home4, Addr.vm.home6])

        // The CN translates its packets to the VM's MoA, which is inside the domain prefix:
        // matd's rule must route them out of the uplink, not back into mat0.
        for family in Addr.Family.allCases {
            #expect(try lab.ping("vm", Addr.cn.home(family), count: 2), "vm -> cn \(family)")
            #expect(try lab.ping("cn", Addr.vm.home(family), count: 2), "cn -> vm \(family)")
        }
        let file = try lab.randomFile("payload", megabytes: 50)
        try trafficMatrix(lab, file: file)
        for node in ["vm", "cn"] {
            let stats = try lab.stats(node)
            #expect(counter(stats, "inboundPackets") > 0 && counter(stats, "outboundPackets") > 0, "\(node): \(stats)")
            #expect(drops(stats).isEmpty, "\(node) dropped packets: \(drops(stats))")
        }
    }

    // MARK: the wire

    /// On the VM node's site link only MoAs appear, and every IP, TCP, UDP, ICMP and ICMPv6
    /// checksum is valid (transmit checksum offload off on both uplinks, so the capture
    /// sees what a real NIC would send).
    @Test func siteLinkCarriesOnlyMobileAddressesWithValidChecksums() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.checksumOffloadOff("vm", "cn")
        try lab.startMatd("vm")
        try lab.startMatd("cn")
        let capture = try Capture(lab, interface: lab.routerPort("vm"), name: "site-a")
        let file = try lab.randomFile("payload", megabytes: 2)
        for family in Addr.Family.allCases {
            try lab.tcpTransfer(listener: "cn", address: Addr.cn.home(family), connector: "vm", sender: "vm", file: file)
            try lab.tcpTransfer(listener: "vm", address: Addr.vm.home(family), connector: "cn", sender: "cn", file: file)
            try lab.udpEcho(client: "vm", server: "cn", address: Addr.cn.home(family), count: 50)
            try lab.udpEcho(client: "cn", server: "vm", address: Addr.vm.home(family), count: 50)
            #expect(try lab.ping("vm", Addr.cn.home(family)), "ping vm -> cn \(family)")
            #expect(try lab.ping("cn", Addr.vm.home(family)), "ping cn -> vm \(family)")
            // ICMP error: the peer's port unreachable reaches the sender's application.
            #expect(try lab.udpToClosedPort("vm", Addr.cn.home(family)), "port unreachable cn -> vm \(family)")
            #expect(try lab.udpToClosedPort("cn", Addr.vm.home(family)), "port unreachable vm -> cn \(family)")
        }
        try capture.stop()
        let packets = try capture.packets()

        let allowed = [Addr.vm.mobile4, Addr.vm.mobile6, Addr.cn.mobile4, Addr.cn.mobile6]
        let foreign = packets.filter { packet in
            packet.addresses.contains { !allowed.contains($0) && !Addr.isInfrastructure($0) }
        }
        #expect(foreign.isEmpty, "addresses other than MoAs on the wire:\n\(sample(foreign))")
        let homeOnWire = packets.filter { packet in
            packet.addresses.contains { address in Addr.homePrefixes.contains { address.hasPrefix($0) } }
        }
        #expect(homeOnWire.isEmpty, "HoAs on the wire:\n\(sample(homeOnWire))")
        let bad = packets.filter { $0.checksumStatuses.contains { $0.1 == "0" } }
        #expect(bad.isEmpty, "\(bad.count) packets with bad checksums:\n\(sample(bad))\n\(capture.explain(bad))")
        let unverified = packets.filter { $0.checksumStatuses.contains { $0.1 != "1" } }
        #expect(unverified.isEmpty, "\(unverified.count) packets tshark could not verify:\n\(sample(unverified))")

        // Everything the test sent is in the capture and was validated.
        for v6 in [false, true] {
            let family = v6 ? "IPv6" : "IPv4"
            let ofFamily = packets.filter { $0.isIPv6 == v6 && ($0.addresses.first.map(allowed.contains) ?? false) }
            let tcp = ofFamily.filter { $0["tcp.checksum.status"] == ["1"] }
            let udp = ofFamily.filter { $0["udp.checksum.status"] == ["1"] && $0[v6 ? "icmpv6.type" : "icmp.type"].isEmpty }
            let types = v6 ? "icmpv6.type" : "icmp.type"
            let echo = ofFamily.filter { Set($0[types]).isSubset(of: v6 ? ["128", "129"] : ["0", "8"]) && !$0[types].isEmpty }
            let errors = ofFamily.filter { $0[types].first == (v6 ? "1" : "3") }
            #expect(tcp.count > 2 * 2_000_000 / 65_536, "\(family) TCP packets: \(tcp.count)")
            #expect(udp.count >= 200, "\(family) UDP packets: \(udp.count)")
            #expect(echo.count >= 12, "\(family) ICMP echo packets: \(echo.count)")
            #expect(errors.count >= 2, "\(family) ICMP errors: \(errors.count)")
            // The quoted packet inside each error carries MoAs too, with a valid UDP checksum.
            for error in errors {
                #expect(error.addresses.count == 4, "\(error)")
                #expect(error["udp.checksum.status"] == ["1"], "\(error)")
            }
        }
    }

    // MARK: hosts that do not run MAT

    /// The non-MAT host reaches both nodes' MoAs and is reached from them; matd never sees
    /// the packets (its counters do not move) and the capture shows them as sent.
    @Test func nonMATHostTrafficIsUntouched() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.checksumOffloadOff("vm", "cn", "plain")
        try lab.startMatd("vm")
        try lab.startMatd("cn")
        usleep(300_000)
        let before = try ["vm": lab.stats("vm"), "cn": lab.stats("cn")]
        let capture = try Capture(lab, interface: lab.routerPort("plain"), name: "plain")
        let marker = "MAT-LAB-PLAIN-HOST-MARKER."
        let file = lab.path("marker")
        try String(repeating: marker, count: 4096).write(toFile: file, atomically: true, encoding: .utf8)

        for family in Addr.Family.allCases {
            let plain = Addr.plain(family)
            for node in ["vm", "cn"] {
                let moa = Addr.node(node).mobile(family)
                #expect(try lab.ping("plain", moa), "ping plain -> \(node) \(moa)")
                #expect(try lab.ping(node, plain), "ping \(node) -> plain \(plain)")
                let toNode = try lab.tcpTransfer(listener: node, address: moa, connector: "plain", sender: "plain", file: file)
                #expect(toNode.listenerSawPeer == plain, "\(node) saw \(toNode.listenerSawPeer) connect")
                let fromNode = try lab.tcpTransfer(listener: "plain", address: plain, connector: node, sender: node, file: file)
                #expect(fromNode.listenerSawPeer == moa, "plain saw \(fromNode.listenerSawPeer) connect")
                #expect(fromNode.connectorLocal == moa)
            }
        }
        try capture.stop()
        usleep(300_000)
        for node in ["vm", "cn"] {
            let after = try lab.stats(node)
            for key in ["outboundPackets", "inboundPackets", "outboundBytes", "inboundBytes"] {
                #expect(counter(after, key) == counter(before[node]!, key), "\(node) \(key) moved: matd saw plain traffic")
            }
            #expect(drops(after) == drops(before[node]!), "\(node) drops moved: \(drops(after))")
        }

        let packets = try capture.packets()
        let allowed = [Addr.plain4, Addr.plain6, Addr.vm.mobile4, Addr.vm.mobile6, Addr.cn.mobile4, Addr.cn.mobile6]
        let foreign = packets.filter { packet in
            packet.addresses.contains { !allowed.contains($0) && !Addr.isInfrastructure($0) }
        }
        #expect(foreign.isEmpty, "unexpected addresses on the plain host's link:\n\(sample(foreign))")
        let bad = packets.filter { $0.checksumStatuses.contains { $0.1 != "1" } }
        #expect(bad.isEmpty, "\(bad.count) packets with bad or unverified checksums:\n\(sample(bad))\n\(capture.explain(bad))")
        for node in ["vm", "cn"] {
            for family in Addr.Family.allCases {
                let moa = Addr.node(node).mobile(family)
                let plain = Addr.plain(family)
                let ip = family == .v4 ? "ip" : "ipv6"
                let pings = try capture.count(matching: "\(ip).addr == \(moa) && \(ip).addr == \(plain) && (icmp || icmpv6.type == 128 || icmpv6.type == 129)")
                #expect(pings >= 12, "\(node) \(family): \(pings) echo packets")
                let data = try capture.count(matching: "\(ip).addr == \(moa) && \(ip).addr == \(plain) && tcp.payload contains \"\(marker)\"")
                #expect(data >= 2, "\(node) \(family): the payload was not seen as sent")
            }
        }
    }

    // MARK: the host before and after

    /// matd changes nothing in the VM node's namespace that survives it: after SIGTERM, and
    /// after kill -9 followed by `matd cleanup` (a crash leaves only the persistent TUN
    /// device, the policy rules and the nftables table, docs/datapath.md; a new `matd run`
    /// takes them over).
    @Test func hostIsRestoredAfterStopAndAfterCrashAndCleanup() throws {
        let lab = try Lab()
        defer { lab.close() }
        let forwarding = ["net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding"]
        let forwardingBefore = try forwarding.map { try lab.sysctl("vm", $0) }
        let before = try lab.hostState("vm")
        try lab.startMatd("cn")
        try lab.startMatd("vm")
        #expect(try lab.ping("vm", Addr.cn.home4))
        #expect(try lab.ping("vm", Addr.cn.home6))

        // While it runs: the TUN device with its per-device sysctls, and the nftables table.
        let during = try lab.hostState("vm")
        #expect(during["ip link"]?.contains(": mat0:") == true)
        #expect(during["nft list ruleset"]?.contains("table netdev matd_mat0") == true)
        let sysctlsBefore = Set(before["sysctl net"]!.split(separator: "\n"))
        let sysctlsDuring = Set(during["sysctl net"]!.split(separator: "\n"))
        let changed = sysctlsBefore.symmetricDifference(sysctlsDuring)
        #expect(changed.allSatisfy { $0.contains(".mat0.") }, "host-wide sysctls changed: \(changed.filter { !$0.contains(".mat0.") })")
        #expect(try forwarding.map { try lab.sysctl("vm", $0) } == forwardingBefore)

        // SIGTERM: everything as before.
        let stopped = try lab.stopMatd("vm")
        #expect(stopped.status == 0, "\(stopped.summary)")
        let afterStop = try lab.hostState("vm")
        #expect(stateDifferences(before, afterStop).isEmpty, "after SIGTERM: \(stateDifferences(before, afterStop))")

        // kill -9 leaves, by design (docs/datapath.md), the persistent TUN device with what
        // is on it, the policy rules into its table and the nftables table; nothing else.
        // HoA traffic does not leak meanwhile.
        try lab.startMatd("vm")
        #expect(try lab.ping("vm", Addr.cn.home4))
        try lab.killMatd("vm")
        let afterKill = try lab.hostState("vm")
        let leftovers = changedLines(before, afterKill)
        for (key, lines) in leftovers where key != "nft list ruleset" && !key.hasSuffix(" rule") {
            #expect(lines.allSatisfy { $0.contains("mat0") }, "after kill -9, \(key) changed beyond mat0: \(lines)")
        }
        #expect(leftovers["ip -4 rule"] == ["7540:\tfrom all to 198.51.100.0/24 iif lo lookup 7540"],
                "\(leftovers["ip -4 rule"] ?? [])")
        #expect(leftovers["ip -6 rule"] == ["7540:\tfrom all to 2001:db8:100::/64 iif lo lookup 7540"],
                "\(leftovers["ip -6 rule"] ?? [])")
        #expect(before["nft list ruleset"]?.isEmpty == true)
        let ruleset = afterKill["nft list ruleset"] ?? ""
        #expect(ruleset.split(separator: "\n").filter { $0.hasPrefix("table ") } == ["table inet matd_mat0 {", "table netdev matd_mat0 {"],
                "after kill -9 the ruleset is not just matd's tables: \(ruleset)")
        let crashCapture = try Capture(lab, interface: lab.routerPort("vm"), name: "crashed")
        #expect(try !lab.ping("vm", Addr.cn.home4, count: 2), "HoA traffic got through with matd dead")
        #expect(try !lab.ping("cn", Addr.vm.home6, count: 2), "HoA traffic got through with matd dead")
        try crashCapture.stop()
        let leaked = try crashCapture.packets().filter { packet in
            packet.addresses.contains { address in Addr.homePrefixes.contains { address.hasPrefix($0) } }
        }
        #expect(leaked.isEmpty, "HoAs on the wire while matd was dead:\n\(sample(leaked))")

        // A new matd takes over the stale device and table and works.
        try lab.startMatd("vm")
        #expect(try lab.ping("vm", Addr.cn.home4))
        #expect(try lab.ping("cn", Addr.vm.home6))
        try lab.killMatd("vm")

        // matd cleanup removes the leftovers, and then finds nothing more.
        let config = lab.path("vm.conf")
        let cleanup = try lab.exec("vm", LabPaths.matd, "cleanup", "--config", config)
        #expect(cleanup.contains("removed nftables table netdev matd_mat0"), "\(cleanup)")
        #expect(cleanup.contains("removed TUN device mat0"), "\(cleanup)")
        #expect(cleanup.contains("removed rule pref 7540 to 198.51.100.0/24 iif lo lookup 7540"), "\(cleanup)")
        let afterCleanup = try lab.hostState("vm")
        #expect(stateDifferences(before, afterCleanup).isEmpty, "after kill -9 and cleanup: \(stateDifferences(before, afterCleanup))")
        let again = try lab.exec("vm", LabPaths.matd, "cleanup", "--config", config)
        #expect(again.contains("nothing to clean up"), "\(again)")
        #expect(try forwarding.map { try lab.sysctl("vm", $0) } == forwardingBefore)
    }

    /// SIGTERM stops matd without an error line, with the kernel fast path on and off, and
    /// its table goes. The table is owned by matd's nftables socket (`flags owner`); stop
    /// deleted it by adding it again without the flag first, which the kernel refuses
    /// ("removing the kernel fast path table failed ... Operation not supported").
    @Test func stopLogsNoErrorWithTheFastPathOnAndOff() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.startMatd("cn")
        let fastTable = "table inet \(KernelFastPath.tableName(tun: "mat0"))"
        for setting in ["on", "off"] {
            try lab.startMatd("vm", config: lab.writeConfig("vm", adding: "kernel-fast-path = \(setting)"))
            #expect(try lab.ping("vm", Addr.cn.home4), "kernel-fast-path = \(setting)")
            if setting == "on" {
                try waitUntil("\(fastTable) in the VM node", seconds: 20) {
                    try lab.exec("vm", "nft", "list", "tables").contains(fastTable)
                }
            }
            let running = lab.matdLog("vm")
            let stopped = try lab.stopMatd("vm")
            let atStop = String(stopped.stderr.dropFirst(running.count))
            #expect(stopped.status == 0, "kernel-fast-path = \(setting): \(stopped.summary)")
            #expect(!atStop.contains("failed") && !atStop.contains("not supported"), "kernel-fast-path = \(setting), at stop:\n\(atStop)")
            #expect(try !lab.exec("vm", "nft", "list", "tables").contains(fastTable), "kernel-fast-path = \(setting)")
        }
    }

    // MARK: configuration and control

    @Test func checkConfigNamesLineAndKeyAndTouchesNothing() throws {
        let lab = try Lab()
        defer { lab.close() }
        let before = try lab.hostState("vm")
        let good = try lab.writeConfig("vm")
        let accepted = try lab.run("vm", [LabPaths.matd, "check-config", good])
        #expect(accepted.succeeded && accepted.stdout.contains("ok"), "\(accepted.summary)")

        let text = try String(contentsOfFile: good, encoding: .utf8)
        let cases: [(find: String, replace: String, key: String)] = [
            ("uplink = eth0", "uplnk = eth0", "uplnk"),
            ("home-address = 198.51.100.10", "home-address = 198.51.100.300", "home-address"),
            ("domain-prefix = 2001:db8:100::/64", "domain-prefix = 2001:db8:100::/129", "domain-prefix"),
            ("mobile-address = 192.0.2.130", "mobile-address = 192.0.2", "mobile-address"),
        ]
        for (index, bad) in cases.enumerated() {
            let lines = text.components(separatedBy: "\n")
            guard let line = lines.firstIndex(of: bad.find) else {
                Issue.record("the lab config has no line \(bad.find)")
                continue
            }
            var edited = lines
            edited[line] = bad.replace
            let file = lab.path("bad\(index).conf")
            try edited.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
            let result = try lab.run("vm", [LabPaths.matd, "check-config", file])
            let message = result.stdout + result.stderr
            #expect(!result.succeeded, "check-config accepted \(bad.replace)")
            #expect(message.contains("line \(line + 1)") && message.contains(bad.key),
                    "\(bad.replace): the message does not name line \(line + 1) and \(bad.key): \(message)")
            // `matd run` with the same file refuses it before touching the host.
            let run = try lab.run("vm", [LabPaths.matd, "run", "--config", file], timeout: 20)
            #expect(!run.succeeded && !run.signalled, "matd run accepted \(bad.replace)")
        }
        let missing = try lab.run("vm", [LabPaths.matd, "check-config", lab.path("no-such.conf")])
        #expect(!missing.succeeded && (missing.stdout + missing.stderr).contains("no-such.conf"))
        let after = try lab.hostState("vm")
        #expect(stateDifferences(before, after).isEmpty, "check-config changed the host: \(stateDifferences(before, after))")
    }

    @Test func matctlReportsStatusPeersAndStatsAsJSON() throws {
        let lab = try Lab()
        defer { lab.close() }
        // The engine's counters are checked below: the traffic must go through it.
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: "kernel-fast-path = off")) }
        for family in Addr.Family.allCases {
            #expect(try lab.ping("vm", Addr.cn.home(family), count: 5))
            #expect(try lab.ping("cn", Addr.vm.home(family), count: 5))
            try lab.udpEcho(client: "vm", server: "cn", address: Addr.cn.home(family), count: 20)
        }
        usleep(300_000)  // counters are published at least every 100 ms

        for node in ["vm", "cn"] {
            let me = Addr.node(node)
            let peer = Addr.node(node == "vm" ? "cn" : "vm")
            let statusText = try lab.matctl(node, "status", "--json")
            let status = try #require(try JSONSerialization.jsonObject(with: Data(statusText.utf8)) as? [String: Any])
            #expect(status["homeAddresses"] as? [String] == [me.home4, me.home6], "\(statusText)")
            #expect(status["mobileAddresses"] as? [String] == [me.mobile4, me.mobile6], "\(statusText)")
            #expect(status["uplinks"] as? [String] == ["eth0"], "\(statusText)")
            #expect(status["domainPrefixes"] as? [String] == ["198.51.100.0/24", "2001:db8:100::/64"], "\(statusText)")
            #expect(status["tunDevice"] as? String == "mat0", "\(statusText)")
            #expect(status["peerCount"] as? Int == 2, "\(statusText)")
            _ = try JSONDecoder().decode(StatusReport.self, from: Data(statusText.utf8))

            let peersText = try lab.matctl(node, "peers", "--json")
            let peers = try #require(try JSONSerialization.jsonObject(with: Data(peersText.utf8)) as? [[String: Any]])
            var preferred: [String: String] = [:]
            for entry in peers {
                if let home = entry["homeAddress"] as? String { preferred[home] = entry["preferred"] as? String }
            }
            #expect(preferred == [peer.home4: peer.mobile4, peer.home6: peer.mobile6], "\(peersText)")
            _ = try JSONDecoder().decode([PeerReport].self, from: Data(peersText.utf8))

            let statsText = try lab.matctl(node, "stats", "--json")
            let stats = try #require(try JSONSerialization.jsonObject(with: Data(statsText.utf8)) as? [String: Any])
            // Each node sent and received at least 20 echo requests/replies and 20 datagrams.
            #expect(counter(stats, "outboundPackets") >= 40, "\(statsText)")
            #expect(counter(stats, "inboundPackets") >= 40, "\(statsText)")
            #expect(counter(stats, "outboundBytes") >= 40 * 84, "\(statsText)")
            #expect(counter(stats, "inboundBytes") >= 40 * 84, "\(statsText)")
            #expect((stats["drops"] as? [String: Any])?.isEmpty == false, "every drop reason is listed: \(statsText)")
            #expect(drops(stats).isEmpty, "\(node) dropped: \(drops(stats))")
            _ = try JSONDecoder().decode(StatsReport.self, from: Data(statsText.utf8))
        }

        // Once matd is gone, matctl says so and fails.
        try lab.stopMatd("vm")
        let gone = try runCommand([LabPaths.matctl, "status", "--json", "--socket", lab.socket("vm")], timeout: 20)
        #expect(!gone.succeeded && gone.stderr.contains("cannot reach matd"), "\(gone.summary)")
    }
}

// MARK: helpers

/// The traffic every datapath test runs, for both families: a TCP transfer of `file` for
/// each (who opens, who sends) pair, a UDP echo exchange each way and ICMP echo each way.
/// The applications must see only HoAs.
func trafficMatrix(_ lab: Lab, file: String) throws {
    for family in Addr.Family.allCases {
        for (opener, sender) in [("vm", "vm"), ("vm", "cn"), ("cn", "cn"), ("cn", "vm")] {
            let listener = opener == "vm" ? "cn" : "vm"
            let exchange = try lab.tcpTransfer(listener: listener, address: Addr.node(listener).home(family),
                                               connector: opener, sender: sender, file: file)
            let openerHome = Addr.node(opener).home(family)
            #expect(exchange.listenerSawPeer == openerHome, "\(listener) saw \(exchange.listenerSawPeer), not \(openerHome)")
            #expect(exchange.connectorLocal == openerHome, "\(opener) sent from \(exchange.connectorLocal), not \(openerHome)")
        }
        for (client, server) in [("vm", "cn"), ("cn", "vm")] {
            let exchange = try lab.udpEcho(client: client, server: server, address: Addr.node(server).home(family))
            #expect(exchange.listenerSawPeer == Addr.node(client).home(family), "\(server) saw \(exchange.listenerSawPeer)")
        }
        #expect(try lab.ping("vm", Addr.cn.home(family)), "ping vm -> cn \(family)")
        #expect(try lab.ping("cn", Addr.vm.home(family)), "ping cn -> vm \(family)")
    }
}

func counter(_ stats: [String: Any], _ key: String) -> UInt64 {
    (stats[key] as? NSNumber)?.uint64Value ?? 0
}

/// The non-zero drop counters.
func drops(_ stats: [String: Any]) -> [String: UInt64] {
    var result: [String: UInt64] = [:]
    for (reason, value) in stats["drops"] as? [String: Any] ?? [:] {
        if let count = (value as? NSNumber)?.uint64Value, count > 0 { result[reason] = count }
    }
    return result
}

func sample(_ packets: [CapturedPacket]) -> String {
    packets.prefix(8).map(\.description).joined(separator: "\n")
}
