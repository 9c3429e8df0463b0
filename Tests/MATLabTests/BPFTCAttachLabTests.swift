#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import Testing

/// The BPF datapath attached the way kernels before 6.6 take it (docs/datapath.md, "The
/// BPF datapath"): `MATD_BPF_ATTACH=tc` makes matd put its programs in direct-action tc
/// filters on a clsact qdisc instead of tcx links. The programs translate HoA traffic
/// there as with tcx (their counters), matd says which attach it used, and stop leaves no
/// filter and no qdisc of ours; a clsact qdisc that was there before, and someone else's
/// filter on it, stay. After kill -9 the filters stay (tc filters outlive their process),
/// and the next matd replaces them rather than adding a second set; `matd cleanup` deletes
/// them.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct BPFTCAttachLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    let paths = KernelFastPathLabTests()
    static let tc = ["MATD_BPF_ATTACH": "tc"]

    func tc(_ lab: Lab, _ node: String, _ arguments: String...) throws -> String {
        try check(lab.inNode(node, ["tc"] + arguments))
    }

    @Test func tcFiltersTranslateAndLeaveNothingBehind() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try tc(lab, "cn", "qdisc", "add", "dev", "eth0", "clsact")
        _ = try tc(lab, "cn", "filter", "add", "dev", "eth0", "ingress", "prio", "60000", "u32", "match", "u32", "0", "0")
        for node in ["vm", "cn"] {
            try lab.startMatd(node, config: lab.writeConfig(node, adding: BPFFastPathLabTests.bpf), environment: Self.tc)
        }
        for node in ["vm", "cn"] {
            #expect(try paths.waitForFastPath(lab, node, peers: 2), "\(node): \(paths.show(lab, node))")
            let log = lab.matdLog(node)
            #expect(log.components(separatedBy: "BPF programs attached with tc filters (MATD_BPF_ATTACH=tc)").count == 2
                    && log.contains("IPv4 and IPv6 on the BPF datapath (tc programs, tc filters)"), "\(log)")
        }
        let status = try lab.matctl("vm", "status")
        #expect(status.contains("IPv4 and IPv6 on the BPF datapath"), "\(status)")
        // Each program in a filter of its own, direct-action: mat_out4/6 at mat0's egress,
        // mat_in4/6 at eth0's ingress, the guard's mat_flows4 at its egress.
        let ingress = try tc(lab, "vm", "filter", "show", "dev", "eth0", "ingress")
        for name in ["mat_in4", "mat_in6"] {
            #expect(ingress.components(separatedBy: "handle 0x4d4154 \(name) ").count == 2, "\(ingress)")
        }
        #expect(ingress.contains("direct-action"), "\(ingress)")
        #expect(try tc(lab, "vm", "filter", "show", "dev", "eth0", "egress").contains("mat_flows4"))
        let tun = try tc(lab, "vm", "filter", "show", "dev", "mat0", "egress")
        #expect(tun.contains("mat_out4") && tun.contains("mat_out6"), "\(tun)")
        #expect(try lab.attachedPrograms("vm", "eth0", .tcxIngress) == 2 && lab.attachedPrograms("vm", "mat0", .tcxEgress) == 2)

        let file = try lab.randomFile("payload", megabytes: 1)
        for family in Addr.Family.allCases {
            try lab.tcpTransfer(listener: "cn", address: cn.home(family), connector: "vm", sender: "vm", file: file)
            #expect(try lab.ping("cn", vm.home(family)), "ping cn -> vm \(family)")
        }
        for node in ["vm", "cn"] {
            let fast = try lab.fastPathCounters(node)
            let (sent, received) = node == "vm" ? ("out", "in") : ("in", "out")
            #expect(fast["bpf_\(sent)4_bytes", default: 0] > 1_000_000 && fast["bpf_\(sent)6_bytes", default: 0] > 1_000_000,
                    "\(node): \(fast)")
            // The ACKs (GRO and TSO make the data a few dozen packets of up to 64 KB).
            #expect(fast["bpf_\(received)4_packets", default: 0] > 10 && fast["bpf_\(received)6_packets", default: 0] > 10,
                    "\(node): \(fast)")
        }

        // kill -9: the filters outlive matd; the next one replaces them (one of each still).
        try lab.killMatd("vm")
        #expect(try tc(lab, "vm", "filter", "show", "dev", "eth0", "ingress").contains("mat_in4"))
        try lab.startMatd("vm", config: lab.writeConfig("vm", adding: BPFFastPathLabTests.bpf), environment: Self.tc)
        #expect(try paths.waitForFastPath(lab, "vm", peers: 2), "\(paths.show(lab, "vm"))")
        let again = try tc(lab, "vm", "filter", "show", "dev", "eth0", "ingress")
        #expect(again.components(separatedBy: "handle 0x4d4154 mat_in4 ").count == 2
                && again.components(separatedBy: "handle 0x4d4154 mat_in6 ").count == 2, "\(again)")
        #expect(try lab.ping("vm", cn.home4))

        for node in ["vm", "cn"] { try lab.stopMatd(node) }
        for hook in ["ingress", "egress"] {
            let left = try tc(lab, "vm", "filter", "show", "dev", "eth0", hook)
            #expect(!left.contains("mat_"), "vm eth0 \(hook) after stop: \(left)")
            let others = try tc(lab, "cn", "filter", "show", "dev", "eth0", hook)
            #expect(!others.contains("mat_"), "cn eth0 \(hook) after stop: \(others)")
            #expect(others.contains("pref 60000 u32") == (hook == "ingress"), "cn eth0 \(hook): the filter that was there stays: \(others)")
        }
        #expect(try tc(lab, "cn", "qdisc", "show", "dev", "eth0").contains("clsact"), "cn's own clsact qdisc went")
        #expect(try lab.attachedPrograms("vm", "eth0", .tcxIngress) == 0 && lab.attachedPrograms("vm", "eth0", .tcxEgress) == 0)
    }

    /// After kill -9 the filters stay (and would go on translating with the dead matd's
    /// maps); `matd cleanup`, as docs/operations.md runs it, deletes each filter of ours, on
    /// the uplink and the TUN device, and neither the u32 filter that was there before nor
    /// the clsact qdisc (whose adder died with matd: docs/datapath.md, "Kernels before 6.6").
    @Test func cleanupDeletesTheFiltersAKilledMatdLeft() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try tc(lab, "vm", "qdisc", "add", "dev", "eth0", "clsact")
        _ = try tc(lab, "vm", "filter", "add", "dev", "eth0", "ingress", "prio", "60000", "u32", "match", "u32", "0", "0")
        try lab.startMatd("cn", config: lab.writeConfig("cn", adding: BPFFastPathLabTests.bpf))
        let config = try lab.writeConfig("vm", adding: BPFFastPathLabTests.bpf)
        try lab.startMatd("vm", config: config, environment: Self.tc)
        #expect(try paths.waitForFastPath(lab, "vm", peers: 2), "\(paths.show(lab, "vm"))")
        try lab.killMatd("vm")
        let left = try tc(lab, "vm", "filter", "show", "dev", "eth0", "ingress")
        #expect(left.contains("mat_in4") && left.contains("mat_in6"), "\(left)")
        #expect(try tc(lab, "vm", "filter", "show", "dev", "eth0", "egress").contains("mat_flows4"))

        let cleanup = try lab.exec("vm", LabPaths.matd, "cleanup", "--config", config)
        for name in ["mat_in4 at eth0 ingress", "mat_in6 at eth0 ingress", "mat_flows4 at eth0 egress",
                     "mat_out4 at mat0 egress", "mat_out6 at mat0 egress"] {
            #expect(cleanup.contains("removed tc filter \(name), priority "), "\(name): \(cleanup)")
        }
        for hook in ["ingress", "egress"] {
            let after = try tc(lab, "vm", "filter", "show", "dev", "eth0", hook)
            #expect(!after.contains("mat_") && !after.contains("0x4d4154"), "vm eth0 \(hook) after cleanup: \(after)")
            #expect(after.contains("pref 60000 u32") == (hook == "ingress"), "vm eth0 \(hook): the u32 filter stays: \(after)")
        }
        #expect(try tc(lab, "vm", "qdisc", "show", "dev", "eth0").contains("clsact"))
        #expect(try lab.attachedPrograms("vm", "eth0", .tcxIngress) == 0 && lab.attachedPrograms("vm", "eth0", .tcxEgress) == 0)
        let again = try lab.exec("vm", LabPaths.matd, "cleanup", "--config", config)
        #expect(again.contains("nothing to clean up"), "\(again)")
    }

    /// matd stopped after its first start: its clsact qdisc goes with its last filter.
    @Test func stopDeletesTheClsactQdiscItAdded() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.startMatd("cn", config: lab.writeConfig("cn", adding: BPFFastPathLabTests.bpf))
        try lab.startMatd("vm", config: lab.writeConfig("vm", adding: BPFFastPathLabTests.bpf), environment: Self.tc)
        for node in ["vm", "cn"] {
            #expect(try paths.waitForFastPath(lab, node, peers: 2), "\(node): \(paths.show(lab, node))")
        }
        #expect(try tc(lab, "vm", "qdisc", "show", "dev", "eth0").contains("clsact"))
        // The first echo each way may go before its neighbour is resolved (docs/datapath.md,
        // "A peer's first packet").
        _ = try lab.ping("vm", cn.home4, count: 3)
        _ = try lab.ping("vm", cn.home6, count: 3)
        let pinged = try lab.ping("vm", cn.home4, count: 5) && lab.ping("vm", cn.home6, count: 5)
        let counts = try lab.fastPathCounters("vm")
        #expect(pinged && counts["bpf_out4_packets", default: 0] >= 8 && counts["bpf_out6_packets", default: 0] >= 8,
                "\(lab.matdLog("vm"))\n\(counts)\n\(paths.show(lab, "cn"))")
        try lab.stopMatd("vm")
        let qdiscs = try tc(lab, "vm", "qdisc", "show", "dev", "eth0")
        #expect(!qdiscs.contains("clsact"), "\(qdiscs)")
        for hook in ["ingress", "egress"] {
            #expect(try tc(lab, "vm", "filter", "show", "dev", "eth0", hook).isEmpty, "vm eth0 \(hook)")
        }
    }
}
