#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// Both nodes behind port-restricted NAT (docs/datapath.md, "Behind NAT", "Both ends
/// behind NAT"): the VM in site N behind one masquerade, the CN in site M behind another
/// (Tools/lab/nat-site up-cn), the same private range in both. Each node's probe fails,
/// each sends the other's traffic in UDP, and the keepalives the two send from
/// `encap-port` to the other's `encap-port` open matching bindings on both NATs.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct NATPairLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// The VM at 192.0.2.80 behind 203.0.113.50, the CN at 192.0.2.90 behind 203.0.113.51,
    /// mat-ims, and matd on both with `public-address = auto`; `prepare` changes the NATs
    /// before matd starts.
    func natPair(prepare: (NATLab) throws -> Void = { _ in }) throws -> NATLab {
        let nat = try NATLab()
        do {
            try nat.addCNSite()
            try nat.moveVM(host: 80)
            try nat.moveCNBehindNAT(host: 90)
            try prepare(nat)
            let lab = nat.lab
            _ = try lab.startIMS()
            for node in ["vm", "cn"] {
                let config = try lab.writeIMSConfig(node)
                let text = try String(contentsOfFile: config, encoding: .utf8)
                    .replacingOccurrences(of: "uplink = eth0\n", with: "uplink = eth0\npublic-address = auto\n")
                try text.write(toFile: config, atomically: true, encoding: .utf8)
                try lab.startMatd(node, config: config)
            }
            for (node, address) in [("vm", "203.0.113.50"), ("cn", "203.0.113.51")]
            where !lab.waitForLog(node, "registered \(Addr.node(node).home4) -> \(address)") {
                throw LabError("matd in \(node) did not register \(address):\n\(lab.matdLog(node))")
            }
        } catch {
            nat.close()
            throw error
        }
        return nat
    }

    /// Each node learns of the other as a node behind NAT does of any peer: it sends to
    /// the peer's HoA, looks the peer up and alerts it. Neither alert gets through a NAT
    /// that has seen nothing from the other side; both nodes go to UDP after their probes.
    func contactEachOther(_ nat: NATLab) throws {
        let lab = nat.lab
        let pings = try ["vm", "cn"].map { node in
            try lab.spawn(node, ["ping", "-c", "3", "-i", "0.5", "-W", "1", "-q", Addr.node(node == "vm" ? "cn" : "vm").home4])
        }
        for ping in pings { ping.wait(timeout: 30) }
        for node in ["vm", "cn"] where !lab.waitForLog(node, "traffic goes in UDP", timeout: 60) {
            Issue.record("matd in \(node) did not go to UDP:\n\(lab.matdLog(node))")
        }
    }

    /// Both NATs keep the source port (Linux's masquerade does while it is free) and drop
    /// what comes in unsolicited before their own stack sees it (a home router's
    /// firewall): hole punching, with matd's defaults. Whichever node's keepalive comes
    /// first is dropped at the other's NAT but opens its own; the other's then passes
    /// both. A TCP flow each way between the HoAs arrives byte-identical, in UDP both
    /// ways, and each end shows the other at its NAT's public address with `path udp-encap`.
    @Test func holePunchingThroughTwoMasqueradeNATs() throws {
        let nat = try natPair { nat in
            try nat.firewall("nat")
            try nat.firewall("nat2")
        }
        defer { nat.close() }
        try checkHolePunching(nat)
    }

    func checkHolePunching(_ nat: NATLab) throws {
        let lab = nat.lab
        try contactEachOther(nat)
        // The keepalives of both have to have crossed before the flow: poll for them.
        for node in ["vm", "cn"] where !nat.waitForEncap(node, "encap_keepalives_received", atLeast: 1, timeout: 30) {
            Issue.record("no keepalive reached \(node): \(try nat.encapCounters(node))\n\(lab.matdLog(node))")
        }
        try nat.transferBothWays(megabytes: 10, path: "udp-encap")
        for node in ["vm", "cn"] {
            let counters = try nat.encapCounters(node)
            // 10 MB each way: thousands of carried packets each way, nothing refused.
            #expect(counters["encap_packets_sent", default: 0] > 1_000 && counters["encap_packets_received", default: 0] > 1_000
                    && counters["encap_refused", default: 0] == 0, "\(node): \(counters)")
        }
    }
}

extension NATLab {
    /// A TCP transfer of `megabytes` each way between the VM's and the CN's HoAs (each end
    /// sees the other's HoA, the bytes arrive whole), then both ends' peer lists show the
    /// other at its NAT's public address on `path`.
    func transferBothWays(megabytes: Int, path: String) throws {
        let vm = Addr.node("vm"), cn = Addr.node("cn")
        let file = try lab.randomFile("payload", megabytes: megabytes)
        let toCN = try lab.tcpTransfer(listener: "cn", address: cn.home4, connector: "vm", sender: "vm", file: file,
                                       port: 5040)
        #expect(toCN.listenerSawPeer == vm.home4 && toCN.connectorLocal == vm.home4, "\(toCN)")
        let toVM = try lab.tcpTransfer(listener: "vm", address: vm.home4, connector: "cn", sender: "cn", file: file,
                                       port: 5041)
        #expect(toVM.listenerSawPeer == cn.home4 && toVM.connectorLocal == cn.home4, "\(toVM)")
        let vmPeers = try lab.matctl("vm", "peers"), cnPeers = try lab.matctl("cn", "peers")
        #expect(vmPeers.contains("\(cn.home4) -> 203.0.113.51*") && vmPeers.contains("path \(path)"), "\(vmPeers)")
        #expect(cnPeers.contains("\(vm.home4) -> 203.0.113.50*") && cnPeers.contains("path \(path)"), "\(cnPeers)")
    }

    /// `nat` ("nat" or "nat2") chooses every source port at random (Tools/lab/nat-site random).
    func randomPorts(_ nat: String) throws {
        try check([LabPaths.natSite, "random", nat], timeout: 30, environment: ["LAB": lab.name])
    }

    /// Adds site M behind a second NAT router (Tools/lab/nat-site up-cn).
    func addCNSite() throws {
        try check([LabPaths.natSite, "up-cn"], timeout: 60, environment: ["LAB": lab.name])
    }

    /// Moves the CN node into site M as 192.0.2.HOST.
    func moveCNBehindNAT(host: Int) throws {
        try check([LabPaths.natSite, "move-cn", "\(host)"], timeout: 30, environment: ["LAB": lab.name])
    }

    /// `nat` ("nat" or "nat2") drops unsolicited input on its outside (Tools/lab/nat-site firewall).
    func firewall(_ nat: String) throws {
        try check([LabPaths.natSite, "firewall", nat], timeout: 30, environment: ["LAB": lab.name])
    }
}
