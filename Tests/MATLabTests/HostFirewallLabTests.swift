#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// Why matd reports a host firewall's forward drop instead of adding an accept of its own
/// (docs/datapath.md, "Host firewalls"): an accept ends only the base chain it is in; the
/// packet still meets every other base chain at the hook, nftables' and legacy
/// iptables' alike, and a drop in any of them is final. So a "scoped accept" for `mat0`
/// in matd's own table, at a priority before the filter hook's, would change nothing.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct HostFirewallLabTests {
    let cn = Addr.node("cn")

    /// What the engine writes out of `mat0` is forwarded (the fast path off). A forward
    /// policy of DROP, from iptables-nft (Docker, ufw) and then from legacy iptables, drops
    /// it although a table of matd's kind accepts `iifname "mat0"` earlier in the hook; the
    /// rule matd prints, put into the chain that drops, lets it through.
    @Test func anAcceptInAnotherTableDoesNotOverrideAForwardDrop() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.exec("vm", "nft", """
            add table inet scoped { chain forward { type filter hook forward priority -300; iifname "mat0" counter accept; }; }
            """)
        try lab.exec("vm", "iptables", "-P", "FORWARD", "DROP")
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: "kernel-fast-path = off")) }
        #expect(lab.matdLog("vm").contains("forward chain ip filter FORWARD drops by default"), "\(lab.matdLog("vm"))")
        #expect(try !lab.ping("vm", cn.home4, count: 2), "iptables-nft's drop let the engine's packets through")
        let accepted = try lab.exec("vm", "nft", "list", "chain", "inet", "scoped", "forward")
        #expect(!accepted.contains("packets 0 "), "the early accept never saw the packets:\n\(accepted)")

        // The same with legacy iptables' FORWARD DROP instead of iptables-nft's.
        try lab.exec("vm", "iptables", "-P", "FORWARD", "ACCEPT")
        try lab.exec("vm", "iptables-legacy", "-P", "FORWARD", "DROP")
        let legacyFix = "iptables-legacy -I FORWARD -i mat0 -j ACCEPT"
        #expect(lab.waitForLog("vm", "Allow it with: \(legacyFix)", timeout: 40), "\(lab.matdLog("vm"))")
        #expect(try !lab.ping("vm", cn.home4, count: 2), "legacy iptables' drop let the engine's packets through")

        try lab.exec("vm", "sh", "-c", legacyFix)
        #expect(try lab.ping("vm", cn.home4, count: 2), "after \(legacyFix)")
        #expect(lab.waitForLog("vm", "forward chain ip filter FORWARD (legacy iptables) no longer drops", timeout: 40),
                "\(lab.matdLog("vm"))")
    }
}
