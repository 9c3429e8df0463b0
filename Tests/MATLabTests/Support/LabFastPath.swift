#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATBPF
import MATLinux

/// Which datapath the kernel fast path's lab tests (KernelFastPathLabTests,
/// KernelFastPathFirewallLabTests) run on: nftables, or the BPF datapath when
/// `MAT_LAB_FAST_PATH=bpf` (Tools/test's second pass of those suites). The tests write
/// ``setting`` into the nodes' configurations; a test that pins another setting
/// (`kernel-fast-path = off`) keeps it, since matd's own `MATD_KERNEL_FAST_PATH` is not set.
enum LabFastPath: String, Sendable {
    case nftables, bpf

    /// The environment variable that picks the datapath of a run.
    static let environmentVariable = "MAT_LAB_FAST_PATH"

    /// This run's datapath.
    static let current: LabFastPath = ProcessInfo.processInfo.environment[environmentVariable]?.lowercased() == "bpf"
        ? .bpf : .nftables

    /// The configuration line that turns the fast path on with this datapath.
    var setting: String { self == .bpf ? "kernel-fast-path = bpf" : "kernel-fast-path = on" }
}

extension Lab {
    /// What `node`'s kernel fast path translated, from `matctl stats --json`:
    /// `out4_packets`, `in6_bytes`, `rule_writes` and the rest. Both datapaths fill the
    /// same names (matd adds the BPF programs' counts to them; `bpf_out4_packets` and the
    /// like say what the programs counted), so a test reads them the same way in either.
    func fastPathCounters(_ node: String) throws -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for (key, value) in try stats(node)["kernelFastPath"] as? [String: Any] ?? [:] {
            result[key] = (value as? NSNumber)?.uint64Value ?? 0
        }
        return result
    }

    /// The BPF programs attached at `point` of `interface` in `node`'s namespace (0 when
    /// the interface is not there: the TUN device goes with matd).
    func attachedPrograms(_ node: String, _ interface: String, _ point: Attributes.AttachPoint) throws -> Int {
        try inNamespace("/run/netns/\(namespace(node))") { () throws(SystemError) -> Int in
            let index = if_nametoindex(interface)
            guard index != 0 else { return 0 }
            return try BPFSystem.attachedPrograms(interfaceIndex: index, point: point)
        }
    }
}
