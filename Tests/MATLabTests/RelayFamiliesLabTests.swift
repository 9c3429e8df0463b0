#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATSignaling
import MATTestSupport
import Testing

/// The relay over IPv6 and across families (docs/signaling.md, "Relay"): two dual-stack
/// nodes in UDP to each other (`udp-encapsulation = always`) whose direct datagrams the
/// router drops (UDP on `encap-port` between their MoAs, both families), so no keepalive
/// arrives and each sends the other's traffic through the relay, matd with `[relay] serve
/// = on` in the plain host's namespace (a relay binds `encap-port` in every family the
/// host has, whatever its HoAs: the IPv6 test's relay has an IPv4 HoA only). Each node
/// names the relay by the address the test gives it: both by IPv6, or the VM by IPv4 and
/// the CN by IPv6, when the relay forwards each node's datagrams to the other in the other
/// family.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct RelayFamiliesLabTests {
    let vm = Addr.vm, cn = Addr.cn
    static let relayHoA4 = "198.51.100.30", relayHoA6 = "2001:db8:100::30"
    /// Seconds: three of them without a keepalive send a peer's traffic to the relay.
    static let keepalive = 1

    /// `ims`: the node registers both HoAs in the lab's mat-ims (with a key per HoA), where
    /// a relay with no `client-key` finds its key.
    func nodeConfig(_ lab: Lab, _ node: String, relay: String, peerKey: SigningKey, ims: Bool = false) throws -> String {
        let me = Addr.node(node), peer = Addr.node(node == "vm" ? "cn" : "vm")
        var text = """
            [node]
            home-address = \(me.home4)
            home-address = \(me.home6)
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            domain-prefix = 2001:db8:100::/64
            control-socket = \(lab.socket(node))
            state-directory = \(lab.path("\(node)-state"))
            udp-encapsulation = always
            encap-keepalive = \(Self.keepalive)

            [peer]
            home-address = \(peer.home4)
            mobile-address = \(peer.mobile4)
            public-key = \(peerKey.publicKey.base64)

            [peer]
            home-address = \(peer.home6)
            mobile-address = \(peer.mobile6)
            public-key = \(peerKey.publicKey.base64)

            [relay]
            address = \(relay)

            """
        if ims { text += Self.imsSection(lab, node) }
        let path = lab.path("\(node).conf")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// An `[ims]` section naming the lab's mat-ims and `node`'s key file.
    static func imsSection(_ lab: Lab, _ node: String) -> String {
        """
        [ims]
        server = 192.0.2.132
        zone = mat.example.
        key-file = \(lab.path("keys/\(node).key"))
        record-ttl = 5

        """
    }

    /// The relay's; `dualStack: false` gives it an IPv4 HoA only. `imsKeyed`: it pins no
    /// `client-key` and looks its clients' keys up in the lab's mat-ims instead.
    func relayConfig(_ lab: Lab, keys: [String: SigningKey], dualStack: Bool, imsKeyed: Bool = false) throws -> String {
        var text = """
            [node]
            home-address = \(Self.relayHoA4)
            \(dualStack ? "home-address = \(Self.relayHoA6)" : "")
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            \(dualStack || imsKeyed ? "domain-prefix = 2001:db8:100::/64" : "")
            control-socket = \(lab.socket("plain"))
            state-directory = \(lab.path("plain-state"))
            encap-keepalive = \(Self.keepalive)

            [relay]
            serve = on

            """
        for node in ["vm", "cn"] where !imsKeyed {
            let me = Addr.node(node)
            text += "client-key = \(me.home4) \(keys[node]!.publicKey.base64)\n"
            text += "client-key = \(me.home6) \(keys[node]!.publicKey.base64)\n"
        }
        if imsKeyed { text += "\n" + Self.imsSection(lab, "plain") }
        let path = lab.path("plain.conf")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The lab, the router dropping the nodes' direct UDP, the relay, and both nodes
    /// naming the relay at `vmRelay` and `cnRelay`; returns once both send each other's
    /// traffic of both families through the relay.
    /// `imsKeyed`: mat-ims runs, the nodes register their HoAs there, and the relay takes
    /// all four keys from it (``relayConfig(_:keys:dualStack:imsKeyed:)``).
    func start(vmRelay: String, cnRelay: String, relayDualStack: Bool = true, imsKeyed: Bool = false) throws -> Lab {
        let lab = try Lab()
        do {
            if imsKeyed { _ = try lab.startIMS(dualStack: true, more: ["plain": Self.relayHoA4]) }
            try lab.exec("router", "sh", "-c", """
                nft -f - <<'EOF'
                table inet nodirect {
                    chain forward {
                        type filter hook forward priority 0; policy accept;
                        ip saddr { \(vm.mobile4), \(cn.mobile4) } ip daddr { \(vm.mobile4), \(cn.mobile4) } udp dport 7541 drop
                        ip6 saddr { \(vm.mobile6), \(cn.mobile6) } ip6 daddr { \(vm.mobile6), \(cn.mobile6) } udp dport 7541 drop
                    }
                }
                EOF
                """)
            let keys = ["vm": try lab.writeSigningKey("vm"), "cn": try lab.writeSigningKey("cn")]
            try lab.startMatd("plain", config: try relayConfig(lab, keys: keys, dualStack: relayDualStack, imsKeyed: imsKeyed))
            // It listens in both families either way, and says so.
            guard lab.waitForLog("plain", "relaying on encap-port 7541 over IPv4 and IPv6", timeout: 30) else {
                throw LabError("the relay does not say it listens in both families:\n\(lab.matdLog("plain"))")
            }
            try lab.startMatd("vm", config: try nodeConfig(lab, "vm", relay: vmRelay, peerKey: keys["cn"]!, ims: imsKeyed))
            try lab.startMatd("cn", config: try nodeConfig(lab, "cn", relay: cnRelay, peerKey: keys["vm"]!, ims: imsKeyed))
            for (node, peer) in [("vm", cn), ("cn", vm)] {
                for moa in [peer.mobile4, peer.mobile6]
                where !lab.waitForLog(node, "no keepalive from \(moa) for \(3 * Self.keepalive) s: its traffic goes through the relay",
                                      timeout: 60) {
                    throw LabError("matd in \(node) did not send \(moa)'s traffic through the relay:\n\(lab.matdLog(node))"
                                   + "\nrelay:\n\(lab.matdLog("plain"))")
                }
            }
        } catch {
            lab.close()
            throw error
        }
        return lab
    }

    /// Ping and a TCP transfer each way between the HoAs of both families, through the
    /// relay; each node's counters show relayed packets sent and taken, none refused.
    func checkTrafficGoesThroughTheRelay(_ lab: Lab) throws {
        for family in Addr.Family.allCases {
            #expect(try lab.ping("vm", cn.home(family), count: 5), "\(family): \(lab.matdLog("vm"))")
            #expect(try lab.ping("cn", vm.home(family), count: 5), "\(family): \(lab.matdLog("cn"))")
        }
        let file = try lab.randomFile("payload", megabytes: 2)
        let there = try lab.tcpTransfer(listener: "cn", address: cn.home6, connector: "vm", sender: "vm", file: file,
                                        port: 5031)
        #expect(there.listenerSawPeer == vm.home6)
        let back = try lab.tcpTransfer(listener: "vm", address: vm.home4, connector: "cn", sender: "cn", file: file,
                                       port: 5032)
        #expect(back.listenerSawPeer == cn.home4)
        for node in ["vm", "cn"] {
            let peers = try lab.matctl(node, "peers")
            #expect(peers.split(separator: "\n").filter { $0.contains("path relay") }.count == 2, "\(node): \(peers)")
            let counters = try lab.stats(node)["encapsulation"] as? [String: Int] ?? [:]
            #expect(counters["encap_relay_packets_sent", default: 0] > 100
                    && counters["encap_relay_packets_received", default: 0] > 100
                    && counters["encap_relay_refused", default: 0] == 0 && counters["encap_keepalives_received", default: 0] == 0,
                    "\(node): \(counters)")
        }
        let relay = try lab.stats("plain")["relay"] as? [String: Int] ?? [:]
        #expect(relay["listening_ipv4"] == 1 && relay["listening_ipv6"] == 1, "\(relay)")
        #expect(relay["registrations_accepted", default: 0] >= 2 && relay["forwarded", default: 0] > 200
                && relay["unknown_sender", default: 0] == 0 && relay["unknown_destination", default: 0] == 0, "\(relay)")
        let relayEncap = try lab.stats("plain")["encapsulation"] as? [String: Int] ?? [:]
        #expect(relayEncap["encap_send_failures", default: 0] == 0, "\(relayEncap)")
    }

    /// Both nodes reach the relay by IPv6 only, a relay with an IPv4 HoA only: IPv4 and
    /// IPv6 traffic between their HoAs goes in IPv6 datagrams through it.
    @Test func twoNodesReachEachOtherThroughARelayOverIPv6() throws {
        let lab = try start(vmRelay: Addr.plain6, cnRelay: Addr.plain6, relayDualStack: false)
        defer { lab.close() }
        try checkTrafficGoesThroughTheRelay(lab)
    }

    /// The VM reaches the relay by IPv4, the CN by IPv6: the relay forwards between the
    /// families (its socket of the target's family sends), and both families of HoA traffic
    /// flow.
    @Test func aRelayForwardsBetweenANodeOnIPv4AndANodeOnIPv6() throws {
        let lab = try start(vmRelay: Addr.plain4, cnRelay: Addr.plain6)
        defer { lab.close() }
        try checkTrafficGoesThroughTheRelay(lab)
    }

    /// Dual-stack nodes at a relay that pins no key (docs/signaling.md, "Keys from the
    /// IMS"): each registers both HoAs in mat-ims, one key per HoA name, and with the
    /// relay in one registration, the VM by IPv4 and the CN by IPv6. The relay (an IPv4
    /// HoA only) looks up all four HoAs' keys in mat-ims, takes each node's registration with both HoAs, and
    /// both families' traffic flows through it each way.
    @Test func dualStackNodesRegisterBothHoAsAtARelayThatTakesTheirKeysFromTheIMS() throws {
        // The relay's one IMS key is its IPv4 HoA's: it has no other HoA, and looks up keys
        // in both domain prefixes.
        let lab = try start(vmRelay: Addr.plain4, cnRelay: Addr.plain6, relayDualStack: false, imsKeyed: true)
        defer { lab.close() }
        for node in ["vm", "cn"] {
            let me = Addr.node(node)
            for hoa in [me.home4, me.home6] where !lab.waitForLog("plain", "relay: took the key of \(hoa) from the IMS") {
                Issue.record("the relay did not take \(hoa)'s key from the IMS:\n\(lab.matdLog("plain"))")
            }
        }
        // Each node's next registration (a second later) is taken with both HoAs: one
        // binding per node, before any traffic goes to the relay.
        var bindings = 0
        _ = try poll(seconds: 20, every: 0.2) {
            bindings = (try lab.stats("plain")["relay"] as? [String: Int])?["bindings"] ?? 0
            return bindings >= 2
        }
        #expect(bindings == 2, "\(lab.matdLog("plain"))")
        try checkTrafficGoesThroughTheRelay(lab)
        let relay = try lab.stats("plain")["relay"] as? [String: Int] ?? [:]
        #expect(relay["keys_learned", default: 0] >= 4 && relay["bad_signatures", default: 0] == 0
                && relay["key_lookups_deferred", default: 0] == 0, "\(relay)")
    }
}
