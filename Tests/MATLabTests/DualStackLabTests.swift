#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing

/// A dual-stack pair with mat-ims and no static peers, each node configured like
/// docs/config.md's example: an IPv4 and an IPv6 HoA, one `[ims]` section, one key file
/// (holding a key per HoA, as `mat-ims keygen --hoa V4 --hoa V6` prints it). Both
/// families must register, be found, carry first contact, TCP, UDP, ICMP and path MTU
/// discovery, and follow a move.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct DualStackLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    @Test func dualStackPairThroughTheIMS() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS(dualStack: true)
        // The CN reaches the IMS over IPv6 only, the VM over IPv4 first.
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm", dualStack: true))
        try lab.startMatd("cn", config: try lab.writeIMSConfig("cn", dualStack: true, servers: ["[2001:db8:c::132]"]))
        for node in ["vm", "cn"] {
            let me = Addr.node(node)
            for family in Addr.Family.allCases {
                #expect(lab.waitForLog(node, "registered \(me.home(family)) -> \(me.mobile(family)) seq"),
                        "\(node) \(family): \(lab.matdLog(node))")
            }
        }
        #expect(!lab.matdLog("vm").contains("REFUSED") && !lab.matdLog("cn").contains("REFUSED"))
        #expect(lab.matdLog("cn").contains("at [2001:db8:c::132]:53"), "\(lab.matdLog("cn"))")
        // Both names are in the IMS itself, each with the MoA of its family.
        for node in ["vm", "cn"] {
            let me = Addr.node(node)
            #expect(try lab.imsAnswer(lab.hoaName(me.home4), "A") == me.mobile4)
            #expect(try lab.imsAnswer(lab.hoaName(me.home6), "AAAA") == me.mobile6)
        }

        // First contact, one family from each side: neither node knows the other yet.
        let file = try lab.randomFile("payload", megabytes: 5)
        let four = try lab.tcpTransfer(listener: "cn", address: cn.home4, connector: "vm", sender: "vm", file: file)
        #expect(four.listenerSawPeer == vm.home4 && four.connectorLocal == vm.home4, "\(four)")
        let six = try lab.tcpTransfer(listener: "vm", address: vm.home6, connector: "cn", sender: "cn", file: file,
                                      port: 5003)
        #expect(six.listenerSawPeer == cn.home6 && six.connectorLocal == cn.home6, "\(six)")
        for family in Addr.Family.allCases {
            #expect(try lab.matctl("vm", "peers").contains("\(cn.home(family)) -> \(cn.mobile(family))*"))
            #expect(try lab.matctl("cn", "peers").contains("\(vm.home(family)) -> \(vm.mobile(family))*"))
        }

        // TCP every way, UDP and ICMP echo both ways, for both families.
        try trafficMatrix(lab, file: file)
        // ICMP errors too: a datagram to a closed port comes back as port unreachable.
        for family in Addr.Family.allCases {
            #expect(try lab.udpToClosedPort("vm", cn.home(family)), "vm -> cn \(family)")
            #expect(try lab.udpToClosedPort("cn", vm.home(family)), "cn -> vm \(family)")
        }
        try pathMTUDiscovery(lab)
        try moveUnderLoad(lab)
        try aLateIPv6AddressConcernsOnlyIPv6Peers(lab)
    }

    /// The VM's IPv6 address comes up after its IPv4 one (as SLAAC after DHCP): only the
    /// IPv6 peer is alerted; the IPv4 peer's traffic is neither held nor re-announced.
    func aLateIPv6AddressConcernsOnlyIPv6Peers(_ lab: Lab) throws {
        func signaling() throws -> [String: Int] { try lab.stats("vm")["signaling"] as? [String: Int] ?? [:] }
        func held() throws -> UInt64 { drops(try lab.stats("vm"))["awaiting_binding"] ?? 0 }
        _ = try lab.exec("vm", "ip", "-6", "addr", "del", "2001:db8:b::10/64", "dev", "eth0")
        #expect(lab.waitForLog("vm", "mobile addresses now 203.0.113.10 (were"), "\(lab.matdLog("vm"))")
        let before = try signaling()
        let heldBefore = try held()
        // IPv4 traffic to the CN throughout: a hold would drop some of it.
        let pings = try lab.spawn("vm", ["ping", "-q", "-i", "0.01", "-c", "300", cn.home4])
        usleep(500_000)
        _ = try lab.exec("vm", "ip", "-6", "addr", "add", "2001:db8:b::10/64", "dev", "eth0", "nodad")
        #expect(lab.waitForLog("vm", "mobile addresses now 203.0.113.10, 2001:db8:b::10 (were 203.0.113.10)"),
                "\(lab.matdLog("vm"))")
        var after: [String: Int] = [:]
        _ = try poll(seconds: 15, every: 0.1) {
            after = try signaling()
            return after["acks_received", default: 0] > before["acks_received", default: 0]
        }
        // One alert (to the IPv6 peer), acknowledged; none to the IPv4 peer.
        #expect(after["updates_sent", default: 0] == before["updates_sent", default: 0] + 1, "\(before) -> \(after)")
        #expect(after["acks_received", default: 0] == before["acks_received", default: 0] + 1, "\(before) -> \(after)")
        // The IPv4 pings were never held.
        _ = pings.wait(timeout: 30)
        #expect(try held() == heldBefore)
        for family in Addr.Family.allCases {
            #expect(try lab.ping("vm", cn.home(family)), "vm -> cn \(family) after IPv6 came back")
        }
    }

    /// The router's link towards the receiver carries 1280 bytes at most: the sender's
    /// full-size segments (1500) draw "fragmentation needed" / "packet too big" to its
    /// MoA, which matd must hand to the HoA socket translated, or the transfer stalls (it
    /// did, at 0 bit/s, before the ICMP-error rule: docs/datapath-experiment.md). One
    /// direction at a time: a receiver that has learned the small MTU itself advertises a
    /// small MSS, and its peer would never send a packet too big.
    func pathMTUDiscovery(_ lab: Lab) throws {
        let file = try lab.randomFile("pmtu", megabytes: 3)
        for (sender, receiver, bridge) in [("vm", "cn", "br-c"), ("cn", "vm", "br-a")] {
            try lab.exec("router", "ip", "link", "set", bridge, "mtu", "1280")
            for family in Addr.Family.allCases {
                let peer = Addr.node(receiver).home(family)
                try lab.tcpTransfer(listener: receiver, address: peer, connector: sender, sender: sender, file: file,
                                    port: 5004)
                // The sender's kernel learned the path's MTU for the peer's HoA.
                let route = try lab.exec(sender, "ip", "route", "get", peer)
                #expect(route.contains("mtu 1280"), "\(sender) -> \(receiver) \(family): \(route)")
            }
            try lab.exec("router", "ip", "link", "set", bridge, "mtu", "1500")
            // The exceptions live with the routes into mat0, in matd's table, not in main.
            for family in ["-4", "-6"] {
                try lab.exec(sender, "ip", family, "route", "flush", "cache", "table", "all")
            }
            for family in Addr.Family.allCases {
                let route = try lab.exec(sender, "ip", "route", "get", Addr.node(receiver).home(family))
                #expect(!route.contains("mtu 1280"), "the flush left \(sender) with \(route)")
            }
        }
    }

    /// A flow per family from the CN to the VM while the VM moves to site B: both arrive
    /// whole, both HoAs are registered at the new MoAs, and the CN sends there.
    func moveUnderLoad(_ lab: Lab) throws {
        let file = try lab.randomFile("moving", megabytes: 16)
        let flows = try Addr.Family.allCases.enumerated().map { index, family in
            try PacedTransfer(lab, family: family, from: "cn", to: "vm", file: file, megabytesPerSecond: 4, port: 5010 + index)
        }
        sleep(1)
        try lab.moveVM(to: "b")
        for flow in flows { try flow.finish() }
        let moved = ["v4": "203.0.113.10", "v6": "2001:db8:b::10"]
        for family in Addr.Family.allCases {
            let moa = try #require(moved[family.rawValue])
            #expect(lab.waitForLog("vm", "registered \(vm.home(family)) -> \(moa) seq"), "\(lab.matdLog("vm"))")
            #expect(try lab.imsAnswer(lab.hoaName(vm.home(family)), family == .v4 ? "A" : "AAAA") == moa)
            let peers = try lab.matctl("cn", "peers")
            #expect(peers.contains("\(vm.home(family)) -> \(moa)*"), "\(peers)")
            #expect(try lab.ping("vm", cn.home(family)), "vm -> cn \(family) after the move")
            #expect(try lab.ping("cn", vm.home(family)), "cn -> vm \(family) after the move")
            try lab.udpEcho(client: "cn", server: "vm", address: vm.home(family), count: 50)
        }
    }

    /// A node whose key file lacks the key of one HoA does not start, and says which key
    /// it needs; `matd check-config` says the same.
    @Test func aMissingKeyForOneFamilyIsAnErrorAtStart() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS(dualStack: true)
        let config = try lab.writeIMSConfig("vm", dualStack: true)
        // Only the IPv4 HoA's key, as docs/config.md's example had it before.
        let onlyFour = try check([LabPaths.matIMS, "keygen", lab.hoaName(vm.home4)], timeout: 10)
        try onlyFour.write(toFile: lab.path("keys/vm.key"), atomically: true, encoding: .utf8)
        chmod(lab.path("keys/vm.key"), 0o600)
        let expected = "no key for home address \(vm.home6)"
        let checked = try lab.run("vm", [LabPaths.matd, "check-config", config])
        #expect(!checked.succeeded && checked.stderr.contains(expected), "\(checked.summary)")
        let run = try lab.run("vm", [LabPaths.matd, "run", "--config", config], timeout: 30)
        let name6 = try lab.hoaName(vm.home6)
        #expect(!run.succeeded && run.stderr.contains(expected) && run.stderr.contains(name6), "\(run.summary)")
    }
}

extension DualStackLabTests {
    /// The VM's keys are rotated (new secrets under the same names, as `mat-ims keygen`
    /// makes them): the IMS is restarted with them (it reads keys at start), the VM's key
    /// file is rewritten, and SIGHUP, with the configuration's text unchanged, makes matd
    /// sign with the new keys and register both HoAs again at once.
    @Test func sighupTakesRotatedKeys() throws {
        let lab = try Lab()
        defer { lab.close() }
        let ims = try lab.startIMS(dualStack: true)
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm", dualStack: true))
        for family in Addr.Family.allCases {
            #expect(lab.waitForLog("vm", "registered \(vm.home(family)) -> \(vm.mobile(family)) seq"), "\(lab.matdLog("vm"))")
        }
        ims.signal(SIGTERM)
        _ = ims.wait(timeout: 15)
        let rotated = try check([LabPaths.matIMS, "keygen", "--hoa", vm.home4, "--hoa", vm.home6,
                                 "--zone", "mat.example."], timeout: 10)
        try rotated.write(toFile: lab.path("keys/vm.key"), atomically: true, encoding: .utf8)
        chmod(lab.path("keys/vm.key"), 0o600)
        let restarted = try lab.spawn("ims", [LabPaths.matIMS, "run", "--config", lab.path("ims.conf")])
        #expect(restarted.waitForOutput(timeout: 20, { $0.contains("listening on") }))
        try lab.signalMatd("vm", SIGHUP)
        #expect(lab.waitForLog("vm", "reload: [ims] section applied"), "\(lab.matdLog("vm"))")
        for family in Addr.Family.allCases {
            let line = "registered \(vm.home(family)) -> \(vm.mobile(family)) seq"
            _ = poll(seconds: 20, every: 0.1) { lab.matdLog("vm").components(separatedBy: line).count >= 3 }
            #expect(lab.matdLog("vm").components(separatedBy: line).count == 3, "\(family): \(lab.matdLog("vm"))")
        }
    }
}

extension Lab {
    /// The mapping name of `hoa` (`mat-ims name`).
    func hoaName(_ hoa: String) throws -> String {
        try check([LabPaths.matIMS, "name", hoa, "--zone", "mat.example."], timeout: 10)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// What mat-ims answers for `name`/`type`, asked from the plain host with dig.
    func imsAnswer(_ name: String, _ type: String) throws -> String {
        try exec("plain", "dig", "@192.0.2.132", "+norec", "+short", name, type)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
