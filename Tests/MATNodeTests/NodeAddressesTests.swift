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
}
