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

    /// `life=` carries the registration's lifetime; a reader that cannot make sense of it
    /// takes the mapping without one, as for any string it does not understand.
    @Test func versionTXTWithLifetime() {
        let record = MappingNames.versionRecord(sequence: 42, publicKey: Fixture.publicKeyA, lifetime: 300)
        #expect(record == .txt(strings: ["v=1", "seq=42", "key=\(Fixture.publicKeyA)", "life=300"]))
        #expect(MappingNames.version(from: record)
                    == MappingVersion(sequence: 42, publicKey: Fixture.publicKeyA, lifetime: 300))
        #expect(MappingNames.version(from: .txt(strings: ["life=4294967295", "seq=1", "v=1"]))?.lifetime == UInt32.max)
        for bad in [["life=0"], ["life=030"], ["life="], ["life=4294967296"], ["life=1x"], ["life=5", "life=5"]] {
            let version = MappingNames.version(from: .txt(strings: ["v=1", "seq=1"] + bad))
            #expect(version == MappingVersion(sequence: 1), "\(bad)")
        }
    }

    /// `relay=` names the relay a node is reached through; one that does not parse, or two,
    /// count as none.
    @Test func versionTXTWithRelay() {
        let relay = IPAddress("192.0.2.131")!
        let record = MappingNames.versionRecord(sequence: 42, publicKey: Fixture.publicKeyA, lifetime: 300, relay: relay)
        #expect(record == .txt(strings: ["v=1", "seq=42", "key=\(Fixture.publicKeyA)", "life=300", "relay=192.0.2.131"]))
        #expect(MappingNames.version(from: record)
                    == MappingVersion(sequence: 42, publicKey: Fixture.publicKeyA, lifetime: 300, relay: relay))
        #expect(MappingNames.version(from: .txt(strings: ["relay=2001:db8::1", "seq=1", "v=1"]))?.relay
                == IPAddress("2001:db8::1"))
        for bad in [["relay="], ["relay=192.0.2"], ["relay=192.0.2.1", "relay=192.0.2.1"]] {
            #expect(MappingNames.version(from: .txt(strings: ["v=1", "seq=1"] + bad)) == MappingVersion(sequence: 1), "\(bad)")
        }
    }

    @Test func versionTXTWithPublicKey() {
        let record = MappingNames.versionRecord(sequence: 42, publicKey: Fixture.publicKeyA)
        #expect(record == .txt(strings: ["v=1", "seq=42", "key=\(Fixture.publicKeyA)"]))
        #expect(MappingNames.version(from: record) == MappingVersion(sequence: 42, publicKey: Fixture.publicKeyA))
        #expect(MappingNames.sequence(from: record) == 42)
        #expect(MappingNames.publicKey(from: record) == Fixture.publicKeyA)
        // Without a key the record is the old two strings, and reads back without a key.
        let plain = MappingNames.versionRecord(sequence: 42, publicKey: nil)
        #expect(plain == .txt(strings: ["v=1", "seq=42"]))
        #expect(plain == MappingNames.versionRecord(sequence: 42))
        #expect(MappingNames.version(from: plain) == MappingVersion(sequence: 42, publicKey: nil))
    }

    @Test func publicKeyAmongUnknownStringsInAnyOrder() {
        let key = "key=\(Fixture.publicKeyB)"
        for strings in [["v=1", "seq=9", key, "port=4500"], [key, "x", "seq=9", "v=1"], ["note=key=abc", "v=1", key, "seq=9", ""],
                        ["v=1", "seq=9", "KEY=junk", key]] {
            #expect(MappingNames.version(from: .txt(strings: strings))
                == MappingVersion(sequence: 9, publicKey: Fixture.publicKeyB), "\(strings)")
        }
    }

    @Test func malformedPublicKeyIsIgnoredButTheRecordStillCounts() {
        let a = Fixture.publicKeyA
        let malformed = [
            "",                                                               // empty
            String(a.dropLast()),                                             // 43 characters, no padding
            a + "=",                                                          // 45 characters
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",                   // 31 octets
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",                   // 33 octets
            String(repeating: "A", count: 86) + "==",                         // 64 octets (a signature's size)
            "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURp=",                   // unused bits set: not canonical
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=",                   // base64url alphabet
            "11qYAYKxCrfVS!7TyWQHOg7hcvPapiMlrwIaaPcHURo=",                   // not base64 at all
            "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcH Ro=",                   // whitespace inside
            " " + a,                                                          // leading space
            "=" + String(a.dropLast()),                                       // padding first
            "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHUR==",                   // 31 octets by its padding
            "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURoé",                   // non-ASCII
        ]
        for text in malformed {
            #expect(!MappingNames.isValidPublicKey(text), "\(text)")
            let record = DNSRecordData.txt(strings: ["v=1", "seq=5", "key=\(text)"])
            #expect(MappingNames.version(from: record) == MappingVersion(sequence: 5, publicKey: nil), "\(text)")
            #expect(MappingNames.sequence(from: record) == 5)
        }
        #expect(MappingNames.isValidPublicKey(Fixture.publicKeyA) && MappingNames.isValidPublicKey(Fixture.publicKeyB))
        #expect(MappingNames.isValidPublicKey(String(repeating: "A", count: 43) + "="))
        #expect(MappingNames.isValidPublicKey("//////////////////////////////////////////8="))
        // Two keys are ambiguous, even two equal ones: neither is believed.
        for keys in [[Fixture.publicKeyA, Fixture.publicKeyB], [Fixture.publicKeyA, Fixture.publicKeyA], [Fixture.publicKeyA, "bad"]] {
            let record = DNSRecordData.txt(strings: ["v=1", "seq=5"] + keys.map { "key=\($0)" })
            #expect(MappingNames.version(from: record) == MappingVersion(sequence: 5, publicKey: nil), "\(keys)")
        }
        // A key does not rescue a record that is not a version TXT.
        for strings in [["seq=5", "key=\(Fixture.publicKeyA)"], ["v=2", "seq=5", "key=\(Fixture.publicKeyA)"],
                        ["v=1", "seq=x", "key=\(Fixture.publicKeyA)"]] {
            #expect(MappingNames.version(from: .txt(strings: strings)) == nil, "\(strings)")
            #expect(MappingNames.publicKey(from: .txt(strings: strings)) == nil, "\(strings)")
        }
    }

    @Test func oldTXTOfTheCapturedBINDRegistrationStillParses() throws {
        // Golden.request (captured against BIND before keys existed) carries "v=1" "seq=7".
        let update = try DNSMessage(bytes: Golden.request)
        let txt = try #require(update.updates.first { $0.type == .txt && $0.recordClass == .in })
        #expect(txt.data == .txt(strings: ["v=1", "seq=7"]))
        #expect(MappingNames.version(from: txt.data) == MappingVersion(sequence: 7, publicKey: nil))
        #expect(MappingNames.sequence(from: txt.data) == 7)
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
