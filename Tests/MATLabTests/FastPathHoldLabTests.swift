#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATNode
import Testing

/// A move's hold with the kernel fast path on (issue 9, docs/datapath.md "Kernel fast
/// path"): each peer goes back to the fast path at its own release, not when the last peer
/// the move held was released. On either datapath (``LabFastPath``: `MAT_LAB_FAST_PATH=bpf`
/// runs it on the BPF datapath, where the released peers are the outbound map's while the
/// hold is on).
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct FastPathHoldLabTests {
    let cn = Addr.node("cn")
    /// A configured peer of the VM whose traffic the router drops: it never answers the
    /// move's alert, so its hold lasts the alert's 9.4 s of retransmissions.
    static let deadHoA = "198.51.100.30", deadMoA = "192.0.2.140"
    /// The counter of what the datapath under test translated outbound: on the BPF
    /// datapath the programs' own, so nftables cannot pass for them.
    static let translatedOut = LabFastPath.current == .bpf ? "bpf_out4_packets" : "out4_packets"

    /// The VM, with the CN and the dead peer, moves while it pings the CN every 10 ms: the
    /// CN's IPv4 traffic is back on the kernel fast path (the datapath's `out4` counter rises,
    /// the engine's outbound one does not) within 3 s of the move, while the dead peer's
    /// hold still holds the family. Before, the family stayed with the engine until the
    /// dead peer's retransmissions ran out, 9.4 s after the move.
    @Test func aReleasedPeerIsBackOnTheFastPathWhileAnotherIsStillHeld() throws {
        let fast = KernelFastPathLabTests()
        let lab = try Lab()
        defer { lab.close() }
        try lab.exec("router", "nft", "add table inet deadpeer { chain forward { type filter hook forward priority 0; "
                     + "policy accept; ip daddr \(Self.deadMoA) drop; }; }")
        _ = try lab.startIMS()
        for node in ["vm", "cn"] {
            let config = try lab.writeIMSConfig(node)
            try lab.addToNodeSection(LabFastPath.current.setting, of: config)
            if node == "vm" {
                try (String(contentsOfFile: config, encoding: .utf8)
                     + "\n[peer]\nhome-address = \(Self.deadHoA)\nmobile-address = \(Self.deadMoA)\n")
                    .write(toFile: config, atomically: true, encoding: .utf8)
            }
            try lab.startMatd(node, config: config)
        }
        for node in ["vm", "cn"] {
            #expect(lab.waitForLog(node, "registered \(Addr.node(node).home4)"), "\(lab.matdLog(node))")
        }
        // The CN is learned at the pings' first packet; then both peers are on the fast path.
        let pings = try lab.spawn("vm", ["ping", "-q", "-i", "0.01", "-c", "1000", cn.home4])
        #expect(try fast.waitForFastPath(lab, "vm", peers: 2), "\(fast.show(lab, "vm"))")
        sleep(1)
        let before = try fast.fastCounters(lab, "vm")[Self.translatedOut, default: 0]
        #expect(before > 50, "the pings went on the fast path before the move: \(before)")
        let moved = MonotonicClock.seconds()
        try lab.moveVM(to: "b")
        // Polled every 100 ms: when the kernel's out4 counter rose by 20 pings since the
        // move, and what the engine sent outbound in the second after that.
        var backAfter: Double?
        var engineAtBack: UInt64 = 0
        var timeline: [String] = []
        while MonotonicClock.seconds() - moved < 6 {
            let out4 = try fast.fastCounters(lab, "vm")[Self.translatedOut, default: 0]
            let engine = counter(try lab.stats("vm"), "outboundPackets")
            let elapsed = MonotonicClock.seconds() - moved
            timeline.append(String(format: "%.2f s: out4 +%d engine %d", elapsed, out4 - before, engine))
            if backAfter == nil && out4 >= before + 20 {
                backAfter = elapsed
                engineAtBack = engine
            } else if let back = backAfter, elapsed > back + 1 {
                #expect(engine - engineAtBack < 10, "the engine still carried the CN's pings:\n\(timeline.joined(separator: "\n"))")
                break
            }
            usleep(100_000)
        }
        let shown = timeline.joined(separator: "\n") + "\n" + fast.show(lab, "vm")
        let back = try #require(backAfter, "the CN's traffic was not back on the fast path 6 s after the move:\n\(shown)")
        print("fast-path-hold: datapath=\(LabFastPath.current.rawValue) kernel_back_s=\(String(format: "%.2f", back))")
        #expect(back < 3, "back on the fast path \(back) s after the move\n\(timeline.joined(separator: "\n"))")
        _ = pings.wait(timeout: 30)
        // The dead peer never answered: the VM still has it, as configured.
        #expect(try lab.matctl("vm", "peers").contains(Self.deadHoA), "\(fast.show(lab, "vm"))")
    }
}
