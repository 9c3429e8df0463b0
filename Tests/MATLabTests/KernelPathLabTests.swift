#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATTestSupport
import Testing

/// IPv6 outbound on kernels without per-device `force_forwarding` (before Linux 6.17):
/// the nftables path, forced by `ipv6-forwarding = nftables` on this newer kernel so it
/// stays tested; the probe at start on a kernel whose sysctl is missing (hidden in a mount
/// namespace of its own, as on Debian 12 or RHEL 9); and the refusal when the forced path
/// cannot work.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct KernelPathLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// Both nodes forward IPv6 through nftables: HoA TCP both ways and ping both ways,
    /// with `force_forwarding` off; then the VM's IPv6 gateway changes (same MoA) and the
    /// old one goes away, and traffic follows the new next hop.
    @Test func ipv6HomeTrafficOverTheForcedNftablesPath() throws {
        let lab = try Lab()
        defer { lab.close() }
        for node in ["vm", "cn"] {
            // The engine's IPv6 path out of mat0 is under test, not the kernel fast path.
            try lab.startMatd(node, config: lab.writeConfig(node, adding: "ipv6-forwarding = nftables\nkernel-fast-path = off"))
            #expect(lab.matdLog(node).contains("IPv6 outbound nftables"), "\(lab.matdLog(node))")
            #expect(try lab.sysctl(node, "net.ipv6.conf.mat0.force_forwarding") == "0")
        }
        #expect(try outboundRule(lab, "vm", to: cn.mobile6)?.contains("ip6 saddr \(vm.mobile6) ip6 daddr @out6_h")
                == true)
        #expect(try outboundRule(lab, "vm", to: cn.mobile6)?.contains("fwd ip6 to 2001:db8:a::1 device \"eth0\"") == true)
        let file = try lab.randomFile("payload", megabytes: 20)
        try ipv6Traffic(lab, file: file)
        #expect(try lab.ping("vm", cn.home4) && lab.ping("cn", vm.home4), "IPv4 beside it")
        for node in ["vm", "cn"] {
            let stats = try lab.stats(node)
            #expect(counter(stats, "outboundBytes") > 20_000_000 && counter(stats, "inboundBytes") > 20_000_000, "\(stats)")
            #expect(drops(stats).isEmpty, "\(node) dropped packets: \(drops(stats))")
        }

        // A second router address on site A becomes the VM's gateway; the first goes away.
        try lab.exec("router", "ip", "-6", "addr", "add", "2001:db8:a::2/64", "dev", "br-a", "nodad")
        try lab.exec("vm", "ip", "-6", "route", "replace", "default", "via", "2001:db8:a::2", "dev", "eth0")
        #expect(lab.waitForLog("vm", "IPv6 next hops changed"), "\(lab.matdLog("vm"))")
        let followed = try outboundRule(lab, "vm", to: cn.mobile6)
        #expect(followed?.contains("fwd ip6 to 2001:db8:a::2 device") == true, "\(followed ?? "no rule")")
        try lab.exec("router", "ip", "-6", "addr", "del", "2001:db8:a::1/64", "dev", "br-a")
        try lab.exec("vm", "ip", "-6", "neigh", "flush", "dev", "eth0")
        try ipv6Traffic(lab, file: file, port: 5011)

        try lab.stopMatd("vm")
        #expect(try !lab.exec("vm", "nft", "list", "tables").contains("matd"), "tables left after stop")
    }

    /// On a kernel without `net.ipv6.conf.*.force_forwarding`: `auto` picks nftables and
    /// says why, and IPv6 HoA traffic flows; `sysctl` refuses to start with an error that
    /// names the sysctl, the kernel it needs and the setting to change, and leaves nothing.
    @Test func withoutTheSysctlAutoPicksNftablesAndSysctlRefuses() throws {
        let lab = try Lab()
        defer { lab.close() }
        let before = try lab.hostState("vm")
        let refused = try lab.run("vm", oldKernel(lab.writeConfig("vm", adding: "ipv6-forwarding = sysctl",
                                                                   file: "vm-sysctl.conf")), timeout: 30)
        #expect(!refused.succeeded)
        #expect(refused.stderr.contains("ipv6-forwarding = sysctl") && refused.stderr.contains("force_forwarding")
                && refused.stderr.contains("Linux 6.17") && refused.stderr.contains("ipv6-forwarding = auto"),
                "\(refused.stderr)")
        #expect(stateDifferences(before, try lab.hostState("vm")).isEmpty, "a refused start left changes behind")

        try lab.startMatd("cn")
        let daemon = try lab.spawn("vm", oldKernel(lab.writeConfig("vm")))
        #expect(try waitForControl(lab, daemon), "\(daemon.stderr)")
        #expect(daemon.stderr.contains("IPv6 outbound through nftables: net.ipv6.conf.mat0.force_forwarding cannot be set"),
                "\(daemon.stderr)")
        #expect(daemon.stderr.contains("IPv6 outbound nftables"), "\(daemon.stderr)")
        let file = try lab.randomFile("payload", megabytes: 5)
        try ipv6Traffic(lab, file: file)
        daemon.signal(SIGTERM)
        #expect(daemon.wait(timeout: 15).succeeded, "\(daemon.stderr)")
        #expect(stateDifferences(before, try lab.hostState("vm")).isEmpty)
    }

    /// Both nodes on the nftables path with the IMS; the VM moves to site B (its uplink
    /// replaced, a new MoA, a new gateway) under an IPv6 flow it sends to the CN: the VM's
    /// outbound chain follows to site B's router and the flow arrives whole.
    @Test func aMoveOnTheNftablesPathFollowsTheNewNextHop() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS(dualStack: true)
        for node in ["vm", "cn"] {
            let config = try lab.writeIMSConfig(node, dualStack: true)
            try lab.addToNodeSection("ipv6-forwarding = nftables", of: config)
            try lab.startMatd(node, config: config)
            let me = Addr.node(node)
            #expect(lab.waitForLog(node, "registered \(me.home6) -> \(me.mobile6) seq"), "\(lab.matdLog(node))")
        }
        let file = try lab.randomFile("moving", megabytes: 12)
        let flow = try PacedTransfer(lab, family: .v6, from: "vm", to: "cn", file: file, megabytesPerSecond: 4, port: 5012)
        sleep(1)
        try lab.moveVM(to: "b")
        try flow.finish()
        // The CN is a learned peer of the VM's (from the flow's first contact): its alert
        // goes in the move's own turn, not in the turn after.
        #expect(lab.matdLog("vm").range(of: #"ms after the reading, [1-9][0-9]* learned peer\(s\) [0-9.]+ ms after it"#,
                                         options: .regularExpression) != nil, "\(lab.matdLog("vm"))")
        let rule = try outboundRule(lab, "vm", to: cn.mobile6)
        #expect(rule?.contains("ip6 saddr 2001:db8:b::10 ip6 daddr @out6_h") == true
                && rule?.contains("fwd ip6 to 2001:db8:b::1 device \"eth0\"") == true, "\(rule ?? "no rule")")
        #expect(try lab.ping("vm", cn.home6) && lab.ping("cn", vm.home6), "ping after the move")
        #expect(try lab.sysctl("vm", "net.ipv6.conf.mat0.force_forwarding") == "0")
    }

    /// The rule of `node`'s chain `out6` whose next-hop set holds `peer`, if one does.
    private func outboundRule(_ lab: Lab, _ node: String, to peer: String) throws -> String? {
        let chain = try lab.exec(node, "nft", "list", "chain", "netdev", "matd_mat0", "out6")
        for rule in chain.split(separator: "\n") where rule.contains("fwd ip6 to") {
            guard let at = rule.range(of: "@out6_h") else { continue }
            let set = String(rule[rule.index(after: at.lowerBound)...].prefix { $0 != " " })
            let elements = try lab.exec(node, "nft", "list", "set", "netdev", "matd_mat0", set)
            if elements.range(of: "\\b\(peer)\\b", options: .regularExpression) != nil {
                return rule.trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }

    /// HoA TCP each way (the opener sends) and ping each way, over IPv6.
    private func ipv6Traffic(_ lab: Lab, file: String, port: Int = 5001) throws {
        for (opener, listener) in [("vm", "cn"), ("cn", "vm")] {
            let exchange = try lab.tcpTransfer(listener: listener, address: Addr.node(listener).home6,
                                               connector: opener, sender: opener, file: file, port: port)
            #expect(exchange.listenerSawPeer == Addr.node(opener).home6)
            #expect(try lab.ping(opener, Addr.node(listener).home6), "ping \(opener) -> \(listener)")
        }
    }

    /// matd run in a mount namespace of its own where /proc/sys/net/ipv6/conf is an empty
    /// directory: to matd the kernel has no per-device IPv6 sysctls, as before 6.17.
    private func oldKernel(_ config: String) -> [String] {
        ["unshare", "-m", "sh", "-c",
         "mount -t tmpfs none /proc/sys/net/ipv6/conf && exec \(LabPaths.matd) run --config \(config)"]
    }

    private func waitForControl(_ lab: Lab, _ daemon: Spawned) throws -> Bool {
        var answered = false
        _ = try poll(seconds: 20, every: 0.1) {
            guard daemon.isRunning else { return true }
            answered = try runCommand([LabPaths.matctl, "status", "--socket", lab.socket("vm")], timeout: 10).succeeded
            return answered
        }
        return answered
    }
}
