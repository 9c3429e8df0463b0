#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATTestSupport
import Testing

/// Behind NAT (docs/datapath.md, "Behind NAT"): a NAT router in front of site N
/// (Tools/lab/nat-site) maps the VM's private 192.0.2.70 1:1 to 203.0.113.60, as a public
/// cloud does. matd keeps translating with the private address and publishes the public
/// one, learned from the IMS (`public-address = auto`) or configured.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct NATLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// The lab with site N and mat-ims; matd on the CN (public) and on the VM with
    /// `publicAddress` as its `public-address` line, and `extra` lines in both `[node]`s.
    func natLab(publicAddress: String, vmBehindNAT: Bool, extra: String = "",
                environment: [String: String] = [:]) throws -> NATLab {
        let lab = try NATLab()
        do {
            _ = try lab.lab.startIMS()
            if vmBehindNAT { try lab.moveVM(host: 70) }
            let config = try lab.lab.writeIMSConfig("vm")
            let text = try String(contentsOfFile: config, encoding: .utf8)
                .replacingOccurrences(of: "uplink = eth0\n", with: "uplink = eth0\npublic-address = \(publicAddress)\n\(extra)")
            try text.write(toFile: config, atomically: true, encoding: .utf8)
            try lab.lab.startMatd("vm", config: config, environment: environment)
            let cnConfig = try lab.lab.writeIMSConfig("cn")
            let cnText = try String(contentsOfFile: cnConfig, encoding: .utf8)
                .replacingOccurrences(of: "uplink = eth0\n", with: "uplink = eth0\n\(extra)")
            try cnText.write(toFile: cnConfig, atomically: true, encoding: .utf8)
            try lab.lab.startMatd("cn", config: cnConfig, environment: environment)
            for node in ["vm", "cn"] where !lab.lab.waitForLog(node, "registered \(Addr.node(node).home4)") {
                throw LabError("matd in \(node) did not register:\n\(lab.lab.matdLog(node))")
            }
        } catch {
            lab.close()
            throw error
        }
        return lab
    }

    /// A move from site A (public) into site N under a TCP flow: the VM asks the IMS which
    /// address it sees, registers and announces 203.0.113.60, the CN challenges it there
    /// (the NAT forwards), and every byte arrives. Both ends' views are checked.
    @Test func aMoveIntoOneToOneNATUnderATCPFlow() throws {
        let nat = try natLab(publicAddress: "auto", vmBehindNAT: false)
        defer { nat.close() }
        let lab = nat.lab
        #expect(lab.waitForLog("vm", "the IMS sees 192.0.2.10 as 192.0.2.10 (no NAT)"), "\(lab.matdLog("vm"))")
        let file = try lab.randomFile("payload", megabytes: 30)
        let transfer = try PacedTransfer(lab, from: "vm", to: "cn", file: file, megabytesPerSecond: 10)
        #expect(lab.waitForLog("vm", "mapping \(cn.home4)"), "\(lab.matdLog("vm"))")
        sleep(1)
        try nat.moveVM(host: 70)
        try transfer.finish()
        #expect(lab.waitForLog("vm", "the IMS sees 192.0.2.70 as 203.0.113.60"), "\(lab.matdLog("vm"))")
        let status = try JSONDecoder().decode(StatusReport.self, from: Data(lab.matctl("vm", "status", "--json").utf8))
        // IPv6 is routed, not translated: the IPv6 MoA is its own public address.
        #expect(status.mobileAddresses == ["192.0.2.70", "2001:db8:d::70"], "\(status)")
        #expect(status.publicAddresses == ["203.0.113.60", "2001:db8:d::70"], "\(status)")
        #expect(try lab.matctl("vm", "status").contains("public addresses: 203.0.113.60, 2001:db8:d::70 (behind NAT)"))
        #expect(lab.waitForLog("vm", "registered \(vm.home4) -> 203.0.113.60"), "\(lab.matdLog("vm"))")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.60*"), "\(lab.matdLog("cn"))")
        #expect(try lab.matctl("vm", "peers").contains("\(cn.home4) -> \(cn.mobile4)*"))
        // The CN took the public address once its challenge was answered through the NAT.
        let counters = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        #expect(counters["challenges_sent", default: 0] >= 1 && counters["bindings_adopted", default: 0] >= 1
                && counters["challenges_unanswered", default: 0] == 0, "\(counters)")
        let answered = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
        #expect(answered["challenges_answered", default: 0] >= 1, "\(answered)")
        // Nothing ever went to the private address from outside.
        #expect(!lab.matdLog("cn").contains("192.0.2.70"), "\(lab.matdLog("cn"))")
        // The probe came through the 1:1 NAT: translated packets, no UDP.
        #expect(nat.waitForEncap("vm", "encap_probe_answers_received", atLeast: 1), "\(lab.matdLog("vm"))")
        let encap = try nat.encapCounters("vm")
        #expect(encap["encap_packets_sent"] == 0 && encap["encap_packets_received"] == 0, "\(encap)")
        #expect(try !lab.matctl("vm", "peers").contains("udp-encap") && !lab.matctl("cn", "peers").contains("udp-encap"))
    }

    /// A lying "what is my address" answer does not redirect the CN's traffic: the NAT
    /// router shows the IMS the VM's queries as coming from 203.0.113.99 (an address of
    /// the router's with nothing behind it), so after the move the VM publishes that; the
    /// CN challenges it there, nobody answers, and the CN goes back to the MoA it had.
    @Test func aWrongPublicAddressIsChallengedAndNotTaken() throws {
        let nat = try natLab(publicAddress: "auto", vmBehindNAT: false)
        defer { nat.close() }
        let lab = nat.lab
        try lab.exec("nat", "ip", "addr", "add", "203.0.113.99/24", "dev", "o")
        try lab.exec("nat", "nft", "insert", "rule", "ip", "nat", "postrouting", "oifname", "o", "ip", "saddr", "192.0.2.70",
                     "ip", "daddr", "192.0.2.132", "udp", "dport", "53", "snat", "to", "203.0.113.99")
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4))
        #expect(lab.waitForLog("cn", "\(vm.home4) -> \(vm.mobile4) seq"), "\(lab.matdLog("cn"))")
        try nat.moveVM(host: 70)
        #expect(lab.waitForLog("vm", "the IMS sees 192.0.2.70 as 203.0.113.99"), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("cn", "did not answer at its announced MoA"), "\(lab.matdLog("cn"))")
        let counters = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        #expect(counters["challenges_unanswered", default: 0] >= 1, "\(counters)")
        let peers = try lab.matctl("cn", "peers")
        #expect(!peers.contains("203.0.113.99*") && peers.contains("\(vm.home4) -> \(vm.mobile4)*"), "\(peers)")
    }

    /// A move into site N while the NAT router drops everything to the IMS: the alerts of
    /// the IPv4 peers wait for the public address, which never comes, and their traffic is
    /// held no longer than ``PublicAddressWaits/timeout`` (10 s, logged and counted). The
    /// CN keeps the old MoA meanwhile (no alert naming the private address went out); once
    /// the IMS answers again the alert names 203.0.113.60 and the CN takes it.
    @Test func aSilentIMSReleasesTheHeldTrafficAfterTenSeconds() throws {
        let nat = try natLab(publicAddress: "auto", vmBehindNAT: false)
        defer { nat.close() }
        let lab = nat.lab
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4))
        #expect(lab.waitForLog("cn", "\(vm.home4) -> \(vm.mobile4) seq"), "\(lab.matdLog("cn"))")
        try lab.exec("nat", "sh", "-c", """
            nft -f - <<EOF
            table ip ims_blackhole {
                chain forward { type filter hook forward priority -10; ip daddr 192.0.2.132 drop; }
            }
            EOF
            """)
        let moved = Date()
        try nat.moveVM(host: 70)
        var expiredAfter: Double?
        while expiredAfter == nil && Date().timeIntervalSince(moved) < 40 {
            let signaling = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
            if signaling["public_address_waits_expired", default: 0] >= 1 {
                expiredAfter = Date().timeIntervalSince(moved)
            } else {
                #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)*"), "no alert while the IMS is silent")
                usleep(250_000)
            }
        }
        print("public-address-timeout: released_after_s=\(expiredAfter.map { String(format: "%.2f", $0) } ?? "never")")
        // The hold began after the move started, so it cannot end sooner than 10 s after it.
        #expect(expiredAfter.map { $0 >= 10 && $0 < 30 } == true, "released after \(expiredAfter ?? -1) s\n\(lab.matdLog("vm"))")
        #expect(lab.matdLog("vm").contains("the IMS has not said which public address it sees for 10 s; releasing the traffic of"),
                "\(lab.matdLog("vm"))")
        try lab.exec("nat", "nft", "delete", "table", "ip", "ims_blackhole")
        #expect(lab.waitForLog("vm", "the IMS sees 192.0.2.70 as 203.0.113.60", timeout: 30), "\(lab.matdLog("vm"))")
        let adopted = try poll(seconds: 30, every: 0.25) { try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.60*") }
        #expect(adopted, "\(lab.matdLog("cn"))")
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4))
    }

    /// A move from site A into site N behind masquerade (port-restricted) under a TCP
    /// flow: the CN's probe answer does not come through the NAT, so the VM's traffic with
    /// the CN goes in UDP, both ways, with keepalives; every byte of the flow arrives, and
    /// a connection the CN opens to the VM afterwards (which masquerade alone would drop)
    /// works too.
    @Test func aMoveIntoMasqueradeUnderATCPFlow() throws {
        let nat = try natLab(publicAddress: "auto", vmBehindNAT: false)
        defer { nat.close() }
        let lab = nat.lab
        let file = try lab.randomFile("payload", megabytes: 60)
        let transfer = try PacedTransfer(lab, from: "vm", to: "cn", file: file, megabytesPerSecond: 8)
        #expect(lab.waitForLog("vm", "mapping \(cn.home4)"), "\(lab.matdLog("vm"))")
        sleep(1)
        try nat.moveVM(host: 80)
        #expect(lab.waitForLog("vm", "the IMS sees 192.0.2.80 as 203.0.113.50"), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("vm", "traffic goes in UDP"), "\(lab.matdLog("vm"))")
        try transfer.finish()
        #expect(try lab.matctl("vm", "peers").contains("\(cn.home4) -> \(cn.mobile4)*"))
        #expect(try lab.matctl("vm", "peers").contains("path udp-encap"), "\(lab.matdLog("vm"))")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.50*"), "\(lab.matdLog("cn"))")
        #expect(try lab.matctl("cn", "peers").contains("path udp-encap"), "\(lab.matdLog("cn"))")
        // The CN opens a connection to the VM's HoA: its SYN reaches the VM only in UDP.
        let reply = try lab.randomFile("reply", megabytes: 5)
        let exchange = try lab.tcpTransfer(listener: "vm", address: vm.home4, connector: "cn", sender: "cn", file: reply,
                                           port: 5020)
        #expect(exchange.listenerSawPeer == cn.home4)
        // Counted per datagram, one per path-MTU-sized segment: about 50 MB after the
        // move is some 35,000 datagrams (a lower bound that held when one datagram carried
        // a whole super-packet).
        let vmEncap = try nat.encapCounters("vm"), cnEncap = try nat.encapCounters("cn")
        #expect(vmEncap["encap_packets_sent", default: 0] > 300 && vmEncap["encap_packets_received", default: 0] > 100,
                "\(vmEncap)")
        #expect(cnEncap["encap_packets_received", default: 0] > 300 && cnEncap["encap_probes_answered", default: 0] >= 3,
                "\(cnEncap)")
        // A Prometheus scrape carries the same counters.
        let scraped = try nat.scrapedEncap("vm")
        #expect(scraped["packets_sent", default: 0] >= vmEncap["encap_packets_sent", default: 0]
                && scraped["packets_sent", default: 0] > 300 && scraped.count == vmEncap.count, "\(scraped)")
    }

    /// A NAT that forgets a UDP binding 3 s after its last packet out and then lets in,
    /// to a port still bound, UDP from anywhere (endpoint-independent filtering, as many
    /// home routers do). The VM, in UDP behind it with keepalives every second, sends
    /// nothing for 8 s; the CN moves: its alert, from an address the NAT has never seen,
    /// reaches the VM through the signaling binding the keepalives held open, and the VM
    /// follows at once (by the alert, not by a lookup once the mapping lapses).
    @Test func aCorrespondentThatMovesAlertsANodeSilentBehindNAT() throws {
        let nat = try natLab(publicAddress: "auto", vmBehindNAT: false, extra: "encap-keepalive = 1\n")
        defer { nat.close() }
        let lab = nat.lab
        try nat.cone(seconds: 3)
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4))
        try nat.moveVM(host: 80)
        #expect(lab.waitForLog("vm", "the IMS sees 192.0.2.80 as 203.0.113.50"), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("vm", "traffic goes in UDP"), "\(lab.matdLog("vm"))")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.50*"), "\(lab.matdLog("cn"))")
        // One datagram from a port nothing else uses: its binding is what silence leaves.
        _ = try lab.exec("vm", "python3", "-c", """
            import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("192.0.2.80", 40999)); s.sendto(b"x", ("203.0.113.1", 9))
            """)
        sleep(8)
        let bindings = try lab.exec("nat", "nft", "list", "map", "ip", "cone", "bindings")
        #expect(!bindings.contains("40999 ") && bindings.contains("7540 expires") && bindings.contains("7541 expires"),
                "\(bindings)")
        let before = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
        #expect(before["keepalives_sent", default: 0] >= 8, "\(before)")
        let cnCounters = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        #expect(cnCounters["keepalives_received", default: 0] >= 8 && cnCounters["refused_malformed", default: 0] == 0,
                "\(cnCounters)")
        let moved = Date()
        try nat.moveCN()
        #expect(lab.waitForLog("vm", "\(cn.home4) -> 192.0.2.140 seq", timeout: 10), "\(lab.matdLog("vm"))")
        let followed = Date().timeIntervalSince(moved)
        let learned = lab.matdLog("vm").split(separator: "\n").filter { $0.contains("\(cn.home4) -> 192.0.2.140 seq") }
        #expect(!learned.isEmpty && learned.allSatisfy { $0.contains("(alert, MoA") }, "\(learned)")
        // Within the CN's first retransmissions, not the lapse of a lookup (minutes).
        #expect(followed < 5, "the VM followed \(followed) s after the move")
        let after = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
        #expect(after["updates_received", default: 0] > before["updates_received", default: 0], "\(after)")
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4), "\(lab.matdLog("vm"))")
    }

    /// The 60 s return to direct, at `encap-reprobe = 3`: the VM in UDP behind masquerade
    /// stays there while the NAT drops what it has not seen (its reprobes are answered from
    /// a port its keepalives never went to), and goes back to direct within a reprobe of the
    /// NAT becoming 1:1 on the same public address; the CN follows once the keepalives stop.
    /// A TCP flow runs across all of it, byte-identical.
    @Test func aNodeInUDPGoesDirectWhenItsNATBecomesOneToOne() throws {
        let nat = try natLab(publicAddress: "auto", vmBehindNAT: false, extra: "encap-keepalive = 1\nencap-reprobe = 3\n")
        defer { nat.close() }
        let lab = nat.lab
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4))
        try nat.moveVM(host: 80)
        #expect(lab.waitForLog("vm", "traffic goes in UDP"), "\(lab.matdLog("vm"))")
        let file = try lab.randomFile("payload", megabytes: 80)
        let transfer = try PacedTransfer(lab, from: "vm", to: "cn", file: file, megabytesPerSecond: 8)
        // Two reprobes (3 s apart) under masquerade: unanswered, still in UDP.
        sleep(7)
        #expect(!lab.matdLog("vm").contains("goes direct again"), "\(lab.matdLog("vm"))")
        #expect(try lab.matctl("vm", "peers").contains("path udp-encap"), "\(lab.matdLog("vm"))")
        try nat.oneToOne(host: 80)
        #expect(lab.waitForLog("vm", "traffic to \(cn.mobile4) goes direct again", timeout: 15), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("cn", "no UDP from 203.0.113.50 for 4 s", timeout: 15), "\(lab.matdLog("cn"))")
        try transfer.finish()
        #expect(try !lab.matctl("vm", "peers").contains("udp-encap") && !lab.matctl("cn", "peers").contains("udp-encap"))
        // Direct both ways now: a connection the CN opens to the VM (which the masquerade
        // would have dropped) carries no UDP.
        let sent = try nat.encapCounters("vm")["encap_packets_sent", default: 0]
        let received = try nat.encapCounters("cn")["encap_packets_received", default: 0]
        let reply = try lab.randomFile("reply", megabytes: 5)
        let exchange = try lab.tcpTransfer(listener: "vm", address: vm.home4, connector: "cn", sender: "cn", file: reply,
                                           port: 5020)
        #expect(exchange.listenerSawPeer == cn.home4)
        #expect(try nat.encapCounters("vm")["encap_packets_sent", default: 0] == sent)
        #expect(try nat.encapCounters("cn")["encap_packets_received", default: 0] == received)
        #expect(try nat.encapCounters("vm")["encap_probe_answers_received", default: 0] >= 1)
    }

    /// Segmentation to the path MTU: the VM in UDP behind masquerade, the NAT's outside
    /// link (both ends) at MTU 1400, while the VM's uplink and TUN device stay at 1500, so
    /// TCP's packets (and the GSO super-packets the engines read) are too large for the path
    /// once encapsulated. Each engine cuts them into datagrams that fit (learning 1400 from
    /// the routers' ICMP errors), with `UDP_SEGMENT` and with `sendmmsg`: a TCP flow each
    /// way arrives byte-identical, and no namespace on the path fragments or reassembles a
    /// packet (the kernels' IP counters).
    @Test(arguments: ["", "sendmmsg"])
    func tcpInUDPIsCutToThePathMTUWithoutFragments(segmentation: String) throws {
        let nat = try natLab(publicAddress: "auto", vmBehindNAT: false,
                             environment: segmentation.isEmpty ? [:] : ["MATD_ENCAP_SEGMENTATION": segmentation])
        defer { nat.close() }
        let lab = nat.lab
        #expect(try lab.ping("vm", cn.home4) || lab.ping("vm", cn.home4))
        try nat.moveVM(host: 80)
        #expect(lab.waitForLog("vm", "traffic goes in UDP"), "\(lab.matdLog("vm"))")
        try lab.exec("nat", "ip", "link", "set", "o", "mtu", "1400")
        try lab.exec("router", "ip", "link", "set", lab.routerPort("nat"), "mtu", "1400")
        let nodes = ["vm", "nat", "router", "cn"]
        let before = try nodes.map { try fragmentCounters(lab, $0) }
        let file = try lab.randomFile("payload", megabytes: 20)
        let toCN = try lab.tcpTransfer(listener: "cn", address: cn.home4, connector: "vm", sender: "vm", file: file,
                                       port: 5030)
        #expect(toCN.listenerSawPeer == vm.home4)
        let toVM = try lab.tcpTransfer(listener: "vm", address: vm.home4, connector: "cn", sender: "cn", file: file,
                                       port: 5031)
        #expect(toVM.listenerSawPeer == cn.home4)
        let after = try nodes.map { try fragmentCounters(lab, $0) }
        for (index, node) in nodes.enumerated() {
            #expect(after[index] == before[index], "\(node): IP fragment counters \(before[index]) -> \(after[index])")
        }
        // Each way, the TCP packets were cut: 20 MB is some 15,000 segments of 1,300 bytes.
        let vmEncap = try nat.encapCounters("vm"), cnEncap = try nat.encapCounters("cn")
        for counters in [vmEncap, cnEncap] {
            #expect(counters["encap_packets_segmented", default: 0] > 100
                    && counters["encap_packets_sent", default: 0] > 15_000
                    && counters["encap_packets_received", default: 0] > 15_000, "\(counters)")
            // Joined again on receive where they arrive as a train (one read, UDP_GRO): a
            // UDP_SEGMENT send crosses the lab's veths and NAT whole; sendmmsg's datagrams
            // arrive one by one (veths do no GRO) and nothing joins.
            if segmentation.isEmpty {
                #expect(counters["encap_segments_coalesced", default: 0] > 1_000, "\(counters)")
            }
        }
        #expect(try lab.matctl("vm", "peers").contains("path udp-encap"), "\(lab.matdLog("vm"))")
    }

    /// The kernel's IP fragmentation and reassembly counters in `node` (/proc/net/snmp).
    func fragmentCounters(_ lab: Lab, _ node: String) throws -> [String: Int] {
        let lines = try lab.exec(node, "cat", "/proc/net/snmp").split(separator: "\n").filter { $0.hasPrefix("Ip: ") }
        guard lines.count == 2 else { throw LabError("no Ip lines in /proc/net/snmp of \(node)") }
        let names = lines[0].split(separator: " "), values = lines[1].split(separator: " ")
        var counters: [String: Int] = [:]
        for (name, value) in zip(names, values) where ["FragCreates", "FragOKs", "ReasmReqds", "ReasmOKs"].contains(name) {
            counters[String(name)] = Int(value)
        }
        guard counters.count == 4 else { throw LabError("IP counters of \(node): \(lines)") }
        return counters
    }

    /// The CN's correspondent sits behind 1:1 NAT from the start, its public address
    /// configured: first contact from the CN (its alert and its packets reach the VM
    /// through the NAT), then the CN moves under a TCP flow towards the VM and the VM,
    /// behind the NAT, follows.
    @Test func aCorrespondentBehindOneToOneNAT() throws {
        let nat = try natLab(publicAddress: "203.0.113.60", vmBehindNAT: true)
        defer { nat.close() }
        let lab = nat.lab
        #expect(lab.waitForLog("vm", "registered \(vm.home4) -> 203.0.113.60"), "\(lab.matdLog("vm"))")
        let file = try lab.randomFile("payload", megabytes: 5)
        let exchange = try lab.tcpTransfer(listener: "vm", address: vm.home4, connector: "cn", sender: "cn", file: file)
        #expect(exchange.listenerSawPeer == cn.home4)
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.60*"), "\(lab.matdLog("cn"))")
        let flow = try lab.randomFile("flow", megabytes: 20)
        let transfer = try PacedTransfer(lab, from: "cn", to: "vm", file: flow, megabytesPerSecond: 8)
        sleep(1)
        try nat.moveCN()
        try transfer.finish()
        #expect(try lab.matctl("vm", "peers").contains("\(cn.home4) -> 192.0.2.140*"), "\(lab.matdLog("vm"))")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.60*"))
        let status = try JSONDecoder().decode(StatusReport.self, from: Data(lab.matctl("vm", "status", "--json").utf8))
        // IPv6 is routed, not translated: the IPv6 MoA is its own public address.
        #expect(status.mobileAddresses == ["192.0.2.70", "2001:db8:d::70"], "\(status)")
        #expect(status.publicAddresses == ["203.0.113.60", "2001:db8:d::70"], "\(status)")
    }
}

/// A lab with site N behind a NAT router (Tools/lab/nat-site); `close()` removes both.
final class NATLab: @unchecked Sendable {
    let lab: Lab
    private var closed = false

    init() throws {
        lab = try Lab()
        do {
            try check([LabPaths.natSite, "up"], timeout: 60, environment: ["LAB": lab.name])
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Moves the VM node into site N as 192.0.2.HOST (70 is the 1:1 NAT's; others are masqueraded).
    func moveVM(host: Int) throws {
        try check([LabPaths.natSite, "move-vm", "\(host)"], timeout: 30, environment: ["LAB": lab.name])
    }

    /// The NAT forgets UDP flows `seconds` after their last packet and filters independently
    /// of the endpoint (Tools/lab/nat-site cone).
    func cone(seconds: Int) throws {
        try check([LabPaths.natSite, "cone", "\(seconds)"], timeout: 30, environment: ["LAB": lab.name])
    }

    /// The NAT maps 192.0.2.HOST 1:1 to the masquerade's address (Tools/lab/nat-site one-to-one).
    func oneToOne(host: Int) throws {
        try check([LabPaths.natSite, "one-to-one", "\(host)"], timeout: 30, environment: ["LAB": lab.name])
    }

    /// Moves the CN within its site, from 192.0.2.130 to 192.0.2.140.
    func moveCN() throws {
        try lab.exec("cn", "sh", "-c", """
            ip -batch - <<EOF
            addr del 192.0.2.130/25 dev eth0
            addr add 192.0.2.140/25 dev eth0
            route replace default via 192.0.2.129 dev eth0
            EOF
            """)
    }

    /// The UDP encapsulation's counters of matd in `node`.
    func encapCounters(_ node: String) throws -> [String: Int] {
        try lab.stats(node)["encapsulation"] as? [String: Int] ?? [:]
    }

    /// The `matd_encapsulation_events_total` series of `matctl stats --prometheus` in
    /// `node`, by event.
    func scrapedEncap(_ node: String) throws -> [String: Int] {
        let prefix = "matd_encapsulation_events_total{event=\""
        var counters: [String: Int] = [:]
        for line in try lab.matctl(node, "stats", "--prometheus").split(separator: "\n") where line.hasPrefix(prefix) {
            let rest = line.dropFirst(prefix.count)
            guard let quote = rest.firstIndex(of: "\""), let space = rest.lastIndex(of: " "),
                  let value = Int(rest[rest.index(after: space)...]) else { continue }
            counters[String(rest[..<quote])] = value
        }
        return counters
    }

    /// Waits until the encapsulation counter `name` of matd in `node` reaches `atLeast`.
    func waitForEncap(_ node: String, _ name: String, atLeast: Int, timeout: Double = 20) -> Bool {
        poll(seconds: timeout, every: 0.2) { (try? encapCounters(node)[name]).map { $0 >= atLeast } ?? false }
    }

    func close() {
        guard !closed else { return }
        closed = true
        // matd first (the lab's close), then the NAT namespace, which Tools/testbed does not know.
        lab.close()
        _ = try? runCommand([LabPaths.natSite, "down"], timeout: 60, environment: ["LAB": lab.name])
    }
}

extension LabPaths {
    static var natSite: String { repositoryRoot.appendingPathComponent("Tools/lab/nat-site").path }
}
