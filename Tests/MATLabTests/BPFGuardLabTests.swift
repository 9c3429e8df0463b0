#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import Testing

/// What the BPF datapath does as the nftables fast path does (docs/datapath.md, "The BPF
/// datapath"): traffic between the MoAs that no HoA sent is left alone (the MoA-to-MoA
/// guard, fed with the services bound to the MoA), and a peer's first packet through the
/// programs arrives (its next hop's neighbour resolved when the peer enters the map).
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct BPFGuardLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    let paths = KernelFastPathLabTests()
    let programs = BPFProgramsLabTests()

    /// Both nodes on the BPF datapath with static peers, every peer on it.
    func bpfLab(flushingNeighbours: Bool = false) throws -> Lab {
        let lab = try Lab()
        if flushingNeighbours {
            // Nothing resolved before matd: what the testbed's setup may have left goes.
            for node in ["vm", "cn"] { try lab.exec(node, "ip", "neigh", "flush", "all") }
        }
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: BPFFastPathLabTests.bpf)) }
        for node in ["vm", "cn"] {
            #expect(try paths.waitForFastPath(lab, node, peers: 2), "\(node): \(paths.show(lab, node))")
            let status = try lab.matctl(node, "status")
            #expect(status.contains(" on the BPF datapath"), "\(status)")
        }
        return lab
    }

    /// KernelFastPathLabTests.moaToMoATrafficIsLeftAlone on the BPF datapath: a TCP
    /// connection from the VM's MoA to a listener bound to the CN's MoA carries 4 MB whole,
    /// the listener sees the VM's MoA (the CN's inbound program left the service's packets
    /// alone: its service map), the VM's connection gets the answers (the VM's inbound
    /// program left the flow it opened alone: its flow map), and neither node's programs
    /// translated the transfer's packets inbound.
    @Test func moaToMoATrafficIsLeftAlone() throws {
        let lab = try bpfLab()
        defer { lab.close() }
        let file = try lab.randomFile("payload", megabytes: 4)
        let before = ["vm": try paths.fastCounters(lab, "vm"), "cn": try paths.fastCounters(lab, "cn")]
        let received = lab.path("moa-received")
        let server = try lab.spawn("cn", ["python3", LabPaths.labPeer, "tcp-listen", cn.mobile4, "5020", "recv", received])
        #expect(server.waitForOutput(timeout: 10) { $0.contains("listening") })
        sleep(2)   // matd looks for services bound to the MoA once a second
        let client = try lab.run("vm", ["python3", LabPaths.labPeer, "tcp-connect", cn.mobile4, "5020", "send", file], timeout: 60)
        let result = server.wait(timeout: 30)
        #expect(client.succeeded && result.succeeded, "\(client.summary)\n\(result.summary)")
        #expect(result.stderr.contains("peer \(vm.mobile4)"), "\(result.stderr)")
        #expect(try lab.sha256(received) == lab.sha256(file))
        for node in ["vm", "cn"] {
            let after = try paths.fastCounters(lab, node)
            let translated = after["bpf_in4_packets", default: 0] - before[node]!["bpf_in4_packets", default: 0]
            #expect(translated < 20, "\(node): \(before[node]!) -> \(after)")
        }
        // HoA traffic still goes through the programs beside it.
        #expect(try lab.ping("vm", cn.home4))
        #expect(try paths.fastCounters(lab, "cn")["bpf_in4_packets", default: 0] >= 3)
    }

    /// With no neighbour resolved on either node before matd starts, the first datagram
    /// each way between the HoAs of `family`, sent as soon as the peers are on the BPF
    /// datapath, is translated by the sender's outbound program and arrives (each node had
    /// the kernel resolve its next hop when the peer entered its map: the router's address,
    /// for IPv6 its link-local one).
    @Test(arguments: Addr.Family.allCases)
    func theFirstDatagramToAFreshPeerArrives(_ family: Addr.Family) throws {
        let lab = try bpfLab(flushingNeighbours: true)
        defer { lab.close() }
        let counter = family == .v4 ? "bpf_out4_packets" : "bpf_out6_packets"
        for (sender, receiver, port) in [("vm", "cn", 5031), ("cn", "vm", 5032)] {
            let from = Addr.node(sender).home(family), to = Addr.node(receiver).home(family)
            let before = try paths.fastCounters(lab, sender)[counter, default: 0]
            let seen = try programs.datagrams(lab, sender, from: (from, port), to: (to, port), receiver, at: (to, port), count: 1)
            let after = try paths.fastCounters(lab, sender)[counter, default: 0]
            #expect(seen == ["\(from) \(port)"], "\(sender) -> \(receiver): \(seen)\n\(paths.show(lab, sender))")
            #expect(after == before + 1, "\(sender): the datagram went through its program (\(before) -> \(after))")
        }
    }
}
