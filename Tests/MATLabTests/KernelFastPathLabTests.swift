#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATBPF
import MATNode
import MATTestSupport
import Testing

/// The kernel fast path (docs/datapath.md, "Kernel fast path"): nftables translates the
/// HoA traffic of settled mappings, the TUN engine everything else. HoA traffic of every
/// kind still arrives whole and with valid checksums, ICMP errors (path MTU discovery)
/// still reach the applications, a move under a TCP flow still holds and releases, and
/// stop leaves nothing behind. On nftables, or on the BPF datapath with
/// `MAT_LAB_FAST_PATH=bpf` (``LabFastPath``; Tools/test runs the suite both ways).
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct KernelFastPathLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    static let on = LabFastPath.current.setting

    /// Both nodes with static peers and the fast path on, every peer on it.
    func fastLab() throws -> Lab {
        let lab = try Lab()
        for node in ["vm", "cn"] {
            try lab.startMatd(node, config: lab.writeConfig(node, adding: Self.on))
        }
        for node in ["vm", "cn"] {
            #expect(try waitForFastPath(lab, node, peers: 2), "\(node): \(show(lab, node))")
        }
        return lab
    }

    /// Waits until `peers` peers of `node` show `path kernel`.
    func waitForFastPath(_ lab: Lab, _ node: String, peers: Int, timeout: Double = 20) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let reports = try JSONDecoder().decode([PeerReport].self, from: Data(lab.matctl(node, "peers", "--json").utf8))
            if reports.filter({ $0.path == "kernel" }).count >= peers { return true }
            usleep(100_000)
        }
        return false
    }

    /// A node's peers and log, for a failed check.
    func show(_ lab: Lab, _ node: String) -> String {
        "\(node) peers:\n\((try? lab.matctl(node, "peers")) ?? "?")\nstats: \((try? lab.matctl(node, "stats")) ?? "?")\n\(lab.matdLog(node))"
    }

    /// `node`'s fast path counters, either datapath (``Lab/fastPathCounters(_:)``).
    func fastCounters(_ lab: Lab, _ node: String) throws -> [String: UInt64] { try lab.fastPathCounters(node) }

    /// TCP both ways (byte for byte), UDP, ping, and an ICMP error each way, both families,
    /// with transmit checksum offload off on the uplinks so the capture sees what a NIC
    /// would send: only MoAs on the wire, every checksum valid, the bulk counted by the
    /// kernel and not by the engines; the port-unreachable errors went through the engine.
    @Test func hoaTrafficOnTheFastPathWithValidChecksums() throws {
        let lab = try fastLab()
        defer { lab.close() }
        try lab.checksumOffloadOff("vm", "cn")
        let status = try lab.matctl("vm", "status")
        #expect(status.contains("kernel fast path: on, 2 peer(s)"), "\(status)")
        let before = try ["vm": lab.stats("vm"), "cn": lab.stats("cn")]
        let capture = try Capture(lab, interface: lab.routerPort("vm"), name: "fast")
        let file = try lab.randomFile("payload", megabytes: 4)
        for family in Addr.Family.allCases {
            try lab.tcpTransfer(listener: "cn", address: cn.home(family), connector: "vm", sender: "vm", file: file)
            try lab.tcpTransfer(listener: "vm", address: vm.home(family), connector: "cn", sender: "cn", file: file)
            let echo = try lab.udpEcho(client: "vm", server: "cn", address: cn.home(family), count: 50)
            #expect(echo.listenerSawPeer == vm.home(family))
            try lab.udpEcho(client: "cn", server: "vm", address: vm.home(family), count: 50)
            #expect(try lab.ping("vm", cn.home(family)), "ping vm -> cn \(family)")
            #expect(try lab.ping("cn", vm.home(family)), "ping cn -> vm \(family)")
            #expect(try lab.udpToClosedPort("vm", cn.home(family)), "port unreachable cn -> vm \(family)")
            #expect(try lab.udpToClosedPort("cn", vm.home(family)), "port unreachable vm -> cn \(family)")
        }
        try capture.stop()
        let packets = try capture.expectOnlyMoAsWithGoodChecksums()
        let tcp = packets.filter { $0["tcp.checksum.status"] == ["1"] }
        #expect(tcp.count > 4 * 4_000_000 / 65_536, "TCP packets validated: \(tcp.count)")

        for node in ["vm", "cn"] {
            let fast = try lab.fastPathCounters(node)
            for direction in ["out", "in"] {
                #expect(fast["\(direction)4_bytes", default: 0] > 4_000_000 && fast["\(direction)6_bytes", default: 0] > 4_000_000,
                        "\(node) kernel fast path: \(fast)")
            }
            let after = try lab.stats(node)
            let engine = counter(after, "outboundBytes") - counter(before[node]!, "outboundBytes")
            #expect(engine < 200_000, "\(node): \(engine) bytes still went through the engine")
            // The ICMP errors (port unreachable, one per family) did.
            #expect(counter(after, "outboundPackets") > counter(before[node]!, "outboundPackets"), "\(after)")
            #expect(drops(after).isEmpty, "\(node) dropped packets: \(drops(after))")
        }
        let exposition = try lab.matctl("vm", "stats", "--prometheus")
        let line = exposition.split(separator: "\n").first { $0.hasPrefix("matd_kernel_fast_path_bytes_total{direction=\"outbound\",family=\"ipv6\"} ") }
        #expect(line.flatMap { UInt64($0.split(separator: " ").last ?? "") }.map { $0 > 4_000_000 } == true, "\(exposition)")
    }

    /// With checksum offload and GSO as the lab has them (veth: on), the full traffic
    /// matrix, and path MTU discovery: a router link of 1280 bytes draws "fragmentation
    /// needed" / "packet too big" for the fast path's packets, which the engine must
    /// translate for the HoA socket (the kernel never rewrites ICMP errors).
    @Test func trafficMatrixAndPathMTUDiscovery() throws {
        let lab = try fastLab()
        defer { lab.close() }
        let file = try lab.randomFile("payload", megabytes: 20)
        try trafficMatrix(lab, file: file)
        try DualStackLabTests().pathMTUDiscovery(lab)
        for node in ["vm", "cn"] {
            #expect(try lab.fastPathCounters(node)["out4_bytes", default: 0] > 40_000_000, "\(node)")
            #expect(drops(try lab.stats(node)).isEmpty, "\(node)")
        }
    }

    /// Traffic between the MoAs that no HoA sent (a service bound to the MoA) is left
    /// alone by the fast path as by the engine: the listener sees the peer's MoA, and the
    /// kernel's rewrite counters do not move.
    @Test func moaToMoATrafficIsLeftAlone() throws {
        let lab = try fastLab()
        defer { lab.close() }
        let file = try lab.randomFile("payload", megabytes: 4)
        let before = try lab.fastPathCounters("cn")
        let received = lab.path("moa-received")
        let server = try lab.spawn("cn", ["python3", LabPaths.labPeer, "tcp-listen", cn.mobile4, "5020", "recv", received])
        #expect(server.waitForOutput(timeout: 10) { $0.contains("listening") })
        sleep(2)   // matd looks for services bound to the MoA once a second
        let client = try lab.run("vm", ["python3", LabPaths.labPeer, "tcp-connect", cn.mobile4, "5020", "send", file])
        let result = server.wait(timeout: 30)
        #expect(client.succeeded && result.succeeded, "\(client.summary)\n\(result.summary)")
        #expect(result.stderr.contains("peer \(vm.mobile4)"), "\(result.stderr)")
        #expect(try lab.sha256(received) == lab.sha256(file))
        let after = try lab.fastPathCounters("cn")
        #expect(after["in4_bytes", default: 0] - before["in4_bytes", default: 0] < 100_000, "\(before) -> \(after)")
    }

    /// A move under a TCP flow with the IMS, 50 ms of round trip between the nodes: the
    /// fast path carries the flow before; at the move the VM's rules for the CN go (its
    /// engine holds the CN's packets: a ping flow's last one is sent at the release), the
    /// bytes arrive whole, and afterwards the rules on both sides name the new MoA.
    @Test func aMoveUnderATCPFlow() throws {
        let lab = try Lab(delayElement: true)
        defer { lab.close() }
        try lab.setDelay(rttMilliseconds: 50)
        _ = try lab.startIMS()
        for node in ["vm", "cn"] {
            let path = try lab.writeIMSConfig(node)
            try lab.addToNodeSection(Self.on, of: path)
            try lab.startMatd(node, config: path)
        }
        for node in ["vm", "cn"] {
            #expect(lab.waitForLog(node, "registered \(Addr.node(node).home4)"), "\(lab.matdLog(node))")
        }
        let file = try lab.randomFile("payload", megabytes: 40)
        let transfer = try PacedTransfer(lab, from: "vm", to: "cn", file: file, megabytesPerSecond: 8)
        #expect(try waitForFastPath(lab, "cn", peers: 1), "\(show(lab, "cn"))")
        #expect(try waitForFastPath(lab, "vm", peers: 1), "\(show(lab, "vm"))")
        // Pings every 5 ms until the CN has taken the new MoA, however long the steps
        // before the move take on a loaded host (a flow of a fixed 2 s ended before it).
        let pings = try lab.spawn("vm", ["ping", "-q", "-i", "0.005", "-c", "12000", cn.home4])
        sleep(1)
        let before = try lab.stats("vm")
        let writesBefore = try lab.fastPathCounters("vm")["rule_writes", default: 0]
        try lab.moveVM(to: "b")
        #expect(try poll(seconds: 20) { try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10*") },
                "\(show(lab, "cn"))")
        sleep(1)
        pings.signal(SIGINT)
        _ = pings.wait(timeout: 10)
        try transfer.finish()
        #expect(try waitForFastPath(lab, "cn", peers: 1), "\(show(lab, "cn"))")
        #expect(try waitForFastPath(lab, "vm", peers: 1), "\(show(lab, "vm"))")
        // The hold: the CN's rules went and came back, and the engine held its packets.
        #expect(try lab.fastPathCounters("vm")["rule_writes", default: 0] >= writesBefore + 2, "\(show(lab, "vm"))")
        let after = try lab.stats("vm")
        #expect(counter(after, "heldPacketsSent") > counter(before, "heldPacketsSent"), "\(show(lab, "vm"))")
        if LabFastPath.current == .nftables {
            let cnMap = try lab.exec("cn", "nft", "list", "map", "inet", "matd_mat0_fast", "out4")
            #expect(cnMap.contains("\(vm.home4) : 203.0.113.10"), "\(cnMap)")
            let vmChain = try lab.exec("vm", "nft", "list", "chain", "inet", "matd_mat0_fast", "out")
            #expect(vmChain.contains("ip saddr set 203.0.113.10"), "\(vmChain)")
        }
        // On either datapath: echoes between the new MoA and the CN, translated by the
        // kernel on both sides (the CN's maps name the new MoA, the VM's its own).
        let vmMid = try lab.fastPathCounters("vm"), cnMid = try lab.fastPathCounters("cn")
        #expect(try lab.ping("vm", cn.home4) && lab.ping("cn", vm.home4))
        let vmEnd = try lab.fastPathCounters("vm"), cnEnd = try lab.fastPathCounters("cn")
        for (name, mid, end) in [("vm", vmMid, vmEnd), ("cn", cnMid, cnEnd)] {
            for direction in ["out4_packets", "in4_packets"] {
                #expect(end[direction, default: 0] >= mid[direction, default: 0] + 6, "\(name) \(direction): \(mid) -> \(end)")
            }
        }
        try lab.stopMatd("vm")
        #expect(try !lab.exec("vm", "nft", "list", "tables").contains("matd"), "tables left after stop")
        #expect(try lab.attachedPrograms("vm", "eth0", .tcxIngress) == 0, "programs left on eth0 after stop")
    }

    /// The table belongs to matd's netlink socket: after kill -9 the kernel has removed it,
    /// so HoA traffic waits in the TUN device as without the fast path (nothing translated
    /// by mappings no one maintains); a new matd writes it again.
    @Test func theRulesDieWithMatd() throws {
        let lab = try fastLab()
        defer { lab.close() }
        #expect(try lab.ping("vm", cn.home4))
        try lab.killMatd("vm")
        #expect(try !lab.exec("vm", "nft", "list", "tables").contains("matd_mat0_fast"))
        #expect(try lab.attachedPrograms("vm", "eth0", .tcxIngress) == 0, "programs left on eth0 after kill -9")
        #expect(try !lab.ping("vm", cn.home4, count: 2), "HoA traffic got through with matd dead")
        try lab.startMatd("vm", config: lab.writeConfig("vm", adding: Self.on))
        #expect(try waitForFastPath(lab, "vm", peers: 2), "\(show(lab, "vm"))")
        #expect(try lab.ping("vm", cn.home4))
    }

    /// `kernel-fast-path = off`: no table, every peer through the engine.
    @Test func offLeavesEverythingToTheEngine() throws {
        let lab = try Lab()
        defer { lab.close() }
        for node in ["vm", "cn"] {
            try lab.startMatd(node, config: lab.writeConfig(node, adding: "kernel-fast-path = off"))
        }
        #expect(try lab.ping("vm", cn.home4))
        #expect(try lab.matctl("vm", "status").contains("kernel fast path: off"))
        #expect(try !lab.matctl("vm", "peers").contains("path kernel"))
        #expect(try !lab.exec("vm", "nft", "list", "tables").contains("matd_mat0_fast"))
        // The engine publishes its counters within 100 ms of going idle.
        let deadline = Date().addingTimeInterval(10)
        while counter(try lab.stats("vm"), "outboundPackets") < 3 && Date() < deadline { usleep(100_000) }
        #expect(counter(try lab.stats("vm"), "outboundPackets") >= 3, "\(show(lab, "vm"))")
    }

    /// When the probe at start fails (a kernel before 5.12 refuses the owned table, one
    /// before 5.10 the `inet` ingress hook), matd says so once and the engine carries all
    /// HoA traffic. Forced here the way an old kernel refuses it: the probe's table exists
    /// without the owner flag, and an existing table cannot become owned (EOPNOTSUPP).
    @Test func aRefusedProbeLeavesEverythingToTheEngine() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.exec("vm", "nft", "add table inet matd_mat0_fast_probe")
        for node in ["vm", "cn"] {
            try lab.startMatd(node, config: lab.writeConfig(node, adding: Self.on))
        }
        #expect(lab.waitForLog("vm", "kernel fast path unavailable"), "\(lab.matdLog("vm"))")
        #expect(lab.matdLog("vm").contains("the TUN engine carries all HoA traffic"), "\(lab.matdLog("vm"))")
        #expect(try waitForFastPath(lab, "cn", peers: 2), "the CN's own fast path is unaffected: \(show(lab, "cn"))")
        let file = try lab.randomFile("payload", megabytes: 2)
        for family in Addr.Family.allCases {
            try lab.tcpTransfer(listener: "vm", address: vm.home(family), connector: "cn", sender: "cn", file: file)
            try lab.tcpTransfer(listener: "cn", address: cn.home(family), connector: "vm", sender: "vm", file: file)
        }
        #expect(try lab.matctl("vm", "status").contains("kernel fast path: unavailable"), "\(show(lab, "vm"))")
        #expect(try !lab.matctl("vm", "peers").contains("path kernel"))
        let tables = try lab.exec("vm", "nft", "list", "tables").split(separator: "\n")
        #expect(!tables.contains("table inet matd_mat0_fast") && tables.contains("table inet matd_mat0_fast_probe"), "\(tables)")
        // No table is not a failed read: no counters in the stats, and none counted as failed.
        #expect(try lab.stats("vm")["kernelFastPath"] == nil, "\(show(lab, "vm"))")
        #expect(!lab.matdLog("vm").contains("reading the kernel fast path's counters failed"))
        let deadline = Date().addingTimeInterval(10)
        while counter(try lab.stats("vm"), "outboundBytes") < 4_000_000 && Date() < deadline { usleep(100_000) }
        #expect(counter(try lab.stats("vm"), "outboundBytes") >= 4_000_000, "the engine carried it: \(show(lab, "vm"))")
    }
}
