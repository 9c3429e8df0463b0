#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing

/// matd sends its signaling as network control, DSCP CS6 (docs/signaling.md, "In matd"):
/// a dual-stack pair with mat-ims, first contact in both families, then a move of the VM,
/// captured where the CN meets site C. Every signaling datagram of either family (alert,
/// challenge, response, ack) carries CS6; the traffic they carry for does not.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct SignalingMarkLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    @Test func aMovesAlertsAreMarkedNetworkControlInBothFamilies() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS(dualStack: true)
        for node in ["vm", "cn"] {
            try lab.startMatd(node, config: try lab.writeIMSConfig(node, dualStack: true))
        }
        for node in ["vm", "cn"] {
            let me = Addr.node(node)
            for family in Addr.Family.allCases {
                #expect(lab.waitForLog(node, "registered \(me.home(family)) -> \(me.mobile(family)) seq"),
                        "\(node) \(family): \(lab.matdLog(node))")
            }
        }
        let capture = try Capture(lab, interface: lab.routerPort("cn"), name: "signaling")
        // First contact: the first echoes may go while the VM looks the CN up.
        for family in Addr.Family.allCases where try !lab.ping("vm", cn.home(family)) {
            #expect(try lab.ping("vm", cn.home(family)), "first contact \(family)")
        }
        try lab.moveVM(to: "b")
        // Traffic after the move: the CN learns the new MoAs from the alerts and answers.
        for family in Addr.Family.allCases {
            #expect(try lab.ping("vm", cn.home(family)), "after the move \(family)")
        }
        let moved = ["\(vm.home4) -> 203.0.113.10*", "\(vm.home6) -> 2001:db8:b::10*"]
        var peers = ""
        _ = try poll(seconds: 20, every: 0.1) {
            peers = try lab.matctl("cn", "peers")
            return moved.allSatisfy(peers.contains)
        }
        #expect(moved.allSatisfy(peers.contains), "\(peers)")
        try capture.stop()

        let port = 7540  // signaling-port's default
        let marked = "(ip.dsfield.dscp == 48 || ipv6.tclass.dscp == 48)"
        // The move's alerts, from the new MoAs, as the CN received them.
        let alerts4 = try capture.count(matching: "ip.src == 203.0.113.10 && udp.dstport == \(port) && ip.dsfield.dscp == 48")
        let alerts6 = try capture.count(matching: "ipv6.src == 2001:db8:b::10 && udp.dstport == \(port) && ipv6.tclass.dscp == 48")
        #expect(alerts4 >= 1 && alerts6 >= 1, "marked datagrams from the new MoAs: IPv4 \(alerts4), IPv6 \(alerts6)")
        // The CN's side (challenges, acks) too, and nothing of the signaling unmarked.
        let fromCN = try capture.count(matching: "(ip.src == \(cn.mobile4) || ipv6.src == \(cn.mobile6)) && udp.srcport == \(port) && \(marked)")
        #expect(fromCN >= 2, "marked signaling from the CN: \(fromCN)")
        let unmarked = try capture.count(matching: "udp.port == \(port) && !\(marked)")
        #expect(unmarked == 0, "signaling without CS6: \(unmarked)")
        // The pings themselves are best effort: the mark is the signaling's only.
        let markedData = try capture.count(matching: "(icmp || icmpv6.type == 128 || icmpv6.type == 129) && \(marked)")
        let data = try capture.count(matching: "icmp || icmpv6.type == 128 || icmpv6.type == 129")
        #expect(data >= 4 && markedData == 0, "echo packets: \(data), marked: \(markedData)")
    }
}
