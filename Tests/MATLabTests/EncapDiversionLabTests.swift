#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing

/// The inbound diversion follows the MoAs whose traffic comes in UDP (docs/datapath.md,
/// "Behind NAT"): the later fragments of a datagram from such a MoA, which carry no UDP
/// header, must reach the stack to be put together, so the diversion's rules accept them
/// by source. A change of those MoAs alone (no peer added or gone) rewrites the rules.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct EncapDiversionLabTests {
    /// With `udp-encapsulation = always` the VM's traffic to the CN goes in UDP from its
    /// first turns, after the diversion was first written: the ingress chain of the VM's
    /// uplink accepts the CN's fragments from both its MoAs. (Before, the change went by
    /// with no peer MoA added or removed and the rules were never written for it.)
    @Test func theDiversionAcceptsTheFragmentsOfTheMoAsInUDP() throws {
        let lab = try Lab()
        defer { lab.close() }
        let cn = Addr.node("cn")
        for node in ["vm", "cn"] {
            try lab.startMatd(node, config: lab.writeConfig(node, adding: "udp-encapsulation = always"))
        }
        var chain = ""
        let written = poll(seconds: 20) {
            chain = (try? lab.exec("vm", "nft", "list", "chain", "netdev", "matd_mat0", "in_eth0")) ?? ""
            return chain.contains("ip saddr \(cn.mobile4) ip frag-off")
                && chain.contains("ip6 saddr \(cn.mobile6) frag frag-off")
        }
        let peers = (try? lab.matctl("vm", "peers")) ?? "no matctl peers"
        #expect(written, "the VM's ingress chain accepts the CN's fragments in UDP:\n\(chain)\n\(peers)")
    }
}
