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

/// IPv6Address.description against the plain statement of RFC 5952's rules, on addresses
/// with every pattern of zero groups.
@Suite struct IPv6TextTests {
    static func reference(_ address: IPv6Address) -> String {
        let groups = (0..<8).map { UInt16(truncatingIfNeeded: ($0 < 4 ? address.high : address.low) >> (48 - 16 * UInt64($0 % 4))) }
        var bestStart = -1, bestLength = 1
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else { index += 1; continue }
            var end = index
            while end < 8 && groups[end] == 0 { end += 1 }
            if end - index > bestLength { bestStart = index; bestLength = end - index }
            index = end
        }
        let hex = groups.map { String($0, radix: 16) }
        guard bestStart >= 0 else { return hex.joined(separator: ":") }
        return hex[0..<bestStart].joined(separator: ":") + "::" + hex[(bestStart + bestLength)...].joined(separator: ":")
    }

    @Test func everyPatternOfZeroGroupsIsWrittenAsRFC5952Says() {
        var generator = SystemRandomNumberGenerator()
        for pattern in 0..<256 {
            for _ in 0..<8 {
                var words = [UInt64](repeating: 0, count: 8)
                for i in 0..<8 where pattern & (1 << i) != 0 {
                    // Every digit count: 1 to 4.
                    words[i] = UInt64.random(in: 1...0xffff, using: &generator) >> (4 * UInt64.random(in: 0...3, using: &generator))
                    if words[i] == 0 { words[i] = 1 }
                }
                let address = IPv6Address(high: words[0] << 48 | words[1] << 32 | words[2] << 16 | words[3],
                                          low: words[4] << 48 | words[5] << 32 | words[6] << 16 | words[7])
                #expect(address.description == Self.reference(address))
                #expect(IPv6Address(address.description) == address)
            }
        }
    }
}
