import MATDNS
import MATPacket
import Testing
@testable import MATIMSClient

@Suite("Mapping names and records")
struct MappingNamesTests {
    let names = Fixture.names

    @Test func ipv4HoAAndMoANames() {
        #expect(names.hoaName(for: ip("198.51.100.10")) == name("10.100.51.198.hoa.mat.example."))
        #expect(names.moaName(for: ip("192.0.2.10")) == name("10.2.0.192.moa.mat.example."))
        #expect(names.hoaName(for: ip("0.0.0.0")).description == "0.0.0.0.hoa.mat.example.")
        #expect(names.hoaSuffix == name("hoa.mat.example."))
        #expect(names.moaSuffix == name("moa.mat.example."))
    }

    @Test func ipv6NamesAreReversedNibbles() {
        let hoa = ip("2001:db8::10")
        let expected = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.hoa.mat.example."
        #expect(names.hoaName(for: hoa).description == expected)
        #expect(names.moaName(for: ip("2001:db8:1::a")).description
            == "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.moa.mat.example.")
    }

    @Test func namesParseBackToAddresses() {
        for text in ["198.51.100.10", "0.0.0.0", "255.255.255.255", "2001:db8::10", "::", "fe80::1:2:3:4",
                     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"] {
            let address = ip(text)
            #expect(names.hoa(fromName: names.hoaName(for: address)) == address)
            #expect(names.moa(fromName: names.moaName(for: address)) == address)
            // A HoA name is not a MoA name and vice versa.
            #expect(names.moa(fromName: names.hoaName(for: address)) == nil)
            #expect(names.hoa(fromName: names.moaName(for: address)) == nil)
        }
        // Case does not matter for the nibbles or the zone.
        #expect(names.hoa(fromName: name("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.HOA.Mat.Example."))
            == ip("2001:db8::10"))
    }

    @Test func malformedNamesAreRejected() {
        for text in ["hoa.mat.example.", "10.100.51.hoa.mat.example.", "1.10.100.51.198.hoa.mat.example.",
                     "010.100.51.198.hoa.mat.example.", "256.100.51.198.hoa.mat.example.",
                     "x.100.51.198.hoa.mat.example.", "10.100.51.198.hoa.other.example.",
                     "10.100.51.198.mat.example.", "10.100.51.198.hoa.mat.example.evil.",
                     "00.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.hoa.mat.example.",
                     "g.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.hoa.mat.example."] {
            #expect(names.hoa(fromName: name(text)) == nil, "\(text)")
        }
    }

    @Test func zoneTooLongForIPv6NamesIsRefused() throws {
        // hoa.<zone> plus 32 one-nibble labels must fit 255 octets: the zone gets 187.
        let label = String(repeating: "a", count: 61)
        let longest = try DNSName("\(label).\(label).\(label).")
        #expect(longest.wireLength == 187)
        let names = try MappingNames(zone: longest)
        #expect(names.hoaName(for: ip("2001:db8::1")).wireLength == DNSName.maxWireLength)
        #expect(names.moaName(for: ip("2001:db8::1")).wireLength == DNSName.maxWireLength)
        let tooLong = try DNSName("b.\(label).\(label).\(label).")
        #expect(throws: DNSNameError.nameTooLong) { try MappingNames(zone: tooLong) }
    }

    @Test func versionTXTRoundTrip() {
        let record = MappingNames.versionRecord(sequence: 42)
        #expect(record == .txt([Array("v=1".utf8), Array("seq=42".utf8)]))
        #expect(MappingNames.sequence(from: record) == 42)
        #expect(MappingNames.sequence(from: MappingNames.versionRecord(sequence: .max)) == .max)
        // Unknown extra strings are ignored; order does not matter.
        #expect(MappingNames.sequence(from: .txt(strings: ["seq=9", "k=abc", "v=1"])) == 9)
    }

    @Test func malformedVersionTXTIsRejected() {
        for strings in [["v=1"], ["seq=1"], ["v=2", "seq=1"], ["v=1", "seq="], ["v=1", "seq=-1"], ["v=1", "seq=1x"],
                        ["v=1", "seq=18446744073709551616"], ["v=1", "seq=1", "seq=2"], ["v=1", "v=1", "seq=1"],
                        ["v=1", "seq=+1"]] {
            #expect(MappingNames.sequence(from: .txt(strings: strings)) == nil, "\(strings)")
        }
        #expect(MappingNames.sequence(from: .a(1)) == nil)
    }

    @Test func addressRecords() {
        #expect(MappingNames.addressRecord(ip("192.0.2.10")) == .a(0xC000_020A))
        #expect(MappingNames.addressRecord(ip("2001:db8::1")) == .aaaa(high: 0x2001_0DB8_0000_0000, low: 1))
        #expect(MappingNames.address(from: .a(0xC000_020A)) == ip("192.0.2.10"))
        #expect(MappingNames.address(from: .aaaa(high: 0x2001_0DB8_0000_0000, low: 1)) == ip("2001:db8::1"))
        #expect(MappingNames.address(from: .txt([])) == nil)
        #expect(MappingNames.addressType(for: ip("192.0.2.1")) == .a)
        #expect(MappingNames.addressType(for: ip("::1")) == .aaaa)
    }

    @Test func serverAddressParsing() {
        #expect(DNSServerAddress("127.0.0.1:5353") == DNSServerAddress(address: ip("127.0.0.1"), port: 5353))
        #expect(DNSServerAddress("127.0.0.1") == DNSServerAddress(address: ip("127.0.0.1"), port: 53))
        #expect(DNSServerAddress("[::1]:5300") == DNSServerAddress(address: ip("::1"), port: 5300))
        #expect(DNSServerAddress("[::1]") == DNSServerAddress(address: ip("::1"), port: 53))
        #expect(DNSServerAddress("2001:db8::1") == DNSServerAddress(address: ip("2001:db8::1"), port: 53))
        for bad in ["", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:53:1", "[::1]5300", "[::1",
                    "host:53", "[127.0.0.1]:53"] {
            #expect(DNSServerAddress(bad) == nil, "\(bad)")
        }
        #expect(DNSServerAddress(address: ip("::1"), port: 53).description == "[::1]:53")
        #expect(DNSServerAddress(address: ip("192.0.2.1"), port: 53).description == "192.0.2.1:53")
    }
}
