import MATPacket
import Testing

@Suite struct IPAddressTests {
    @Test func ipv4TextRoundTrip() {
        let address = IPv4Address("198.51.100.10")
        #expect(address == IPv4Address(198, 51, 100, 10))
        #expect(address?.value == 0xC633_640A)
        #expect(address?.description == "198.51.100.10")
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", "a.b.c.d", "1.2.3.4 ", "-1.2.3.4"])
    func ipv4Rejects(_ text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test(arguments: [
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::", "::"),
        ("::1", "::1"),
        ("2001:db8:0:1:0:0:0:0", "2001:db8:0:1::"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"),
    ])
    func ipv6Canonical(_ input: String, _ canonical: String) {
        #expect(IPv6Address(input)?.description == canonical)
    }

    @Test(arguments: [":", ":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "fe80::1%eth0", "g::1", "1:", ":1", "1:2:3:4:5:6:7::8"])
    func ipv6Rejects(_ text: String) {
        #expect(IPv6Address(text) == nil)
    }

    @Test func familyOfParsedAddresses() {
        #expect(IPAddress("192.0.2.1")?.family == .ipv4)
        #expect(IPAddress("2001:db8::1")?.family == .ipv6)
        #expect(IPAddress("example.com") == nil)
    }
}
