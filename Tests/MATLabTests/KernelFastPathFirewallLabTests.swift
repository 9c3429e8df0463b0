#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATBPF
import MATNode
import Testing

/// The kernel fast path and a host firewall (docs/datapath.md, "Differences for a host
/// firewall"): its inbound packets come from the uplink, marked `0x10000000`. An input
/// chain that drops by default without accepting the mark would drop a peer's new
/// connections to the HoA; matd finds it at start, says which rule to add (in its log and
/// in `matctl doctor`), and keeps that family's inbound with the engine, so the flow still
/// works. With the rule, the fast path carries inbound too. Likewise a strict IPv4
/// `rp_filter` on the uplink, which would drop the rewritten packets, keeps IPv4 inbound
/// with the engine (docs/datapath.md, "Inbound"). On nftables or on the BPF datapath
/// (``LabFastPath``), as KernelFastPathLabTests.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct KernelFastPathFirewallLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    let fast = KernelFastPathLabTests()

    /// docs/deploy.md's node firewall as it was before the fast path: input policy drop,
    /// HoA traffic accepted from `mat0` only.
    static let engineOnlyFirewall = """
        add table inet hostfw { chain input { type filter hook input priority 0; policy drop; \
        ct state established,related accept; iifname "lo" accept; meta l4proto { icmp, ipv6-icmp } accept; \
        udp dport { 7540, 7541 } accept; iifname "mat0" accept; }; }
        """

    /// A TCP connection from the CN to the VM's HoA, each family (the connection a
    /// firewall accepting only `mat0` dropped), bytes compared.
    func inboundConnections(_ lab: Lab, file: String) throws {
        for family in Addr.Family.allCases {
            try lab.tcpTransfer(listener: "vm", address: vm.home(family), connector: "cn", sender: "cn", file: file)
        }
    }

    /// The inbound connections of each family (``inboundConnections``) went through the
    /// kernel fast path: its inbound counters grew by more than the transfers' 4 MB.
    func expectInboundOnTheFastPath(_ lab: Lab, file: String) throws {
        let before = try lab.fastPathCounters("vm")
        try inboundConnections(lab, file: file)
        let after = try lab.fastPathCounters("vm")
        for family in ["4", "6"] {
            let moved = after["in\(family)_bytes", default: 0] - before["in\(family)_bytes", default: 0]
            #expect(moved > 4_000_000, "in\(family): \(before) -> \(after)\n\(fast.show(lab, "vm"))")
        }
    }

    /// The inbound bytes the VM's engine carried for the inbound connections
    /// (``inboundConnections``), polled until at least `bytes` (or 10 s).
    func inboundThroughEngine(_ lab: Lab, file: String, atLeast bytes: UInt64) throws -> UInt64 {
        let before = counter(try lab.stats("vm"), "inboundBytes")
        try inboundConnections(lab, file: file)
        let deadline = Date().addingTimeInterval(10)
        var now = counter(try lab.stats("vm"), "inboundBytes")
        while now - before < bytes && Date() < deadline {
            usleep(100_000)
            now = counter(try lab.stats("vm"), "inboundBytes")
        }
        return now - before
    }

    /// The device of `node`'s IPv4 default route: its uplink.
    func uplink(_ lab: Lab, _ node: String) throws -> String {
        let words = try lab.exec(node, "ip", "-o", "-4", "route", "show", "default").split(separator: " ")
        return try #require(words.drop { $0 != "dev" }.dropFirst().first.map(String.init))
    }

    func doctor(_ lab: Lab, config: String) throws -> CommandResult {
        try runCommand(lab.inNode("vm", [LabPaths.matctl, "doctor", "--config", config, "--socket", lab.socket("vm")]),
                       timeout: 60)
    }

    @Test func aDroppingInputChainKeepsInboundWithTheEngineUntilItAcceptsTheMark() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.exec("vm", "nft", Self.engineOnlyFirewall)
        let config = try lab.writeConfig("vm", adding: KernelFastPathLabTests.on)
        try lab.startMatd("vm", config: config)
        try lab.startMatd("cn", config: lab.writeConfig("cn", adding: KernelFastPathLabTests.on))
        let fix = "nft 'insert rule inet hostfw input meta mark & 0x10000000 == 0x10000000 accept'"
        #expect(lab.matdLog("vm").contains("input chain inet hostfw input drops by default"), "\(lab.matdLog("vm"))")
        #expect(lab.matdLog("vm").contains("Allow it with: \(fix)"), "\(lab.matdLog("vm"))")
        #expect(!lab.matdLog("cn").contains("input chain"), "\(lab.matdLog("cn"))")
        // Outbound still takes the fast path; inbound the engine.
        #expect(try fast.waitForFastPath(lab, "vm", peers: 2), "\(fast.show(lab, "vm"))")
        #expect(try lab.matctl("vm", "status").contains("inbound IPv4 and IPv6 through the engine"), "\(fast.show(lab, "vm"))")

        let file = try lab.randomFile("payload", megabytes: 4)
        let viaEngine = try inboundThroughEngine(lab, file: file, atLeast: 8_000_000)
        #expect(viaEngine >= 8_000_000, "the engine carried \(viaEngine) inbound bytes\n\(fast.show(lab, "vm"))")
        let fenced = try lab.fastPathCounters("vm")
        #expect(fenced["in4_packets", default: 0] == 0 && fenced["in6_packets", default: 0] == 0, "\(fenced)")
        #expect(fenced["out4_packets", default: 0] > 0 && fenced["out6_packets", default: 0] > 0, "\(fenced)")

        // matctl doctor says the same, and its fix, run as printed, is the documented rule.
        let warned = try doctor(lab, config: config)
        #expect(warned.stdout.contains("warning  input policy: inet hostfw input drops the kernel fast path's packets"),
                "\(warned.summary)")
        let line = try #require(warned.stdout.split(separator: "\n").first { $0.contains("fix: nft 'insert rule inet hostfw input") })
        let command = String(line.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces)
        #expect(command == fix)
        try lab.exec("vm", "sh", "-c", command)
        let fixed = try doctor(lab, config: config)
        #expect(fixed.stdout.contains("ok       input policy: "), "\(fixed.summary)")

        // Restarted with the rule: the fast path carries inbound too, and the firewall lets it in.
        try lab.stopMatd("vm")
        try lab.startMatd("vm", config: config)
        #expect(!lab.matdLog("vm").contains("input chain"), "\(lab.matdLog("vm"))")
        #expect(try fast.waitForFastPath(lab, "vm", peers: 2), "\(fast.show(lab, "vm"))")
        #expect(try !lab.matctl("vm", "status").contains("through the engine"))
        try expectInboundOnTheFastPath(lab, file: file)
        #expect(drops(try lab.stats("vm")).isEmpty, "\(fast.show(lab, "vm"))")
    }

    /// Polls `node`'s `matctl status` until `condition` holds for it (matd reads the host
    /// firewall every 5 s; generous for a loaded machine).
    func waitForStatus(_ lab: Lab, _ node: String, timeout: Double = 40, _ condition: (String) -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(try lab.matctl(node, "status")) { return true }
            usleep(250_000)
        }
        return false
    }

    /// A firewall loaded while matd runs (ufw enabled, Docker started): matd sees the input
    /// chain that drops the fast path's packets within seconds, moves inbound to the engine
    /// (new connections to the HoA still work) and, once the printed rule is in, back to the
    /// fast path, without a restart.
    @Test func aFirewallLoadedAfterStartIsSeenAndItsFixToo() throws {
        let lab = try Lab()
        defer { lab.close() }
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: KernelFastPathLabTests.on)) }
        #expect(try fast.waitForFastPath(lab, "vm", peers: 2), "\(fast.show(lab, "vm"))")
        #expect(try !lab.matctl("vm", "status").contains("through the engine"))

        try lab.exec("vm", "nft", Self.engineOnlyFirewall)
        #expect(try waitForStatus(lab, "vm") { $0.contains("inbound IPv4 and IPv6 through the engine") }, "\(fast.show(lab, "vm"))")
        let fix = "nft 'insert rule inet hostfw input meta mark & 0x10000000 == 0x10000000 accept'"
        #expect(lab.matdLog("vm").contains("input chain inet hostfw input drops by default"), "\(lab.matdLog("vm"))")
        #expect(lab.matdLog("vm").contains("Allow it with: \(fix)"), "\(lab.matdLog("vm"))")
        let file = try lab.randomFile("payload", megabytes: 4)
        let fencedBefore = try lab.fastPathCounters("vm")
        let viaEngine = try inboundThroughEngine(lab, file: file, atLeast: 8_000_000)
        #expect(viaEngine >= 8_000_000, "the engine carried \(viaEngine) inbound bytes\n\(fast.show(lab, "vm"))")
        let fenced = try lab.fastPathCounters("vm")
        for family in ["4", "6"] {
            #expect(fenced["in\(family)_packets", default: 0] == fencedBefore["in\(family)_packets", default: 0], "\(fenced)")
        }

        try lab.exec("vm", "sh", "-c", fix)
        #expect(try waitForStatus(lab, "vm") { $0.contains("kernel fast path: on") && !$0.contains("through the engine") },
                "\(fast.show(lab, "vm"))")
        #expect(lab.matdLog("vm").contains("input chain inet hostfw input no longer drops"), "\(lab.matdLog("vm"))")
        try expectInboundOnTheFastPath(lab, file: file)
        #expect(drops(try lab.stats("vm")).isEmpty, "\(fast.show(lab, "vm"))")
    }

    /// The firewall as iptables (iptables-nft, Debian's default `iptables`) leaves it, ufw
    /// style: INPUT and FORWARD policy DROP, HoA traffic accepted from `mat0`. matd reads
    /// iptables-nft's chains like nft's, fences IPv4 inbound only (no ip6tables rules), and
    /// prints iptables commands; run as printed they fix both chains while matd runs.
    @Test func anIptablesFirewallIsReadAndItsPrintedFixesWork() throws {
        let lab = try Lab()
        defer { lab.close() }
        let rules = ["-P INPUT DROP", "-P FORWARD DROP", "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                     "-A INPUT -i lo -j ACCEPT", "-A INPUT -p icmp -j ACCEPT", "-A INPUT -p udp --dport 7540:7541 -j ACCEPT",
                     "-A INPUT -i mat0 -j ACCEPT"]
        try lab.exec("vm", "sh", "-c", rules.map { "iptables \($0)" }.joined(separator: " && "))
        let listing = try lab.exec("vm", "nft", "list", "table", "ip", "filter")
        #expect(listing.contains("policy drop") && listing.contains("iifname \"mat0\""), "not iptables-nft?\n\(listing)")
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: KernelFastPathLabTests.on)) }
        let inputFix = "iptables -I INPUT -m mark --mark 0x10000000/0x10000000 -j ACCEPT"
        let forwardFix = "iptables -I FORWARD -i mat0 -j ACCEPT"
        #expect(lab.matdLog("vm").contains("input chain ip filter INPUT drops by default"), "\(lab.matdLog("vm"))")
        #expect(lab.matdLog("vm").contains("Allow it with: \(inputFix)"), "\(lab.matdLog("vm"))")
        #expect(lab.matdLog("vm").contains("forward chain ip filter FORWARD drops by default"), "\(lab.matdLog("vm"))")
        #expect(lab.matdLog("vm").contains("Allow it with: \(forwardFix)"), "\(lab.matdLog("vm"))")
        #expect(try fast.waitForFastPath(lab, "vm", peers: 2), "\(fast.show(lab, "vm"))")
        #expect(try lab.matctl("vm", "status").contains("; inbound IPv4 through the engine"), "\(fast.show(lab, "vm"))")

        // IPv4 inbound through the engine (accepted from mat0), IPv6 on the fast path.
        let file = try lab.randomFile("payload", megabytes: 4)
        let viaEngine = try inboundThroughEngine(lab, file: file, atLeast: 4_000_000)
        #expect(viaEngine >= 4_000_000 && viaEngine < 6_000_000, "the engine carried \(viaEngine) inbound bytes (IPv4 only)")
        let fenced = try lab.fastPathCounters("vm")
        #expect(fenced["in4_packets", default: 0] == 0 && fenced["in6_bytes", default: 0] > 4_000_000, "\(fenced)")

        // Both fixes as printed, while matd runs: seen within seconds, IPv4 inbound back on the fast path.
        for fix in [inputFix, forwardFix] { try lab.exec("vm", "sh", "-c", fix) }
        #expect(try waitForStatus(lab, "vm") { $0.contains("kernel fast path: on") && !$0.contains("through the engine") },
                "\(fast.show(lab, "vm"))")
        #expect(lab.waitForLog("vm", "forward chain ip filter FORWARD no longer drops", timeout: 40), "\(lab.matdLog("vm"))")
        try inboundConnections(lab, file: file)
        let after = try lab.fastPathCounters("vm")
        #expect(after["in4_bytes", default: 0] > 4_000_000, "\(after)\n\(fast.show(lab, "vm"))")
        #expect(drops(try lab.stats("vm")).isEmpty, "\(fast.show(lab, "vm"))")
    }

    /// Legacy iptables (x_tables: iptables-legacy, invisible to nft), both families, ufw
    /// style: INPUT policy DROP (and IPv4 FORWARD), HoA traffic accepted from `mat0`. matd
    /// reads the chains from the kernel as nft's, fences IPv4 and IPv6 inbound, and it and
    /// `matctl doctor` print iptables-legacy commands; run as doctor prints them, while matd
    /// runs, they fix all three chains. Everything is in the lab's namespace (its x_tables
    /// go with it, also when the test fails).
    @Test func aLegacyIptablesFirewallIsReadAndItsPrintedFixesWork() throws {
        let lab = try Lab()
        defer { lab.close() }
        let common = ["-P INPUT DROP", "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-A INPUT -i lo -j ACCEPT",
                      "-A INPUT -p udp --dport 7540:7541 -j ACCEPT", "-A INPUT -i mat0 -j ACCEPT"]
        let v4 = common + ["-P FORWARD DROP", "-A INPUT -p icmp -j ACCEPT"]
        let v6 = common + ["-A INPUT -p ipv6-icmp -j ACCEPT"]
        try lab.exec("vm", "sh", "-c", (v4.map { "iptables-legacy \($0)" } + v6.map { "ip6tables-legacy \($0)" }).joined(separator: " && "))
        #expect(try lab.exec("vm", "nft", "list", "tables").isEmpty, "not legacy iptables?")
        let config = try lab.writeConfig("vm", adding: KernelFastPathLabTests.on)
        try lab.startMatd("vm", config: config)
        try lab.startMatd("cn", config: lab.writeConfig("cn", adding: KernelFastPathLabTests.on))
        let fixes = ["iptables-legacy -I INPUT -m mark --mark 0x10000000/0x10000000 -j ACCEPT",
                     "ip6tables-legacy -I INPUT -m mark --mark 0x10000000/0x10000000 -j ACCEPT",
                     "iptables-legacy -I FORWARD -i mat0 -j ACCEPT"]
        let log = lab.matdLog("vm")
        for expected in ["input chain ip filter INPUT (legacy iptables) drops by default", "Allow it with: \(fixes[0])",
                         "input chain ip6 filter INPUT (legacy iptables) drops by default", "Allow it with: \(fixes[1])",
                         "forward chain ip filter FORWARD (legacy iptables) drops by default", "Allow it with: \(fixes[2])"] {
            #expect(log.contains(expected), "\(expected)\n\(log)")
        }
        #expect(!log.contains("ip6 filter FORWARD") && !log.contains("could not be read"), "\(log)")
        #expect(!lab.matdLog("cn").contains("legacy"), "\(lab.matdLog("cn"))")
        #expect(try fast.waitForFastPath(lab, "vm", peers: 2), "\(fast.show(lab, "vm"))")
        #expect(try lab.matctl("vm", "status").contains("inbound IPv4 and IPv6 through the engine"), "\(fast.show(lab, "vm"))")

        // matctl doctor finds the same three chains; its fixes, run as printed, are the ones above.
        let warned = try doctor(lab, config: config)
        #expect(warned.stdout.contains("PROBLEM  forward policy: ip filter FORWARD (legacy iptables) drops what mat0 forwards"),
                "\(warned.summary)")
        for family in ["ip", "ip6"] {
            #expect(warned.stdout.contains("warning  input policy: \(family) filter INPUT (legacy iptables) drops the kernel fast "
                                           + "path's packets"), "\(warned.summary)")
        }
        let printed = warned.stdout.split(separator: "\n").filter { $0.contains("fix: ") && $0.contains("legacy") }
            .map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) }
        #expect(Set(printed) == Set(fixes), "\(warned.summary)")
        for fix in printed { try lab.exec("vm", "sh", "-c", fix) }
        #expect(try waitForStatus(lab, "vm") { $0.contains("kernel fast path: on") && !$0.contains("through the engine") },
                "\(fast.show(lab, "vm"))")
        #expect(lab.waitForLog("vm", "forward chain ip filter FORWARD (legacy iptables) no longer drops", timeout: 40),
                "\(lab.matdLog("vm"))")
        let fixed = try doctor(lab, config: config)
        #expect(fixed.stdout.contains("ok       forward policy: ") && fixed.stdout.contains("ok       input policy: "),
                "\(fixed.summary)")
        let file = try lab.randomFile("payload", megabytes: 4)
        try expectInboundOnTheFastPath(lab, file: file)
        #expect(drops(try lab.stats("vm")).isEmpty, "\(fast.show(lab, "vm"))")
    }

    /// A chain of one family that ends in a drop (policy accept) fences that family only;
    /// an accept for the uplink counts as accepting the fast path's packets.
    @Test func aChainEndingInADropFencesItsFamilyOnly() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.exec("vm", "nft", """
            add table ip hostfw4 { chain input { type filter hook input priority 0; \
            ct state established,related accept; iifname "mat0" accept; udp dport { 7540, 7541 } accept; \
            icmp type echo-request accept; counter drop; }; }
            """)
        try lab.startMatd("vm", config: lab.writeConfig("vm", adding: KernelFastPathLabTests.on))
        try lab.startMatd("cn", config: lab.writeConfig("cn", adding: KernelFastPathLabTests.on))
        #expect(lab.matdLog("vm").contains("input chain ip hostfw4 input drops by default"), "\(lab.matdLog("vm"))")
        #expect(try fast.waitForFastPath(lab, "vm", peers: 2), "\(fast.show(lab, "vm"))")
        #expect(try lab.matctl("vm", "status").contains("; inbound IPv4 through the engine"), "\(fast.show(lab, "vm"))")
        let file = try lab.randomFile("payload", megabytes: 4)
        try inboundConnections(lab, file: file)
        let counters = try lab.fastPathCounters("vm")
        #expect(counters["in4_packets", default: 0] == 0 && counters["in6_bytes", default: 0] > 4_000_000, "\(counters)")
        try lab.stopMatd("vm")

        // Accepting everything from the uplink lets the fast path's packets in as well.
        let uplink = try uplink(lab, "vm")
        try lab.exec("vm", "nft", "insert rule ip hostfw4 input iifname \"\(uplink)\" accept")
        try lab.startMatd("vm", config: lab.writeConfig("vm", adding: KernelFastPathLabTests.on))
        #expect(!lab.matdLog("vm").contains("input chain"), "\(lab.matdLog("vm"))")
    }

    /// Strict reverse-path filtering on the uplink (`rp_filter` 1) would drop an IPv4
    /// packet rewritten to come from a peer's HoA (routed into the TUN device): matd
    /// leaves IPv4 inbound to the engine there, IPv6 and outbound stay on the fast path,
    /// and a connection to the HoA works in both families.
    @Test func strictReversePathFilteringKeepsIPv4InboundWithTheEngine() throws {
        let lab = try Lab()
        defer { lab.close() }
        let uplink = try uplink(lab, "vm")
        try lab.exec("vm", "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.\(uplink).rp_filter=1")
        try lab.startMatd("vm", config: lab.writeConfig("vm", adding: KernelFastPathLabTests.on))
        try lab.startMatd("cn", config: lab.writeConfig("cn", adding: KernelFastPathLabTests.on))
        #expect(try fast.waitForFastPath(lab, "vm", peers: 2), "\(fast.show(lab, "vm"))")
        #expect(try fast.waitForFastPath(lab, "cn", peers: 2), "\(fast.show(lab, "cn"))")
        if LabFastPath.current == .nftables {
            let chain = try lab.exec("vm", "nft", "list", "table", "inet", "matd_mat0_fast")
            #expect(!chain.contains("ip daddr \(vm.mobile4)") && chain.contains("ip6 daddr \(vm.mobile6)"), "\(chain)")
        } else {
            // IPv6's inbound program alone (IPv4's would be the second).
            #expect(try lab.attachedPrograms("vm", uplink, .tcxIngress) == 1, "inbound BPF programs on \(uplink)")
        }
        let file = try lab.randomFile("payload", megabytes: 4)
        let viaEngine = try inboundThroughEngine(lab, file: file, atLeast: 4_000_000)
        #expect(viaEngine >= 4_000_000 && viaEngine < 6_000_000, "the engine carried \(viaEngine) inbound bytes (IPv4 only)")
        let counters = try lab.fastPathCounters("vm")
        #expect(counters["in4_packets", default: 0] == 0 && counters["in6_bytes", default: 0] > 4_000_000, "\(counters)")
        #expect(counters["out4_packets", default: 0] > 0, "outbound IPv4 is not affected: \(counters)")
        #expect(drops(try lab.stats("vm")).isEmpty, "\(fast.show(lab, "vm"))")
    }
}
