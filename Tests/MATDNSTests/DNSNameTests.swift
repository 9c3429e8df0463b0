import Testing
@testable import MATDNS

@Suite("Domain names")
struct DNSNameTests {
    @Test func parsesAndPrintsPresentationText() throws {
        let n = try DNSName("10.100.51.198.hoa.mat.example.")
        #expect(n.labelCount == 7)
        #expect(n.labels.map { String(decoding: $0, as: UTF8.self) } == ["10", "100", "51", "198", "hoa", "mat", "example"])
        #expect(n.description == "10.100.51.198.hoa.mat.example.")
        #expect(n.wireLength == 31)
        #expect(try DNSName("10.100.51.198.hoa.mat.example") == n)
        #expect(try DNSName(".") == .root)
        #expect(try DNSName("") == .root)
        #expect(DNSName.root.description == ".")
        #expect(DNSName.root.isRoot && DNSName.root.labelCount == 0)
    }

    @Test func escapesRoundTrip() throws {
        let n = try DNSName(#"a\.b.c\\d.\000\032\255x.example."#)
        #expect(n.labels == [Array("a.b".utf8), Array(#"c\d"#.utf8), [0, 32, 255, 0x78], Array("example".utf8)])
        #expect(n.description == #"a\.b.c\\d.\000\032\255x.example."#)
        #expect(try DNSName(n.description) == n)
        let special = try DNSName(labels: [Array(#"@$;()""#.utf8)])
        #expect(special.description == #"\@\$\;\(\)\"."#)
        #expect(try DNSName(special.description) == special)
    }

    @Test(arguments: [#"a\25"#, #"a\256.b"#, #"a\"#, #"\2x5"#])
    func badEscapesThrow(text: String) {
        #expect(throws: DNSNameError.badEscape) { try DNSName(text) }
    }

    @Test func emptyLabelsThrow() {
        for text in ["a..b", ".a", "..", "a.b.."] {
            #expect(throws: DNSNameError.emptyLabel) { try DNSName(text) }
        }
        #expect(throws: DNSNameError.emptyLabel) { try DNSName(labels: [[]]) }
    }

    @Test func labelAndNameLimits() throws {
        let l63 = String(repeating: "a", count: 63)
        #expect(try DNSName("\(l63).example.").labels[0].count == 63)
        #expect(throws: DNSNameError.labelTooLong) { try DNSName("\(l63)a.example.") }
        #expect(throws: DNSNameError.labelTooLong) { try DNSName(labels: [Array(repeating: 1, count: 64)]) }
        #expect(throws: DNSNameError.labelTooLong) { try DNSName.root.prepending(label: String(repeating: "b", count: 64)) }

        // 3 x 63-octet labels + one 61-octet label = 4 + 250 + root = 255 octets exactly.
        let l61 = String(repeating: "c", count: 61)
        let max = try DNSName("\(l63).\(l63).\(l63).\(l61).")
        #expect(max.wireLength == 255)
        #expect(throws: DNSNameError.nameTooLong) { try DNSName("x.\(max)") }
        #expect(throws: DNSNameError.nameTooLong) { try max.prepending(label: "x") }
        #expect(throws: DNSNameError.nameTooLong) { try DNSName("\(l61)c.\(l63).\(l63).\(l63).") }
        #expect(throws: DNSNameError.nameTooLong) { try DNSName("x").appending(max) }
        #expect(throws: DNSNameError.nameTooLong) {
            try DNSName(labels: Array(repeating: [0x61], count: 128))
        }
    }

    @Test func comparisonIgnoresASCIICaseOnly() {
        let a = name("Mn1.HOA.mip.TEST.")
        let b = name("mn1.hoa.mip.test.")
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(Set([a, b]).count == 1)
        #expect(a.description == "Mn1.HOA.mip.TEST.")
        #expect(a.lowercased().wireBytes == b.wireBytes)
        #expect(name("a.example.") != name("b.example."))
        #expect(name("a.example.") != name("a.example.com."))
        // Only A-Z fold: 0xC1 and 0xE1 are different octets.
        let upper = try? DNSName(labels: [[0xC1]])
        let lower = try? DNSName(labels: [[0xE1]])
        #expect(upper != lower)
    }

    @Test func hierarchy() throws {
        let zone = name("hoa.mat.example.")
        let n = name("10.100.51.198.HOA.mat.example.")
        #expect(n.isSubdomain(of: zone))
        #expect(zone.isSubdomain(of: zone))
        #expect(n.isSubdomain(of: .root))
        #expect(!zone.isSubdomain(of: n))
        #expect(!name("xhoa.mat.example.").isSubdomain(of: zone))
        #expect(!name("a.b-hoa.mat.example.").isSubdomain(of: zone))
        #expect(n.parent == name("100.51.198.hoa.mat.example."))
        #expect(DNSName.root.parent == nil)
        #expect(try zone.prepending(label: "x") == name("x.hoa.mat.example."))
        #expect(try name("a.b.").appending(zone) == name("a.b.hoa.mat.example."))
    }

    @Test func addressNames() throws {
        let zone = name("hoa.mat.example.")
        #expect(try DNSName.reverseIPv4(0xC633_640A, in: zone) == name("10.100.51.198.hoa.mat.example."))
        #expect(try DNSName.reverseIPv4(0, in: .root) == name("0.0.0.0."))
        let v6 = try DNSName.reverseIPv6(high: 0x2001_0DB8_0000_0000, low: 1, in: name("hoa.mip.example."))
        #expect(v6.description == "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.hoa.mip.example.")
        #expect(v6.labelCount == 35)
    }

    @Test func randomTextEitherThrowsOrRoundTrips() throws {
        var rng = SplitMix64(seed: 0xD0D0)
        let alphabet = Array(#"ab.\0129 "Z"#.utf8) + [0xC3, 0xA9, 0x00]
        for _ in 0..<5000 {
            let length = Int(rng.next() % 80)
            let bytes = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let parsed = try? DNSName(text) else { continue }
            #expect(try DNSName(parsed.description) == parsed)
            #expect(try DNSName(wireBytes: parsed.wireBytes) == parsed)
        }
    }

    @Test func wireFormRoundTrips() throws {
        let n = name("Mn1.hoa.mip.test.")
        #expect(n.wireBytes == [3, 0x4D, 0x6E, 0x31, 3, 0x68, 0x6F, 0x61, 3, 0x6D, 0x69, 0x70, 4, 0x74, 0x65, 0x73, 0x74, 0])
        #expect(try DNSName(wireBytes: n.wireBytes) == n)
        #expect(throws: DNSParseError.truncated(offset: 4)) { try DNSName(wireBytes: [3, 0x61, 0x62, 0x63]) }
        #expect(throws: DNSParseError.trailingData(offset: 1)) { try DNSName(wireBytes: [0, 0]) }
        #expect(throws: DNSParseError.badPointer(offset: 0)) { try DNSName(wireBytes: [0xC0, 0x00]) }
        #expect(throws: DNSParseError.labelTooLong(offset: 0)) { try DNSName(wireBytes: [0x40] + Array(repeating: 0x61, count: 64) + [0]) }
    }
}
