@testable import MATNode
import MATPacket
import Testing

/// `kernel-fast-path = bpf` and `MATD_KERNEL_FAST_PATH=bpf` (docs/config.md): the setting
/// that puts IPv4 on the BPF datapath, its refusal of other values, and the split of the
/// fast path's element deltas between the programs (IPv4) and nftables (IPv6).
@Suite struct FastPathDatapathSettingTests {
    @Test func eachValueOfTheSetting() throws {
        let defaults = try NodeConfig(parsing: KernelPathConfigTests.config(""))
        #expect(defaults.kernelFastPath && defaults.kernelFastPathDatapath == .nftables)
        let bpf = try NodeConfig(parsing: KernelPathConfigTests.config("kernel-fast-path = bpf"))
        #expect(bpf.kernelFastPath && bpf.kernelFastPathDatapath == .bpf)
        let on = try NodeConfig(parsing: KernelPathConfigTests.config("kernel-fast-path = on"))
        #expect(on.kernelFastPath && on.kernelFastPathDatapath == .nftables)
        let off = try NodeConfig(parsing: KernelPathConfigTests.config("kernel-fast-path = off"))
        #expect(!off.kernelFastPath)
    }

    @Test func aBadValueNamesTheLineAndTheValues() {
        do {
            _ = try NodeConfig(parsing: KernelPathConfigTests.config("kernel-fast-path = ebpf"))
            Issue.record("accepted kernel-fast-path = ebpf")
        } catch {
            #expect("\(error)".contains("line 7") && "\(error)".contains("kernel-fast-path")
                    && "\(error)".contains("on, off or bpf"), "\(error)")
        }
    }

    @Test func theEnvironmentOverridesTheFile() {
        let variable = KernelFastPath.environmentVariable
        #expect(KernelFastPath.enabled(setting: false, environment: [variable: "bpf"]))
        #expect(KernelFastPath.datapath(setting: .nftables, environment: [variable: "bpf"]) == .bpf)
        #expect(KernelFastPath.datapath(setting: .bpf, environment: [variable: "on"]) == .nftables)
        #expect(KernelFastPath.datapath(setting: .bpf, environment: [:]) == .bpf)
        #expect(KernelFastPath.datapath(setting: .bpf, environment: [variable: "off"]) == .bpf)
    }

    @Test func aReloadSaysTheDatapathWaitsForARestart() throws {
        let running = try NodeConfig(parsing: KernelPathConfigTests.config("kernel-fast-path = on"))
        let next = try NodeConfig(parsing: KernelPathConfigTests.config("kernel-fast-path = bpf"))
        #expect(running.reloaded(from: next).notApplied.contains { $0.contains("kernel-fast-path") })
    }

    /// The IPv4 part goes to the programs, the IPv6 part to nftables, a flush with its family.
    @Test func aDeltaSplitsByFamily() {
        var elements = FastPathElements(limit: 10)
        let hoa4 = IPAddress.v4(IPv4Address("198.51.100.20")!), moa4 = IPAddress.v4(IPv4Address("192.0.2.130")!)
        let hoa6 = IPAddress.v6(IPv6Address("2001:db8:100::20")!), moa6 = IPAddress.v6(IPv6Address("2001:db8:c::130")!)
        let delta = elements.apply([hoa4: FastPathRuleset.Peer(hoa: hoa4, preferred: moa4, moas: [moa4]),
                                    hoa6: FastPathRuleset.Peer(hoa: hoa6, preferred: moa6, moas: [moa6])])
        let v4 = delta.only(.ipv4), v6 = delta.only(.ipv6)
        #expect(v4.outAdded.map(\.key) == [hoa4] && v4.inAdded.map(\.key) == [moa4])
        #expect(v6.outAdded.map(\.key) == [hoa6] && v6.inAdded.map(\.key) == [moa6])
        let gone = elements.apply([hoa4: nil, hoa6: nil])
        #expect(gone.only(.ipv4).flushed == [.ipv4] && gone.only(.ipv6).flushed == [.ipv6])
    }
}
