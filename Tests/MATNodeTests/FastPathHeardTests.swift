import MATLinux
@testable import MATNode
import MATPacket
import Testing

/// How the kernel fast path notes the peers it translated packets from, and what the
/// reader makes of those sets' elements (``FastPathHeard``), without a kernel.
@Suite struct FastPathHeardTests {
    let own = NodeAddresses(home4: IPv4Address("198.51.100.10"), mobile4: IPv4Address("192.0.2.10"),
                            home6: IPv6Address("2001:db8:100::10"), mobile6: IPv6Address("2001:db8:a::10"))

    /// Every inbound translating rule ends by noting the (rewritten) source, the peer's
    /// HoA, with `update` (its expiry set again per packet), and the sets come before
    /// the rules that name them; outbound notes nothing. Without a timeout, no sets.
    @Test func everyInboundRewriteNotesItsPeerInASetOfItsFamily() {
        let ruleset = FastPathRuleset(addresses: own, domainPrefixes: [IPPrefix("198.51.100.0/24")!, IPPrefix("2001:db8:100::/64")!])
        let placement = FastPathRuleset.Placement(table: "matd_mat0_fast", uplinks: ["eth0"], localPorts: [7540],
                                                  markBit: 0x2000_0000, heardTimeout: 15)
        let batch = ruleset.batch(placement)
        let inbound = batch.filter { $0.contains(" in_eth0 ip daddr ") || $0.contains(" in_eth0 ip6 daddr ") }
        #expect(inbound.count == 6, "\(batch)")
        for rule in inbound {
            let family = rule.contains(" ip6 daddr ") ? "update @heard6 { ip6 saddr }" : "update @heard4 { ip saddr }"
            #expect(rule.hasSuffix("counter name in\(rule.contains(" ip6 ") ? "6" : "4") \(family) accept"), "\(rule)")
        }
        #expect(!batch.contains { $0.contains(" out ") && $0.contains("@heard") }, "outbound notes nothing")
        let set4 = "add set inet matd_mat0_fast heard4 { type ipv4_addr; flags dynamic, timeout; timeout 15s; size 262144; }"
        let set6 = "add set inet matd_mat0_fast heard6 { type ipv6_addr; flags dynamic, timeout; timeout 15s; size 262144; }"
        #expect(batch.contains(set4) && batch.contains(set6), "\(batch)")
        if let set = batch.firstIndex(of: set4), let rule = batch.firstIndex(where: { $0.contains("@heard4") }) {
            #expect(set < rule)
        }
        var without = placement
        without.heardTimeout = nil
        #expect(!ruleset.batch(without).contains { $0.contains("heard") })
    }

    /// An element expires its timeout after its peer's last packet; the kernel gives what
    /// is left in ms. So the last packet came at the latest `readAt - (timeout - left)`,
    /// never later than the read.
    @Test func theElementsGiveEachPeerTheTimeOfItsLastPacketAtTheLatest() {
        typealias Element = NftablesSetElements.Element
        let elements = [
            Element(key: [198, 51, 100, 20], expiration: 13_250),
            Element(key: [198, 51, 100, 21], expiration: 0),
            Element(key: [198, 51, 100, 22], timeout: 30_000, expiration: 20_000),  // an element's own timeout wins
            Element(key: [198, 51, 100, 23], expiration: 99_000),                   // never after the read
            Element(key: [198, 51, 100, 24]),                                       // no expiry: heard now
            Element(key: [0x20, 0x01, 0x0d, 0xb8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20], expiration: 14_000),
            Element(key: [198, 51, 100, 20], expiration: 1_000),                    // the later of two wins
            Element(key: [198, 51, 100]), Element(key: []), Element(key: Array(repeating: 1, count: 17)),
        ]
        #expect(FastPathHeard.heard(elements, readAt: 100_000, timeoutSeconds: 15) == [
            IPAddress("198.51.100.20")!: 98_250,
            IPAddress("198.51.100.21")!: 85_000,
            IPAddress("198.51.100.22")!: 90_000,
            IPAddress("198.51.100.23")!: 100_000,
            IPAddress("198.51.100.24")!: 100_000,
            IPAddress("2001:db8:100::20")!: 99_000,
        ])
        #expect(FastPathHeard.heard([Element(key: [198, 51, 100, 20], expiration: 0)], readAt: 500, timeoutSeconds: 15)
                == [IPAddress("198.51.100.20")!: 0])
        #expect(FastPathHeard.heard([], readAt: 1, timeoutSeconds: 15).isEmpty)
    }

    /// Reads are spaced by what they cost (a tenth of the thread's time at most), but a
    /// steady flow is always reported well inside an idle period.
    @Test func readsAreSpacedByTheirCostWithinAThirdOfAnIdlePeriod() {
        #expect(FastPathHeard.interval(lastReadTook: 0, idleAfter: 30_000) == 2_000)
        #expect(FastPathHeard.interval(lastReadTook: 500, idleAfter: 30_000) == 5_000)
        #expect(FastPathHeard.interval(lastReadTook: 2_000, idleAfter: 30_000) == 10_000)
        #expect(FastPathHeard.interval(lastReadTook: 200, idleAfter: 3_000) == 1_000)
        #expect(FastPathHeard.interval(lastReadTook: 5_000, idleAfter: 30_000) == 15_000, "a quarter of a core at most")
        #expect(FastPathHeard.timeoutSeconds(idleAfter: 15_000) == 15)
        #expect(FastPathHeard.timeoutSeconds(idleAfter: 1_500) == 2)
    }

    /// The fast path's reports come late, and after the engine's: an older time never
    /// replaces a newer one, and data still counts within the limit only.
    @Test func lateReportsOfDataNeverMoveItBack() {
        var idle = IdleProbing(idleAfter: 10_000)
        let peer = IPAddress("198.51.100.20")!
        idle.track(peer, now: 0)
        idle.dataArrived(from: peer, now: 9_000)
        idle.dataArrived(from: peer, now: 4_000)
        #expect(idle.lastData[peer] == 9_000)
        #expect(idle.due(at: 18_999).isEmpty)
        #expect(idle.due(at: 19_000) == [peer])
    }
}
