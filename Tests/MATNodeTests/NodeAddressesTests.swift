import MATNode
import MATPacket
import Testing

@Suite struct NodeAddressesTests {
    @Test func mobileAddressesAreTheFirstUplinkAddressOfEachFamily() {
        let homes = NodeAddresses(homes: [IPAddress("198.51.100.10")!, IPAddress("2001:db8:100::10")!])
        #expect(homes.home4 == IPv4Address(198, 51, 100, 10))
        #expect(homes.mobileDescription == "none")
        let uplink = ["2001:db8:a::10", "192.0.2.10", "192.0.2.11"].map { IPAddress($0)! }
        let current = homes.withMobile(from: uplink)
        #expect(current.mobile4 == IPv4Address(192, 0, 2, 10))
        #expect(current.mobile6 == IPv6Address("2001:db8:a::10"))
        #expect(current.mobileDescription == "192.0.2.10, 2001:db8:a::10")
        #expect(current.withMobile(from: []).mobileAddresses.isEmpty)
    }

    /// Which peers a move concerns: those of a family whose MoA changed to another one.
    @Test func aMoveConcernsOnlyTheFamiliesWhoseMoAChanged() {
        let homes = NodeAddresses(homes: [IPAddress("198.51.100.10")!, IPAddress("2001:db8:100::10")!])
        let siteA4 = homes.withMobile(from: [IPAddress("192.0.2.10")!])
        let siteA = homes.withMobile(from: ["192.0.2.10", "2001:db8:a::10"].map { IPAddress($0)! })
        let siteB = homes.withMobile(from: ["203.0.113.10", "2001:db8:b::10"].map { IPAddress($0)! })
        // IPv6 came up after IPv4 on the same site: the IPv4 peers are not concerned.
        #expect(!siteA4.mobileChanged(to: siteA, family: .ipv4))
        #expect(siteA4.mobileChanged(to: siteA, family: .ipv6))
        // A move to another site concerns both.
        #expect(siteA.mobileChanged(to: siteB, family: .ipv4))
        #expect(siteA.mobileChanged(to: siteB, family: .ipv6))
        // Losing a family's MoA (a reading between the flush and the new address) alerts
        // nobody of that family: there is nothing to announce yet.
        #expect(!siteA.mobileChanged(to: siteA4, family: .ipv6))
        #expect(!siteA.mobileChanged(to: homes, family: .ipv4))
        // ...and the address coming back afterwards does, even if it is the old one.
        #expect(homes.mobileChanged(to: siteA, family: .ipv4))
        // Nothing changed: nobody.
        #expect(!siteB.mobileChanged(to: siteB, family: .ipv4))
        #expect(!siteB.mobileChanged(to: siteB, family: .ipv6))
    }
}
