#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATTestSupport
import Testing

/// `public-address = auto` for IPv6 (docs/config.md, "Behind NAT"): the dual-stack VM in
/// site N (Tools/lab/nat-site), whose router routes IPv6 and maps IPv4 1:1, asks a
/// dual-stack mat-ims which address it sees for each family. What
/// `PublicAddressAnswerTests` checks of the answer's meaning, here over the network: an IMS
/// that does not answer the IPv6 question, and an IPv6 answer that is not the node's.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct NATIPv6LabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// The lab with site N and a dual-stack mat-ims; `prepare` runs before matd starts;
    /// the VM (`public-address = auto`) in site N as 192.0.2.70 and 2001:db8:d::70 when
    /// `vmBehindNAT`, else at home; both nodes dual stack.
    func start(vmBehindNAT: Bool, prepare: (Lab) throws -> Void = { _ in }) throws -> NATLab {
        let nat = try NATLab()
        do {
            let lab = nat.lab
            _ = try lab.startIMS(dualStack: true)
            if vmBehindNAT { try nat.moveVM(host: 70) }
            try prepare(lab)
            let config = try lab.writeIMSConfig("vm", dualStack: true)
            let text = try String(contentsOfFile: config, encoding: .utf8)
                .replacingOccurrences(of: "uplink = eth0\n", with: "uplink = eth0\npublic-address = auto\n")
            try text.write(toFile: config, atomically: true, encoding: .utf8)
            try lab.startMatd("vm", config: config)
            try lab.startMatd("cn", config: try lab.writeIMSConfig("cn", dualStack: true))
            #expect(lab.waitForLog("cn", "registered \(cn.home6) -> \(cn.mobile6) seq"), "\(lab.matdLog("cn"))")
        } catch {
            nat.close()
            throw error
        }
        return nat
    }

    func status(_ lab: Lab) throws -> StatusReport {
        try JSONDecoder().decode(StatusReport.self, from: Data(lab.matctl("vm", "status", "--json").utf8))
    }

    /// No answer to the IPv6 question (the NAT router drops IPv6 DNS to the IMS): IPv4
    /// registers with its public address at once; for IPv6 nothing is registered or
    /// announced while the node asks again every 2 s (a private address, or none, would
    /// send the peers' traffic nowhere). Once the IMS answers, the IPv6 MoA (routed: the
    /// IMS sees it as it is) is registered and a peer's first contact over IPv6 works.
    @Test func anIPv6QuestionWithoutAnswerIsAskedAgainUntilTheIMSAnswers() throws {
        let nat = try start(vmBehindNAT: true) { lab in
            try lab.exec("nat", "sh", "-c", """
                nft -f - <<'EOF'
                table ip6 imsblock {
                    chain forward {
                        type filter hook forward priority 0; policy accept;
                        ip6 daddr 2001:db8:c::132 meta l4proto { udp, tcp } th dport 53 drop
                    }
                }
                EOF
                """)
        }
        defer { nat.close() }
        let lab = nat.lab
        let question = "asking the IMS for the public address of 2001:db8:d::70 failed"
        #expect(lab.waitForLog("vm", "registered \(vm.home4) -> 203.0.113.60 seq", timeout: 30), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("vm", question, timeout: 40), "\(lab.matdLog("vm"))")
        // Asked again (2 s after each failure), and nothing of IPv6 published meanwhile.
        _ = poll(seconds: 60, every: 0.2) { lab.matdLog("vm").components(separatedBy: question).count >= 3 }
        #expect(lab.matdLog("vm").components(separatedBy: question).count >= 3, "\(lab.matdLog("vm"))")
        #expect(!lab.matdLog("vm").contains("registered \(vm.home6)"), "\(lab.matdLog("vm"))")
        let asking = try status(lab)
        #expect(asking.publicAddresses == ["203.0.113.60"], "\(asking)")

        try lab.exec("nat", "nft", "delete", "table", "ip6", "imsblock")
        #expect(lab.waitForLog("vm", "the IMS sees 2001:db8:d::70 as 2001:db8:d::70 (no NAT)", timeout: 60),
                "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("vm", "registered \(vm.home6) -> 2001:db8:d::70 seq", timeout: 30), "\(lab.matdLog("vm"))")
        let answered = try status(lab)
        #expect(answered.publicAddresses == ["203.0.113.60", "2001:db8:d::70"], "\(answered)")
        // The CN finds the VM's IPv6 mapping in the IMS (first contact) and reaches it.
        let file = try lab.randomFile("payload", megabytes: 2)
        let six = try lab.tcpTransfer(listener: "vm", address: vm.home6, connector: "cn", sender: "cn", file: file)
        #expect(six.listenerSawPeer == cn.home6)
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home6) -> 2001:db8:d::70*"), "\(lab.matdLog("cn"))")
    }

    /// An IPv6 answer that is not the node's: the NAT router translates the VM's IPv6
    /// queries to the IMS to 2001:db8:b::99 (an address of the router's with nothing
    /// behind it, as a prefix translator in front of the wrong network would), so after
    /// the move into site N the VM publishes that. The CN challenges it there, nobody
    /// answers, and the CN keeps the MoA it had; IPv4 is not disturbed.
    @Test func anIPv6AnswerThatIsNotTheNodesIsChallengedAndNotTaken() throws {
        let nat = try start(vmBehindNAT: false) { lab in
            try lab.exec("nat", "ip", "addr", "add", "2001:db8:b::99/64", "dev", "o", "nodad")
            try lab.exec("nat", "sh", "-c", """
                nft -f - <<'EOF'
                table ip6 imsnat {
                    chain postrouting {
                        type nat hook postrouting priority srcnat; policy accept;
                        oifname "o" ip6 saddr 2001:db8:d::/64 ip6 daddr 2001:db8:c::132 meta l4proto { udp, tcp } th dport 53 snat to 2001:db8:b::99
                    }
                }
                EOF
                """)
        }
        defer { nat.close() }
        let lab = nat.lab
        #expect(lab.waitForLog("vm", "registered \(vm.home6) -> \(vm.mobile6) seq", timeout: 30), "\(lab.matdLog("vm"))")
        #expect(try lab.ping("vm", cn.home6) || lab.ping("vm", cn.home6))
        #expect(lab.waitForLog("cn", "\(vm.home6) -> \(vm.mobile6) seq"), "\(lab.matdLog("cn"))")
        try nat.moveVM(host: 70)
        #expect(lab.waitForLog("vm", "the IMS sees 2001:db8:d::70 as 2001:db8:b::99", timeout: 30), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("cn", "did not answer at its announced MoA", timeout: 30), "\(lab.matdLog("cn"))")
        let counters = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        #expect(counters["challenges_unanswered", default: 0] >= 1, "\(counters)")
        let peers = try lab.matctl("cn", "peers")
        #expect(!peers.contains("2001:db8:b::99*") && peers.contains("\(vm.home6) -> \(vm.mobile6)*"), "\(peers)")
        // IPv4 behind the 1:1 NAT is as it should be: the IMS sees the public address.
        #expect(lab.waitForLog("vm", "the IMS sees 192.0.2.70 as 203.0.113.60"), "\(lab.matdLog("vm"))")
    }
}
