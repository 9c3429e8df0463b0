import MATDNS
import MATPacket
import Testing
@testable import MATIMSClient

/// Captures made on loopback with BIND 9.18.49 (Debian bookworm), zone `mat.example.`,
/// key `10.100.51.198.hoa.mat.example.` = `Fixture.keyA`, policy
/// `grant * self * A AAAA TXT; grant * subdomain moa.mat.example. PTR;`.
enum Golden {
    /// Registration of 198.51.100.10 -> [192.0.2.10, 192.0.2.11], seq 7, previously at
    /// 192.0.2.9; ID 0x4d41, signed at `time`. Sent as is to `named`, which answered
    /// NOERROR with `response` and then served exactly the records it describes.
    static let time: UInt64 = 1_795_773_912
    static let request = hex("""
        4d41280000010000000b0001036d6174076578616d706c650000060001023130033130300235310331393803686f61c00c0001
        00ff000000000000c01d001c00ff000000000000c01d001000ff000000000000c01d000100010000000a0004c000020ac01d00
        0100010000000a0004c000020bc01d001000010000000a000a03763d31057365713d370231300132013003313932036d6f61c0
        0c000c00ff000000000000c089000c00010000000a0002c01d023131c08c000c00ff000000000000c0b2000c00010000000a00
        02c01d0139c08c000c00fe000000000002c01d023130033130300235310331393803686f61036d6174076578616d706c650000
        fa00ff00000000003d0b686d61632d7368613235360000006b0955d8012c0020564dc695c0676bb546754b0a160fe64ac23664
        c90e04f5b237ccbf73e838e7384d4100000000
        """)
    /// `named`'s signed NOERROR reply to `request`.
    static let response = hex("""
        4d41a8000001000000000001036d6174076578616d706c650000060001023130033130300235310331393803686f61036d6174
        076578616d706c650000fa00ff00000000003d0b686d61632d7368613235360000006b0955d8012c0020e4d45c4e78a04915a4
        5fc7f94a1035be23787cc297839aefebdbe18db59c1cad4d4100000000
        """)
    /// The same registration written as `nsupdate -y` commands (`update delete … A`, `…
    /// AAAA`, `… TXT`, `update add … 10 A 192.0.2.10`, `… 192.0.2.11`, `… 10 TXT "v=1"
    /// "seq=7"`, per new MoA `update delete <moa> PTR` + `update add <moa> 10 PTR <hoa>`,
    /// `update delete 9.2.0.192.moa.mat.example. PTR <hoa>`), captured by a UDP listener.
    /// nsupdate compresses less than MATDNS, so the octets differ; the records must not.
    static let nsupdate = hex("""
        e049280000010000000b0001036d6174076578616d706c650000060001023130033130300235310331393803686f61036d6174
        076578616d706c6500000100ff000000000000c01d001c00ff000000000000c01d001000ff000000000000c01d000100010000
        000a0004c000020ac01d000100010000000a0004c000020bc01d001000010000000a000a03763d31057365713d370231300132
        013003313932036d6f61036d6174076578616d706c6500000c00ff000000000000c094000c00010000000a0002c01d023131c0
        97000c00ff000000000000c0c8000c00010000000a0002c01d0139c097000c00fe000000000002c01d02313003313030023531
        0331393803686f61036d6174076578616d706c650000fa00ff00000000003d0b686d61632d7368613235360000006b09555d01
        2c0020f056f2cd873040e21348f52073a6d2cbddb951a90b895fc933ce6b1e996c342ce04900000000
        """)
}

@Suite("Registration UPDATE")
struct RegistrationBuilderTests {
    let builder = RegistrationBuilder(names: Fixture.names)
    let owner = name("10.100.51.198.hoa.mat.example.")

    func goldenUpdate() -> DNSMessage {
        builder.update(id: 0x4D41, hoa: Fixture.hoaA, moas: [ip("192.0.2.10"), ip("192.0.2.11")], sequence: 7,
                       previousMoAs: [ip("192.0.2.9")])
    }

    @Test func reproducesTheUpdateBINDAccepted() throws {
        let signed = try builder.signedUpdate(id: 0x4D41, hoa: Fixture.hoaA, moas: [ip("192.0.2.10"), ip("192.0.2.11")],
                                              sequence: 7, previousMoAs: [ip("192.0.2.9")], key: Fixture.keyA,
                                              now: Golden.time)
        #expect(hexString(signed.bytes) == hexString(Golden.request))
        // BIND's signed reply verifies against our request MAC.
        let outcome = TSIG.verifyResponse(Golden.response, key: Fixture.keyA, requestMAC: signed.mac, now: Golden.time)
        guard case .verified(let context) = outcome else {
            Issue.record("BIND reply did not verify: \(outcome)")
            return
        }
        #expect(context.data.error == .noError)
        #expect(try DNSMessage(bytes: Golden.response).header.responseCode == .noError)
    }

    @Test func sameRecordsAsNsupdate() throws {
        let reference = try DNSMessage(bytes: Golden.nsupdate)
        let ours = goldenUpdate()
        #expect(ours.header.opcode == reference.header.opcode)
        #expect(ours.header.flags == reference.header.flags)
        #expect(ours.questions == reference.questions)
        #expect(ours.prerequisites == reference.prerequisites)
        #expect(ours.updates == reference.updates)
        // The key nsupdate signed with is the node key: the TSIG verifies at capture time.
        let captured = try #require(reference.tsig)
        let verdict = TSIG.verifyRequest(Golden.nsupdate, keyring: TSIGKeyring([Fixture.keyA]),
                                         now: captured.data.timeSigned)
        #expect(verdict == .verified(try #require(verdict.context)))
    }

    @Test func operationsInOrder() throws {
        let request = try DNSUpdateRequest(goldenUpdate())
        let moa10 = name("10.2.0.192.moa.mat.example.")
        let moa11 = name("11.2.0.192.moa.mat.example.")
        #expect(request.zone == Fixture.zone)
        #expect(request.prerequisites.isEmpty)
        #expect(request.operations == [
            .deleteRRset(owner, .a), .deleteRRset(owner, .aaaa), .deleteRRset(owner, .txt),
            .add(DNSResourceRecord(name: owner, ttl: 10, data: .a(0xC000_020A))),
            .add(DNSResourceRecord(name: owner, ttl: 10, data: .a(0xC000_020B))),
            .add(DNSResourceRecord(name: owner, ttl: 10, data: .txt(strings: ["v=1", "seq=7"]))),
            .deleteRRset(moa10, .ptr), .add(DNSResourceRecord(name: moa10, ttl: 10, data: .ptr(owner))),
            .deleteRRset(moa11, .ptr), .add(DNSResourceRecord(name: moa11, ttl: 10, data: .ptr(owner))),
            .deleteRecord(name("9.2.0.192.moa.mat.example."), .ptr(owner)),
        ])
    }

    @Test func theLifetimeGoesIntoTheVersionTXT() throws {
        let withLifetime = RegistrationBuilder(names: builder.names, ttl: 10, lifetime: 120)
        let message = withLifetime.update(id: 1, hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 7)
        let operations = try DNSUpdateRequest(message).operations
        let txt = DNSResourceRecord(name: owner, ttl: 10, data: .txt(strings: ["v=1", "seq=7", "life=120"]))
        #expect(operations.filter { if case .add(let rr) = $0 { rr.type == .txt } else { false } } == [.add(txt)])
    }

    @Test func publicKeyGoesIntoTheVersionTXT() throws {
        let message = builder.update(id: 0x4D41, hoa: Fixture.hoaA, moas: [ip("192.0.2.10"), ip("192.0.2.11")],
                                     sequence: 7, publicKey: Fixture.publicKeyA, previousMoAs: [ip("192.0.2.9")])
        let operations = try DNSUpdateRequest(message).operations
        let withKey = DNSResourceRecord(name: owner, ttl: 10,
                                        data: .txt(strings: ["v=1", "seq=7", "key=\(Fixture.publicKeyA)"]))
        // The same operations as the captured registration, the TXT aside.
        let golden = try DNSUpdateRequest(goldenUpdate()).operations
        #expect(operations == golden.map { op in
            if case .add(let rr) = op, rr.type == .txt { .add(withKey) } else { op }
        })
        #expect(operations.filter { if case .add(let rr) = $0 { rr.type == .txt } else { false } } == [.add(withKey)])
        // Signed, it verifies like any registration; without a key it is byte for byte the old one.
        let signed = try builder.signedUpdate(id: 1, hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 7,
                                              publicKey: Fixture.publicKeyA, key: Fixture.keyA, now: Golden.time)
        let verdict = TSIG.verifyRequest(signed.bytes, keyring: TSIGKeyring([Fixture.keyA]), now: Golden.time)
        #expect(verdict == .verified(try #require(verdict.context)))
        let plain = try builder.signedUpdate(id: 0x4D41, hoa: Fixture.hoaA, moas: [ip("192.0.2.10"), ip("192.0.2.11")],
                                             sequence: 7, publicKey: nil, previousMoAs: [ip("192.0.2.9")],
                                             key: Fixture.keyA, now: Golden.time)
        #expect(plain.bytes == Golden.request)
    }

    @Test func everyOwnerIsTheHoANameOrUnderMoA() {
        let message = builder.update(id: 1, hoa: ip("2001:db8::10"), moas: [ip("2001:db8:1::a"), ip("2001:db8:2::a")],
                                     sequence: 1, previousMoAs: [ip("2001:db8:3::a")])
        let hoaName = Fixture.names.hoaName(for: ip("2001:db8::10"))
        for record in message.updates {
            if record.name == hoaName {
                #expect([.a, .aaaa, .txt].contains(record.type))
            } else {
                #expect(record.name.isSubdomain(of: Fixture.names.moaSuffix))
                #expect(record.type == .ptr)
            }
        }
        #expect(message.updates.filter { $0.type == .aaaa && $0.recordClass == .in }.count == 2)
    }

    @Test func duplicatesDroppedAndKeptMoAsKeepTheirPTR() throws {
        let message = builder.update(id: 2, hoa: Fixture.hoaA, moas: [ip("192.0.2.10"), ip("192.0.2.10")],
                                     sequence: 3, previousMoAs: [ip("192.0.2.10"), ip("192.0.2.9"), ip("192.0.2.9")])
        let operations = try DNSUpdateRequest(message).operations
        #expect(operations.filter { if case .add(let rr) = $0 { rr.type == .a } else { false } }.count == 1)
        // 192.0.2.10 is kept: its PTR is re-added, never deleted by record; .9 is deleted once.
        let deletions = operations.compactMap { op -> DNSName? in
            if case .deleteRecord(let n, _) = op { n } else { nil }
        }
        #expect(deletions == [name("9.2.0.192.moa.mat.example.")])
    }

    @Test func deregistrationKeepsTheSequence() throws {
        let message = builder.update(id: 3, hoa: Fixture.hoaA, moas: [], sequence: 9, previousMoAs: [ip("192.0.2.10")])
        let operations = try DNSUpdateRequest(message).operations
        #expect(operations == [
            .deleteRRset(owner, .a), .deleteRRset(owner, .aaaa), .deleteRRset(owner, .txt),
            .add(DNSResourceRecord(name: owner, ttl: 10, data: .txt(strings: ["v=1", "seq=9"]))),
            .deleteRecord(name("10.2.0.192.moa.mat.example."), .ptr(owner)),
        ])
    }

    @Test func ttlIsConfigurable() {
        let message = RegistrationBuilder(names: Fixture.names, ttl: 30)
            .update(id: 4, hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        #expect(message.updates.filter { $0.recordClass == .in }.allSatisfy { $0.ttl == 30 })
        #expect(message.updates.filter { $0.recordClass != .in }.allSatisfy { $0.ttl == 0 })
    }
}
