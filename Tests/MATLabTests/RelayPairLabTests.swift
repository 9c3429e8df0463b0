#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATSignaling
import MATTestSupport
import Testing

/// Both nodes behind NATs that hole punching cannot get through (docs/datapath.md, "Behind
/// NAT"): the VM in site N and the CN in site M, each behind a masquerade that chooses
/// every source port at random (Tools/lab/nat-site random), and a relay with a public
/// address, matd in the plain host's namespace with `[relay] serve = on`. Each node
/// registers with the relay, goes to UDP when its probe fails, hears no keepalive from
/// the other (each NAT gives the keepalives a port the other NAT has no binding for) and,
/// three keepalive intervals later, sends the other's traffic through the relay.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct RelayPairLabTests {
    let vm = Addr.vm, cn = Addr.cn
    /// The relay's HoA (it needs one to run matd; nobody talks to it).
    static let relayHoA = "198.51.100.30"
    /// Seconds: three of them without a keepalive send a peer's traffic to the relay.
    static let keepalive = 2

    /// A node behind its NAT: its IPv4 HoA, its NAT's public address, the other node as a
    /// `[peer]` at the other NAT's public address (with its key, so that neither has to be
    /// found through an IMS first), and the relay.
    func nodeConfig(_ lab: Lab, _ node: String, publicAddress: String, peerAddress: String,
                    peerKey: SigningKey) throws -> String {
        let me = Addr.node(node), peer = Addr.node(node == "vm" ? "cn" : "vm")
        let text = """
            [node]
            home-address = \(me.home4)
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            control-socket = \(lab.socket(node))
            state-directory = \(lab.path("\(node)-state"))
            public-address = \(publicAddress)
            encap-keepalive = \(Self.keepalive)

            [peer]
            home-address = \(peer.home4)
            mobile-address = \(peerAddress)
            public-key = \(peerKey.publicKey.base64)

            [relay]
            address = \(Addr.plain4)

            """
        let path = lab.path("\(node).conf")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The relay: matd in the plain host's namespace (192.0.2.131, site C: reached by both
    /// NATs), relaying for the two HoAs signed with the keys given.
    func relayConfig(_ lab: Lab, keys: [String: SigningKey]) throws -> String {
        let text = """
            [node]
            home-address = \(Self.relayHoA)
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            control-socket = \(lab.socket("plain"))
            state-directory = \(lab.path("plain-state"))
            encap-keepalive = \(Self.keepalive)

            [relay]
            serve = on
            client-key = \(vm.home4) \(keys["vm"]!.publicKey.base64)
            client-key = \(cn.home4) \(keys["cn"]!.publicKey.base64)

            """
        let path = lab.path("plain.conf")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A TCP transfer each way between the HoAs arrives byte-identical; each end shows the
    /// other with `path relay`, and its counters show the flows went to and came from the
    /// relay (thousands of relayed packets each way, none refused) and that it registered.
    /// Then forged relayed packets are refused.
    @Test func twoNodesBehindRandomPortNATsReachEachOtherThroughTheRelay() throws {
        let nat = try NATLab.randomPortPair()
        defer { nat.close() }
        let lab = nat.lab
        let keys = ["vm": try lab.writeSigningKey("vm"), "cn": try lab.writeSigningKey("cn")]
        try lab.startMatd("plain", config: try relayConfig(lab, keys: keys))
        try lab.startMatd("vm", config: try nodeConfig(lab, "vm", publicAddress: "203.0.113.50",
                                                       peerAddress: "203.0.113.51", peerKey: keys["cn"]!))
        try lab.startMatd("cn", config: try nodeConfig(lab, "cn", publicAddress: "203.0.113.51",
                                                       peerAddress: "203.0.113.50", peerKey: keys["vm"]!))
        for (node, peer) in [("vm", "203.0.113.51"), ("cn", "203.0.113.50")]
        where !lab.waitForLog(node, "no keepalive from \(peer) for \(3 * Self.keepalive) s: its traffic goes through the relay",
                              timeout: 60) {
            Issue.record("matd in \(node) did not go through the relay:\n\(lab.matdLog(node))\nrelay:\n\(lab.matdLog("plain"))")
            return
        }

        try nat.transferBothWays(megabytes: 4, path: "relay")
        for node in ["vm", "cn"] {
            let counters = try nat.encapCounters(node)
            // 4 MB each way: thousands of segments through the relay each way, none refused,
            // and nothing from the peer's NAT directly (no keepalive got through).
            #expect(counters["encap_relay_packets_sent", default: 0] > 1_000
                    && counters["encap_relay_packets_received", default: 0] > 1_000
                    && counters["encap_relay_refused", default: 0] == 0 && counters["encap_refused", default: 0] == 0
                    && counters["encap_keepalives_received", default: 0] == 0
                    && counters["encap_relay_registrations_sent", default: 0] >= 3, "\(node): \(counters)")
        }
        try checkRelayedPacketsAreTakenOnlyFromTheRelay(nat)
        try checkAKeepaliveTakesThePeerOffTheRelay(nat)
    }

    /// The relay with no `client-key`: it looks its clients' keys up in the lab's mat-ims
    /// (its own `[ims]` key signs the lookups; `Lab.startIMS(more:)` gave it one).
    func imsRelayConfig(_ lab: Lab) throws -> String {
        let text = """
            [node]
            home-address = \(Self.relayHoA)
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            control-socket = \(lab.socket("plain"))
            state-directory = \(lab.path("plain-state"))
            encap-keepalive = \(Self.keepalive)

            [ims]
            server = 192.0.2.132
            zone = mat.example.
            key-file = \(lab.path("keys/plain.key"))
            record-ttl = 5

            [relay]
            serve = on

            """
        let path = lab.path("plain-ims.conf")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A node behind its NAT that knows no peer: its IPv4 HoA, its NAT's public address,
    /// the lab's mat-ims (`[ims]`, as `Lab.writeIMSConfig`) and the relay. It registers
    /// `relay=` in its TXT.
    func imsNodeConfig(_ lab: Lab, _ node: String, publicAddress: String) throws -> String {
        let path = try lab.writeIMSConfig(node)
        let text = try String(contentsOfFile: path, encoding: .utf8)
            .replacingOccurrences(of: "uplink = eth0\n", with: """
                uplink = eth0
                public-address = \(publicAddress)
                encap-keepalive = \(Self.keepalive)

                """) + "\n[relay]\naddress = \(Addr.plain4)\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// First contact through the IMS and the relay (docs/signaling.md, "Signaling through
    /// the relay"): the two nodes share only mat-ims and the relay, no `[peer]`, and the
    /// relay pins no key: it looks each node's key up in mat-ims at its first
    /// registration (docs/signaling.md, "Relay"). The VM
    /// sends to the CN's HoA (the CN only listens): the VM looks the CN up, the answer
    /// names the relay, the VM's probe and binding update go through it, the CN looks up
    /// the VM's key (its answer names the relay too) and answers, challenges and
    /// acknowledges through it; then each goes to UDP when its probe fails and, the
    /// other's record naming the relay, sends the other's traffic through the relay at once. A TCP transfer each way arrives byte-identical,
    /// both ends show `path relay`, and both sent and took signaling through the relay.
    @Test func twoNodesBehindRandomPortNATsFindEachOtherThroughTheIMSAndTheRelay() throws {
        let nat = try NATLab.randomPortPair()
        defer { nat.close() }
        let lab = nat.lab
        _ = try lab.startIMS(more: ["plain": Self.relayHoA])
        try lab.startMatd("plain", config: try imsRelayConfig(lab))
        let publicAddresses = [("vm", "203.0.113.50"), ("cn", "203.0.113.51")]
        // The CN is under load from the start: every message without its cookie gets a
        // cookie reply, which goes back through the relay to the VM behind its NAT.
        for (node, address) in publicAddresses {
            try lab.startMatd(node, config: try imsNodeConfig(lab, node, publicAddress: address),
                              environment: node == "cn" ? ["MATD_TEST_SIGNALING_UNDER_LOAD": "1"] : [:])
        }
        for (node, address) in publicAddresses
        where !lab.waitForLog(node, "registered \(Addr.node(node).home4) -> \(address)", timeout: 60) {
            Issue.record("matd in \(node) did not register \(address):\n\(lab.matdLog(node))")
            return
        }
        // The relay took both keys from the IMS: both nodes' registrations are accepted.
        for hoa in [vm.home4, cn.home4]
        where !lab.waitForLog("plain", "relay: took the key of \(hoa) from the IMS", timeout: 30) {
            Issue.record("the relay did not take \(hoa)'s key from the IMS:\n\(lab.matdLog("plain"))")
            return
        }
        // Only the VM sends; the CN learns of it from its alert through the relay.
        let started = Date()
        let ping = try lab.spawn("vm", ["ping", "-c", "5", "-i", "0.5", "-W", "1", "-q", cn.home4])
        ping.wait(timeout: 30)
        // The VM tries direct first; its probe goes unanswered (the CN's NAT drops it) and
        // its next one goes through the relay. The CN answers the way the VM's came.
        for (node, line) in [("vm", "signaling to \(cn.home4) went unanswered direct"),
                             ("cn", "signaling to \(vm.home4) goes through the relay: its own came through it")]
        where !lab.waitForLog(node, line, timeout: 60) {
            Issue.record("matd in \(node) did not send its peer's signaling through the relay:\n\(lab.matdLog(node))")
            return
        }
        // Each peer's record names the relay: its traffic goes there as soon as it is in UDP
        // (its probe failed), without waiting three keepalive intervals for hole punching.
        for (node, peer) in [("vm", "203.0.113.51"), ("cn", "203.0.113.50")]
        where !lab.waitForLog(node, "\(peer) is reached through the relay \(Addr.plain4): its traffic goes there now",
                              timeout: 60) {
            Issue.record("matd in \(node) did not go through the relay:\n\(lab.matdLog(node))\nrelay:\n\(lab.matdLog("plain"))")
            return
        }
        print("relay-first-contact: both ends through the relay \(String(format: "%.1f", Date().timeIntervalSince(started))) s "
              + "after the first packet")
        try nat.transferBothWays(megabytes: 4, path: "relay")
        for node in ["vm", "cn"] {
            let counters = try nat.encapCounters(node)
            // The probe, the update, the challenge, the responses and the ack: each node
            // sent and took some through the relay, and nothing came past the NATs.
            #expect(counters["encap_relay_signals_sent", default: 0] >= 2
                    && counters["encap_relay_signals_received", default: 0] >= 2
                    && counters["encap_relay_packets_sent", default: 0] > 1_000
                    && counters["encap_relay_packets_received", default: 0] > 1_000
                    && counters["encap_relay_refused", default: 0] == 0
                    && counters["encap_keepalives_received", default: 0] == 0, "\(node): \(counters)")
        }
        // The CN's cookie reply reached the VM through the relay, and the VM sent its
        // message again with the cookie.
        let cnSignaling = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        let vmSignaling = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
        #expect(cnSignaling["cookies_sent", default: 0] >= 1 && vmSignaling["cookies_received", default: 0] >= 1,
                "cn: \(cnSignaling)\nvm: \(vmSignaling)")
        let relay = try lab.stats("plain")["relay"] as? [String: Int] ?? [:]
        #expect(relay["keys_learned", default: 0] == 2 && relay["signals_forwarded", default: 0] >= 4
                && relay["bad_signatures", default: 0] == 0, "relay: \(relay)")
        // Its lookups are counted: one per node (a second only if a registration came while
        // the first was on its way and 5 s had passed), none deferred for budget.
        #expect((2...4).contains(relay["key_lookups", default: 0]) && relay["key_lookups_deferred"] == 0,
                "relay: \(relay)")
        // The keys it took are its forwarder's only: its own peer keys, and the state file
        // they are saved in, never hold them (the nodes are no peers of the relay's).
        try lab.stopMatd("plain")
        let stateFile = lab.path("plain-state") + "/peers.json"
        let state = FileManager.default.contents(atPath: stateFile).map { String(decoding: $0, as: UTF8.self) } ?? ""
        #expect(!state.contains(vm.home4) && !state.contains(cn.home4), "relay's \(stateFile): \(state)")
    }

    /// Two nodes whose IMS records name one relay, with a working direct path (no NAT):
    /// each knows the other is behind the relay, and yet the first contact's signaling and
    /// the traffic go direct, as the answers come direct (docs/signaling.md, "Signaling
    /// through the relay"): no signal or packet through the relay at either end or at the
    /// relay, which took both registrations.
    @Test func twoNodesOnOneRelayWithADirectPathSignalAndSendDirectly() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS(more: ["plain": Self.relayHoA])
        try lab.startMatd("plain", config: try imsRelayConfig(lab))
        for node in ["vm", "cn"] {
            let path = try lab.writeIMSConfig(node)
            let text = try String(contentsOfFile: path, encoding: .utf8)
                .replacingOccurrences(of: "uplink = eth0\n", with: "uplink = eth0\nencap-keepalive = \(Self.keepalive)\n")
                + "\n[relay]\naddress = \(Addr.plain4)\n"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            try lab.startMatd(node, config: path)
        }
        for node in ["vm", "cn"] where !lab.waitForLog(node, "registered \(Addr.node(node).home4) -> ", timeout: 60) {
            Issue.record("matd in \(node) did not register:\n\(lab.matdLog(node))")
            return
        }
        for hoa in [vm.home4, cn.home4]
        where !lab.waitForLog("plain", "relay: took the key of \(hoa) from the IMS", timeout: 30) {
            Issue.record("the relay did not take \(hoa)'s key from the IMS:\n\(lab.matdLog("plain"))")
            return
        }
        // The first contact: the VM's first packets wait for it (the CN only listens).
        _ = try lab.run("vm", ["ping", "-c", "3", "-i", "0.5", "-W", "1", "-q", cn.home4])
        #expect(try lab.ping("vm", cn.home4, count: 5), "vm:\n\(lab.matdLog("vm"))\ncn:\n\(lab.matdLog("cn"))")
        #expect(try lab.ping("cn", vm.home4, count: 5), "\(lab.matdLog("cn"))")
        for (node, peer) in [("vm", cn.home4), ("cn", vm.home4)]
        where !lab.waitForLog(node, "\(peer) is behind the relay \(Addr.plain4) (its IMS record)", timeout: 30) {
            Issue.record("matd in \(node) did not learn that \(peer) is behind the relay:\n\(lab.matdLog(node))")
        }
        for node in ["vm", "cn"] {
            let stats = try lab.stats(node)
            let encap = stats["encapsulation"] as? [String: Int] ?? [:]
            #expect(encap["encap_relay_signals_sent", default: 0] == 0 && encap["encap_relay_signals_received", default: 0] == 0
                    && encap["encap_relay_packets_sent", default: 0] == 0
                    && encap["encap_relay_packets_received", default: 0] == 0, "\(node): \(encap)")
            let peers = try lab.matctl(node, "peers")
            #expect(!peers.contains("path relay") && !peers.contains("path udp-encap"), "\(node): \(peers)")
        }
        // The first contact went all the way, direct: the VM's probe and update answered.
        let signaling = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
        #expect(signaling["probes_answered", default: 0] >= 1 && signaling["acks_received", default: 0] >= 1, "\(signaling)")
        // Registrations go on every keepalive interval: both taken, once the keys came.
        var relay: [String: Int] = [:]
        _ = try poll(seconds: 20, every: 0.2) {
            relay = try lab.stats("plain")["relay"] as? [String: Int] ?? [:]
            return relay["registrations_accepted", default: 0] >= 2
        }
        #expect(relay["registrations_accepted", default: 0] >= 2 && relay["signals_forwarded", default: 0] == 0
                && relay["forwarded", default: 0] == 0, "relay: \(relay)")
    }

    /// Pinned peers that name the relay (`[peer] relay`, docs/config.md) behind NATs with
    /// random ports, no IMS: the VM's alert to the CN goes unanswered direct and then
    /// through the relay, the CN acknowledges through it (the VM's came that way), and
    /// each sends the other's traffic through the relay as soon as it is in UDP, without
    /// waiting three keepalive intervals for hole punching.
    @Test func pinnedPeersThatNameTheRelaySignalAndSendThroughIt() throws {
        let nat = try NATLab.randomPortPair()
        defer { nat.close() }
        let lab = nat.lab
        let keys = ["vm": try lab.writeSigningKey("vm"), "cn": try lab.writeSigningKey("cn")]
        try lab.startMatd("plain", config: try relayConfig(lab, keys: keys))
        for (node, me, peer) in [("vm", "203.0.113.50", "203.0.113.51"), ("cn", "203.0.113.51", "203.0.113.50")] {
            let path = try nodeConfig(lab, node, publicAddress: me, peerAddress: peer, peerKey: keys[node == "vm" ? "cn" : "vm"]!)
            let text = try String(contentsOfFile: path, encoding: .utf8)
                .replacingOccurrences(of: "\n[relay]\n", with: "relay = \(Addr.plain4)\n\n[relay]\n")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            try lab.startMatd(node, config: path)
        }
        for (node, peer) in [("vm", "203.0.113.51"), ("cn", "203.0.113.50")]
        where !lab.waitForLog(node, "\(peer) is reached through the relay \(Addr.plain4): its traffic goes there now", timeout: 60) {
            Issue.record("matd in \(node) did not send its peer's traffic through the relay:\n\(lab.matdLog(node))")
            return
        }
        #expect(try lab.ping("vm", cn.home4, count: 3), "\(lab.matdLog("vm"))")
        // An alert round: answered only through the relay.
        let before = try nat.encapCounters("vm")
        let rebind = try runCommand([LabPaths.matctl, "rebind", "--socket", lab.socket("vm")], timeout: 60)
        #expect(rebind.stdout.contains("1 alerted, 1 acknowledged, 0 unanswered"), "\(rebind.summary)\n\(lab.matdLog("vm"))")
        // The engine publishes its counters once a second.
        let sent = before["encap_relay_signals_sent", default: 0], received = before["encap_relay_signals_received", default: 0]
        let through = nat.waitForEncap("vm", "encap_relay_signals_sent", atLeast: sent + 1)
            && nat.waitForEncap("vm", "encap_relay_signals_received", atLeast: received + 1)
        let after = try nat.encapCounters("vm")
        #expect(through, "before \(before)\nafter \(after)")
        for (node, peer) in [("vm", cn.home4), ("cn", vm.home4)] {
            let log = lab.matdLog(node)
            #expect(log.contains("\(peer) is behind the relay \(Addr.plain4) (its [peer] section)"), "\(node): \(log)")
            #expect(!log.contains("no keepalive from"), "\(node): hole punching was waited for")
            let counters = try nat.encapCounters(node)
            #expect(counters["encap_relay_signals_sent", default: 0] >= 1 && counters["encap_relay_signals_received", default: 0] >= 1,
                    "\(node): \(counters)")
        }
    }

    /// The VM's NAT becomes 1:1 (Tools/lab/nat-site one-to-one): the CN's keepalives reach
    /// the VM, which sends the CN's traffic to it in UDP again at once, not through the
    /// relay. A transfer from the VM arrives byte-identical with no packet of the VM's
    /// through the relay, and `matctl peers` shows `path udp-encap`.
    func checkAKeepaliveTakesThePeerOffTheRelay(_ nat: NATLab) throws {
        let lab = nat.lab
        try nat.oneToOne(host: 80)
        guard lab.waitForLog("vm", "a keepalive came from 203.0.113.51: its traffic goes to it in UDP again", timeout: 30) else {
            Issue.record("the VM did not leave the relay:\n\(lab.matdLog("vm"))")
            return
        }
        let before = try nat.encapCounters("vm")
        let file = try lab.randomFile("direct", megabytes: 2)
        let toCN = try lab.tcpTransfer(listener: "cn", address: cn.home4, connector: "vm", sender: "vm", file: file,
                                       port: 5042)
        #expect(toCN.listenerSawPeer == vm.home4, "\(toCN)")
        let after = try nat.encapCounters("vm")
        let peers = try lab.matctl("vm", "peers")
        #expect(peers.contains("\(cn.home4) -> 203.0.113.51*") && peers.contains("path udp-encap"), "\(peers)")
        // 2 MB in datagrams of at most 65,000 bytes: more than 30, none of them to the relay.
        #expect(after["encap_relay_packets_sent", default: 0] == before["encap_relay_packets_sent", default: 0]
                && after["encap_packets_sent", default: 0] - before["encap_packets_sent", default: 0] > 30,
                "before \(before)\nafter \(after)")
    }

    /// Sends a UDP datagram with any source address and port (a raw socket), for relayed
    /// packets that pretend to come from the relay.
    static let spoofer = """
        import socket, struct, sys
        source, destination, sport, dport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        payload = bytes.fromhex(sys.argv[5])
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(source), socket.inet_aton(destination))
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        s.sendto(ip + udp, (destination, 0))
        """

    /// Relayed packets to the VM with forged sources, sent inside the VM's namespace (the
    /// NAT router would give a datagram from the relay's address and port another port: its
    /// connection tracking holds that pair for the VM's own flow): one as the relay would
    /// send it is taken; one with an inner source that is no peer, one for another HoA, one
    /// from another address and one from the relay's address but another port are refused
    /// and counted (`encap_relay_refused`).
    func checkRelayedPacketsAreTakenOnlyFromTheRelay(_ nat: NATLab) throws {
        let lab = nat.lab
        let script = lab.path("spoof.py")
        try Self.spoofer.write(toFile: script, atomically: true, encoding: .utf8)
        let before = try nat.encapCounters("vm")
        let peer: [UInt8] = [198, 51, 100, 20], me: [UInt8] = [198, 51, 100, 10]
        let stranger: [UInt8] = [198, 51, 100, 40], relayHoA: [UInt8] = [198, 51, 100, 30]
        let payload = Array("relayed".utf8)
        let sends: [(source: String, port: Int, datagram: [UInt8])] = [
            (Addr.plain4, 7541, RelayLabTests.relayed(peer, me, payload: payload)),
            (Addr.plain4, 7541, RelayLabTests.relayed(stranger, me, payload: payload)),
            (Addr.plain4, 7541, RelayLabTests.relayed(peer, relayHoA, payload: payload)),
            ("192.0.2.65", 7541, RelayLabTests.relayed(peer, me, payload: payload)),
            (Addr.plain4, 7000, RelayLabTests.relayed(peer, me, payload: payload)),
        ]
        for send in sends {
            try lab.exec("vm", "python3", script, send.source, "192.0.2.80", "\(send.port)", "7541",
                         RelayLabTests.hex(send.datagram))
        }
        var after = before
        _ = try poll(seconds: 15, every: 0.2) {
            after = try nat.encapCounters("vm")
            return after["encap_relay_refused", default: 0] - before["encap_relay_refused", default: 0] >= 4
                && after["encap_relay_packets_received", default: 0] > before["encap_relay_packets_received", default: 0]
        }
        #expect(after["encap_relay_refused", default: 0] - before["encap_relay_refused", default: 0] == 4
                && after["encap_relay_packets_received", default: 0] - before["encap_relay_packets_received", default: 0] >= 1,
                "before \(before)\nafter \(after)")
    }
}
