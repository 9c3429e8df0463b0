#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import Testing

/// The nftables IPv6 path (kernels before 6.17, forced here) with thousands of IPv6 peers
/// (issue 9, "Never blocks"): a peer change adds an element to its next hop's set; the
/// chain `out6` and its rules stay as they were.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct IPv6NextHopScaleLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// The CN holds 3,000 learned IPv6 peers (restored from its state file) on the forced
    /// nftables path, all behind its one gateway. The VM, a configured peer, moves to site B:
    /// the CN learns its new IPv6 MoA, which goes into the gateway's set while the chain
    /// keeps its rule (same handle), and IPv6 HoA traffic follows. Prints how long after the
    /// move the element was in; `MAT_NH6_BENCH_PEERS` sets another number of learned peers
    /// (docs/benchmarks.md).
    @Test func aPeerChangeWithThousandsOfIPv6PeersDoesNotRewriteTheChain() throws {
        let learnedPeers = ProcessInfo.processInfo.environment["MAT_NH6_BENCH_PEERS"].flatMap { Int($0) } ?? 3_000
        let lab = try Lab()
        defer { lab.close() }
        try lab.writeLearnedIPv6Peers(lab.path("cn-state"), count: learnedPeers)
        try lab.writeStaticPeerConfigurations("nh6", ipv6Peer: true) { node in
            ["kernel-fast-path = off"] + (node == "cn" ? ["ipv6-forwarding = nftables"] : [])
        }
        try lab.startMatd("vm", config: lab.path("vm-nh6.conf"))
        try lab.startMatd("cn", config: lab.path("cn-nh6.conf"), timeout: 120)
        #expect(learnedPeers == 0 || lab.matdLog("cn").contains("restored \(learnedPeers) learned peer(s)"), "\(lab.matdLog("cn"))")
        #expect(lab.matdLog("cn").contains("IPv6 outbound nftables"), "\(lab.matdLog("cn"))")
        #expect(try lab.ping("cn", vm.home6), "IPv6 HoA traffic before the move")

        let chainBefore = try lab.exec("cn", "nft", "-a", "list", "chain", "netdev", "matd_mat0", "out6")
        let rules = chainBefore.split(separator: "\n").filter { $0.contains("fwd ip6 to") }
        #expect(rules.count == 1 && rules[0].contains("ip6 saddr \(cn.mobile6) ip6 daddr @out6_h0 fwd ip6 to 2001:db8:c::1"),
                "\(chainBefore)")
        let setBefore = try lab.exec("cn", "nft", "list", "set", "netdev", "matd_mat0", "out6_h0")
        let last = "2001:db8:4001::\(String(learnedPeers - 1, radix: 16))"
        #expect(setBefore.contains(vm.mobile6) && (learnedPeers == 0 || setBefore.contains(last)), "the last learned peer is in")

        try lab.moveVM(to: "b")
        let start = Date()
        var inSet: Double?, inPeers4: Double?
        while (inSet == nil || inPeers4 == nil) && Date().timeIntervalSince(start) < 30 {
            // One element asked for: listing thousands would take longer than the change.
            if inSet == nil, try lab.run("cn", ["nft", "get", "element", "netdev", "matd_mat0", "out6_h0", "{ 2001:db8:b::10 }"]).succeeded {
                inSet = Date().timeIntervalSince(start)
            }
            // The IPv4 MoA's element (peers4) beside it, for comparison: its path was O(1) before.
            if inPeers4 == nil, try lab.run("cn", ["nft", "get", "element", "netdev", "matd_mat0", "peers4", "{ 203.0.113.10 }"]).succeeded {
                inPeers4 = Date().timeIntervalSince(start)
            }
            usleep(5_000)
        }
        let format = { (seconds: Double?) in seconds.map { String(format: "%.3f", $0) } ?? "-" }
        print("ipv6-next-hops: learned=\(learnedPeers) new_moa6_in_set_s=\(format(inSet)) new_moa4_in_set_s=\(format(inPeers4))")
        #expect(inSet != nil, "the VM's new MoA never reached the next hop's set: \(lab.matdLog("cn"))")
        #expect(try lab.exec("cn", "nft", "-a", "list", "chain", "netdev", "matd_mat0", "out6") == chainBefore,
                "the chain was rewritten")
        #expect(try lab.ping("cn", vm.home6) && lab.ping("vm", cn.home6), "IPv6 HoA traffic after the move")
    }
}
