#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATBPF
import MATLinux
import MATPacket
import Testing

/// The BPF datapath (MATBPF's programs, loaded with bpf(2) and attached with tcx) in front
/// of two running matds whose nftables fast path is off: the kernel's verifier takes the
/// programs, and HoA traffic of both nodes crosses the wire between MoAs only, with valid
/// checksums, counted by the programs and not by the engines; what the programs leave
/// alone (ICMP errors) still goes through the engine, and after the links are closed
/// everything does again.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct BPFDatapathLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// Loads and attaches a node's programs in its namespace, with the other node as peer.
    func attach(_ lab: Lab, _ node: String, gateway: String) throws -> BPFDatapath {
        let me = Addr.node(node), peer = Addr.node(node == "vm" ? "cn" : "vm")
        let (home, mobile) = (IPv4Address(me.home4)!, IPv4Address(me.mobile4)!)
        let (peerHome, peerMobile) = (IPv4Address(peer.home4)!, IPv4Address(peer.mobile4)!)
        let hop = IPv4Address(gateway)!
        return try inNamespace("/run/netns/\(lab.namespace(node))") { () throws(SystemError) -> BPFDatapath in
            let datapath = try BPFDatapath(home: home, mobile: mobile, localPorts: [7540, 7541], tun: "mat0", uplink: "eth0")
            try datapath.setPeer(home: peerHome, mobile: peerMobile, nextHop: hop)
            return datapath
        }
    }

    @Test func hoaTrafficCrossesBetweenMoAsThroughThePrograms() throws {
        let lab = try Lab()
        defer { lab.close() }
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: "kernel-fast-path = off")) }
        try lab.checksumOffloadOff("vm", "cn")
        let vmPath = try attach(lab, "vm", gateway: "192.0.2.1")
        defer { vmPath.close() }
        let cnPath = try attach(lab, "cn", gateway: "192.0.2.129")
        defer { cnPath.close() }
        let before = try ["vm": lab.stats("vm"), "cn": lab.stats("cn")]
        let capture = try Capture(lab, interface: lab.routerPort("vm"), name: "bpf")
        let file = try lab.randomFile("payload", megabytes: 2)
        try lab.tcpTransfer(listener: "cn", address: cn.home4, connector: "vm", sender: "vm", file: file)
        let echo = try lab.udpEcho(client: "vm", server: "cn", address: cn.home4, count: 100)
        #expect(echo.listenerSawPeer == vm.home4)
        #expect(try lab.ping("vm", cn.home4), "ping vm -> cn")
        #expect(try lab.ping("cn", vm.home4), "ping cn -> vm")
        // The port-unreachable error is not the programs': it goes through the engine.
        #expect(try lab.udpToClosedPort("vm", cn.home4), "port unreachable cn -> vm")
        try capture.stop()
        let packets = try capture.expectOnlyMoAsWithGoodChecksums()
        #expect(packets.filter { $0["udp.checksum.status"] == ["1"] }.count >= 200, "UDP packets validated")

        let translated = try ["vm": vmPath.translated(), "cn": cnPath.translated()]
        // vm sends 2 MB of TCP (about 1,450 segments on the wire, fewer and larger where the
        // TUN device's TSO hands them to the program), 100 datagrams and 3 echo requests.
        #expect(translated["vm"]!.outbound > 100 && translated["cn"]!.inbound > 1_000, "\(translated)")
        #expect(translated["cn"]!.outbound > 100 && translated["vm"]!.inbound > 100, "\(translated)")
        for node in ["vm", "cn"] {
            let after = try lab.stats(node)
            let engine = counter(after, "outboundBytes") - counter(before[node]!, "outboundBytes")
            #expect(engine < 100_000, "\(node): \(engine) bytes still went through the engine")
            #expect(drops(after).isEmpty, "\(node) dropped packets: \(drops(after))")
        }
        #expect(counter(try lab.stats("cn"), "outboundPackets") > counter(before["cn"]!, "outboundPackets"),
                "the ICMP error went through cn's engine")

        // Detached: the engine carries everything again.
        vmPath.close()
        cnPath.close()
        let engineBefore = counter(try lab.stats("vm"), "outboundPackets")
        try lab.udpEcho(client: "vm", server: "cn", address: cn.home4, count: 20)
        var engineAfter = counter(try lab.stats("vm"), "outboundPackets")
        let deadline = Date().addingTimeInterval(10)
        while engineAfter < engineBefore + 20 && Date() < deadline {   // the counters are published now and then
            usleep(100_000)
            engineAfter = counter(try lab.stats("vm"), "outboundPackets")
        }
        let stats = try lab.matctl("vm", "stats")
        #expect(engineAfter >= engineBefore + 20, "vm engine outbound \(engineBefore) -> \(engineAfter):\n\(stats)")
    }

    /// A program the verifier refuses comes back as an error that carries its log.
    @Test func aRefusedProgramReportsTheVerifiersLog() throws {
        // r0 is read before it is written.
        do {
            _ = try BPFSystem.loadProgram([.mov(.r1, .r0), .exit], name: "bad")
            Issue.record("the kernel took a program that reads an unset register")
        } catch {
            #expect(error.detail?.contains("verifier") == true, "\(error)")
            #expect(error.detail?.contains("R0") == true, "\(error)")
        }
    }

    /// A map walked in parts (``BPFSystem/keys(map:keySize:after:limit:)``, which
    /// BPFDatapath.heard(limit:) reads the heard map with): 3,000 keys in a hash map, read
    /// 1,024 at a time each after the last key of the read before, come in three reads of
    /// 1,024, 1,024 and 952, every key once; the read after the end starts over.
    @Test func aMapIsWalkedInPartsOfTheLimit() throws {
        let map = try BPFSystem.createMap(.hash, keySize: 4, valueSize: 8, maxEntries: 4_096, name: "t_walk")
        defer { Glibc.close(map) }
        let all = (0..<3_000).map { TranslationPrograms.key(UInt32(0xC633_0000) + UInt32($0)) }
        for key in all { try BPFSystem.update(map: map, key: key, value: [UInt8](repeating: 1, count: 8)) }
        var reads: [[[UInt8]]] = []
        var cursor: [UInt8]?
        repeat {
            let part = try BPFSystem.keys(map: map, keySize: 4, after: cursor, limit: 1_024)
            reads.append(part)
            cursor = part.count < 1_024 ? nil : part.last
        } while cursor != nil
        #expect(reads.map(\.count) == [1_024, 1_024, 952])
        #expect(Set(reads.joined()) == Set(all) && reads.joined().count == 3_000)
        #expect(try BPFSystem.keys(map: map, keySize: 4, after: nil, limit: 1_024) == reads[0])
    }
}
