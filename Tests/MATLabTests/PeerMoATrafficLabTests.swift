#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import Testing

/// Traffic between two MAT peers' MoAs that no HoA sent (ssh to a VM's address, a service
/// bound to the MoA) works as without matd while HoA traffic between them is translated;
/// and a host firewall whose forward chain drops by default is reported with the rule to
/// add (docs/datapath.md).
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct PeerMoATrafficLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    @Test func moaToMoATrafficIsLeftAloneBesideTranslatedHoATraffic() throws {
        let lab = try Lab()
        defer { lab.close() }
        // The engine's path, whose counters tell MoA traffic from HoA traffic below
        // (KernelFastPathLabTests.moaToMoATrafficIsLeftAlone: the fast path's).
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: "kernel-fast-path = off")) }
        let file = try lab.randomFile("payload", megabytes: 10)
        usleep(300_000)
        let before = try ["vm": lab.stats("vm"), "cn": lab.stats("cn")]

        for family in Addr.Family.allCases {
            for (opener, listener) in [("vm", "cn"), ("cn", "vm")] {
                let moa = Addr.node(listener).mobile(family), openerMoA = Addr.node(opener).mobile(family)
                // A service bound to the MoA, reached from the peer's MoA; data both ways.
                for (sender, mode) in [(opener, "recv"), (listener, "send")] {
                    let (peer, local) = try moaTransfer(lab, listener: listener, address: moa, connector: opener,
                                                        listenerMode: mode, file: file)
                    #expect(peer == openerMoA, "\(listener) saw \(peer) (\(sender) sent)")
                    #expect(local == openerMoA, "\(opener) sent from \(local)")
                }
                #expect(try lab.ping(opener, moa), "ping \(opener) -> \(moa)")
                let udp = try moaEcho(lab, client: opener, server: listener, address: moa)
                #expect(udp.contains("peer \(openerMoA)"), "udp: \(udp)")
            }
        }
        // None of it went through the engines.
        for node in ["vm", "cn"] {
            let after = try lab.stats(node)
            for key in ["outboundBytes", "inboundBytes"] {
                #expect(counter(after, key) - counter(before[node]!, key) < 100_000,
                        "\(node) \(key) moved by \(counter(after, key) - counter(before[node]!, key)): MoA traffic was translated")
            }
        }
        // HoA traffic between the same two nodes is still translated.
        try trafficMatrix(lab, file: file)
        for node in ["vm", "cn"] {
            let after = try lab.stats(node)
            #expect(counter(after, "outboundBytes") - counter(before[node]!, "outboundBytes") > 20_000_000, "\(after)")
            #expect(drops(after).isEmpty, "\(node) dropped packets: \(drops(after))")
        }
    }

    /// Path MTU discovery of a MoA-to-MoA flow: the router's link to the CN carries 1280
    /// bytes at most, so the VM's full-size segments draw "fragmentation needed" / "packet
    /// too big" to its MoA quoting MoA to MoA, which the diversion would hand to the engine
    /// (and the transfer would stall) unless it is recognised as this flow's.
    @Test func pathMTUDiscoveryOfMoAToMoATraffic() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.startMatd("vm")
        try lab.startMatd("cn")
        let file = try lab.randomFile("pmtu", megabytes: 3)
        try lab.exec("router", "ip", "link", "set", "br-c", "mtu", "1280")
        for family in Addr.Family.allCases {
            let moa = cn.mobile(family)
            let (peer, _) = try moaTransfer(lab, listener: "cn", address: moa, connector: "vm", listenerMode: "recv", file: file)
            #expect(peer == vm.mobile(family))
            let route = try lab.exec("vm", "ip", "route", "get", moa)
            #expect(route.contains("mtu 1280"), "\(family): \(route)")
        }
    }

    /// A TCP transfer like `Lab.tcpTransfer`, to a listener bound to `address`, started a
    /// second and a half before the connection: matd looks for services bound to the MoA
    /// once a second. Returns the peer the listener saw and the connector's local address.
    private func moaTransfer(_ lab: Lab, listener: String, address: String, connector: String,
                             listenerMode: String, file: String) throws -> (String, String) {
        let received = lab.path("received-\(UInt32.random(in: 0...UInt32.max))")
        defer { unlink(received) }
        let connectorMode = listenerMode == "send" ? "recv" : "send"
        let server = try lab.spawn(listener, ["python3", LabPaths.labPeer, "tcp-listen", address, "5020", listenerMode,
                                              listenerMode == "send" ? file : received])
        guard server.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("listener in \(listener) did not start:\n\(server.wait(timeout: 1).summary)")
        }
        usleep(1_500_000)
        let client = try lab.run(connector, ["python3", LabPaths.labPeer, "tcp-connect", address, "5020", connectorMode,
                                             connectorMode == "send" ? file : received], timeout: 60)
        let serverResult = server.wait(timeout: 30)
        guard client.succeeded, serverResult.succeeded else {
            throw LabError("tcp \(connector) -> \(listener) [\(address)] failed:\n\(client.summary)\n\(serverResult.summary)")
        }
        #expect(try lab.sha256(file) == lab.sha256(received), "tcp \(connector) -> \(listener) [\(address)]: bytes differ")
        func field(_ key: String, _ text: String) -> String {
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                if words.count >= 2 && words[0] == key { return String(words[1]) }
            }
            return "?"
        }
        return (field("peer", serverResult.stderr), field("local", client.stderr))
    }

    /// 50 UDP echoes to a server bound to `address` (started a second and a half before);
    /// returns the server's report.
    private func moaEcho(_ lab: Lab, client: String, server: String, address: String) throws -> String {
        let echo = try lab.spawn(server, ["python3", LabPaths.labPeer, "udp-echo", address, "5021", "50"])
        guard echo.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("udp echo in \(server) did not start:\n\(echo.wait(timeout: 1).summary)")
        }
        usleep(1_500_000)
        let ping = try lab.run(client, ["python3", LabPaths.labPeer, "udp-ping", address, "5021", "50"], timeout: 60)
        let result = echo.wait(timeout: 10)
        guard ping.succeeded, result.succeeded, ping.stdout.contains("udp ok 50") else {
            throw LabError("udp \(client) -> \(server) [\(address)] failed:\n\(ping.summary)\n\(result.summary)")
        }
        return result.stderr
    }

    /// A forward chain with policy drop (as ufw or Docker leave it) drops the engine's
    /// packets: matd says so at start with the exact rule, the rule fixes it, and with the
    /// rule in place matd says nothing.
    @Test func forwardPolicyDropIsReportedWithTheRuleToAdd() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.exec("vm", "nft", "add table inet hostfw")
        try lab.exec("vm", "nft", "add chain inet hostfw forward { type filter hook forward priority 0; policy drop; }")
        // What the engine writes back is forwarded; the kernel fast path's packets are
        // the host's own and pass a forward chain's policy (docs/datapath.md).
        for node in ["vm", "cn"] { try lab.startMatd(node, config: lab.writeConfig(node, adding: "kernel-fast-path = off")) }
        let fix = "nft insert rule inet hostfw forward iifname \"mat0\" accept"
        #expect(lab.matdLog("vm").contains("forward chain inet hostfw forward drops by default"), "\(lab.matdLog("vm"))")
        #expect(lab.matdLog("vm").contains("Allow it with: \(fix)"), "\(lab.matdLog("vm"))")
        #expect(!lab.matdLog("cn").contains("drops by default"))
        // The warning is right: HoA traffic out of the VM is dropped.
        #expect(try !lab.ping("vm", cn.home4, count: 2))

        try lab.exec("vm", "sh", "-c", fix)
        #expect(try lab.ping("vm", cn.home4, count: 2), "after \(fix)")
        let file = try lab.randomFile("payload", megabytes: 5)
        try lab.tcpTransfer(listener: "cn", address: cn.home4, connector: "vm", sender: "vm", file: file)

        try lab.stopMatd("vm")
        try lab.startMatd("vm")
        #expect(!lab.matdLog("vm").contains("drops by default"), "\(lab.matdLog("vm"))")
        try lab.stopMatd("vm")
        // matd's own tables go; the host's firewall stays as its admin left it.
        let tables = try lab.exec("vm", "nft", "list", "tables")
        #expect(tables.contains("inet hostfw") && !tables.contains("matd"), "\(tables)")
    }
}
