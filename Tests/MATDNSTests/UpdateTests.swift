import Testing
@testable import MATDNS

@Suite("RFC 2136 UPDATE")
struct UpdateTests {
    let zone = name("mat.example.")
    let owner = name("10.100.51.198.hoa.mat.example.")

    @Test func builderWritesTheRFC2136Encodings() throws {
        var b = DNSUpdateBuilder(id: 77, zone: zone)
        b.requireNameInUse(owner)
        b.requireNameNotInUse(owner)
        b.requireRRsetExists(owner, type: .aaaa)
        b.requireRRset(owner, equals: [.txt(strings: ["seq=6"])])
        b.requireRRsetDoesNotExist(owner, type: .a)
        b.add(owner, ttl: 30, .aaaa(high: 0x2001_0DB8_0000_0001, low: 0x42))
        b.deleteRRset(owner, type: .aaaa)
        b.deleteAllRRsets(owner)
        b.delete(owner, .a(0xC000_0207))
        let m = b.message
        #expect(m.header.opcode == .update && m.header.id == 77 && !m.header.isResponse)
        #expect(m.questions == [DNSQuestion(name: zone, type: .soa, class: .in)])
        let classes = m.prerequisites.map(\.recordClass) + m.updates.map(\.recordClass)
        #expect(classes == [.any, .none, .any, .in, .none, .in, .any, .any, .none])
        let types = m.prerequisites.map(\.type) + m.updates.map(\.type)
        #expect(types == [.any, .any, .aaaa, .txt, .a, .aaaa, .aaaa, .any, .a])
        #expect(m.prerequisites.allSatisfy { $0.ttl == 0 })
        #expect(m.updates.map(\.ttl) == [30, 0, 0, 0])

        let bytes = try m.encode()
        let parsed = try DNSMessage(bytes: bytes)
        #expect(parsed == m)
        // Class ANY/NONE existence records really have RDLENGTH 0 on the wire.
        let request = try DNSUpdateRequest(parsed)
        #expect(request.id == 77 && request.zone == zone && request.zoneClass == .in)
        #expect(request.prerequisites == [
            .nameInUse(owner), .nameNotInUse(owner), .rrsetExists(owner, .aaaa),
            .rrsetEquals(owner, .txt, [.txt(strings: ["seq=6"])]), .rrsetDoesNotExist(owner, .a),
        ])
        #expect(request.operations == [
            .add(DNSResourceRecord(name: owner, ttl: 30, data: .aaaa(high: 0x2001_0DB8_0000_0001, low: 0x42))),
            .deleteRRset(owner, .aaaa), .deleteAllRRsets(owner), .deleteRecord(owner, .a(0xC000_0207)),
        ])
    }

    @Test func valueDependentPrerequisitesAreGatheredIntoRRsets() throws {
        var b = DNSUpdateBuilder(id: 1, zone: zone)
        let other = name("x.mat.example.")
        b.requireRRset(owner, equals: [.a(1)])
        b.requireRRset(other, equals: [.a(9)])
        b.requireRRset(owner, equals: [.a(2), .a(3)])
        let request = try DNSUpdateRequest(DNSMessage(bytes: b.message.encode()))
        #expect(request.prerequisites == [
            .rrsetEquals(owner, .a, [.a(1), .a(2), .a(3)]),
            .rrsetEquals(other, .a, [.a(9)]),
        ])
    }

    @Test func setMoAIsOneAtomicMessage() throws {
        var b = DNSUpdateBuilder(id: 2, zone: zone)
        b.requireRRset(owner, equals: [.txt(strings: ["seq=6"])])
        b.deleteRRset(owner, type: .a)
        b.add(owner, ttl: 5, .a(0xCB00_7107))
        b.deleteRRset(owner, type: .txt)
        b.add(owner, ttl: 5, .txt(strings: ["seq=7"]))
        let key = TSIGKey(name: owner, secret: Array(repeating: 1, count: 32))
        let signed = try b.message.signed(with: key, now: 1_000_000)
        #expect(signed.bytes.count < 512) // fits one classic UDP datagram
        let outcome = TSIG.verifyRequest(signed.bytes, keyring: TSIGKeyring([key]), now: 1_000_000)
        #expect(outcome.context?.keyName == owner)
    }

    func request(_ edit: (inout DNSMessage) -> Void) -> DNSUpdateError? {
        var b = DNSUpdateBuilder(id: 3, zone: zone)
        b.add(owner, ttl: 5, .a(1))
        var m = b.message
        edit(&m)
        do {
            _ = try DNSUpdateRequest(m)
            return nil
        } catch {
            return error
        }
    }

    @Test func malformedUpdatesGetTheRFC2136Error() {
        #expect(request { _ in } == nil)
        #expect(request { $0.header.opcode = .query } == .notAnUpdate)
        #expect(request { $0.header.isResponse = true } == .notAnUpdate)
        #expect(request { $0.questions = [] } == .badZoneSection)
        #expect(request { $0.questions.append($0.questions[0]) } == .badZoneSection)
        #expect(request { $0.questions[0].type = .a } == .badZoneSection)

        let rr = DNSResourceRecord(name: owner, class: .any, ttl: 0, data: .empty(.a))
        // Prerequisites: TTL must be 0; ANY/NONE carry no RDATA; other classes are wrong.
        #expect(request { $0.prerequisites = [DNSResourceRecord(name: owner, class: .any, ttl: 1, data: .empty(.a))] }
                == .badPrerequisite(index: 0))
        #expect(request { $0.prerequisites = [rr, DNSResourceRecord(name: owner, class: .any, ttl: 0, data: .a(1))] }
                == .badPrerequisite(index: 1))
        #expect(request { $0.prerequisites = [DNSResourceRecord(name: owner, class: .none, ttl: 0, data: .a(1))] }
                == .badPrerequisite(index: 0))
        #expect(request { $0.prerequisites = [DNSResourceRecord(name: owner, class: .ch, ttl: 0, data: .empty(.a))] }
                == .badPrerequisite(index: 0))
        #expect(request { $0.prerequisites = [DNSResourceRecord(name: owner, class: .in, ttl: 0, data: .empty(.a))] }
                == .badPrerequisite(index: 0))

        // Updates: additions need data and a storable type; deletions need TTL 0.
        #expect(request { $0.updates = [DNSResourceRecord(name: owner, ttl: 5, data: .empty(.a))] } == .badUpdate(index: 0))
        #expect(request { $0.updates = [DNSResourceRecord(name: owner, ttl: 5, data: .unknown(.any, [1]))] } == .badUpdate(index: 0))
        #expect(request { $0.updates.append(DNSResourceRecord(name: owner, ttl: 0, data: .opt([]))) } == .badUpdate(index: 1))
        #expect(request { $0.updates = [DNSResourceRecord(name: owner, class: .any, ttl: 5, data: .empty(.a))] } == .badUpdate(index: 0))
        #expect(request { $0.updates = [DNSResourceRecord(name: owner, class: .any, ttl: 0, data: .a(1))] } == .badUpdate(index: 0))
        #expect(request { $0.updates = [DNSResourceRecord(name: owner, class: .any, ttl: 0, data: .empty(.axfr))] } == .badUpdate(index: 0))
        #expect(request { $0.updates = [DNSResourceRecord(name: owner, class: .none, ttl: 5, data: .a(1))] } == .badUpdate(index: 0))
        #expect(request { $0.updates = [DNSResourceRecord(name: owner, class: .none, ttl: 0, data: .empty(.a))] } == .badUpdate(index: 0))
        #expect(request { $0.updates = [DNSResourceRecord(name: owner, class: .hs, ttl: 0, data: .a(1))] } == .badUpdate(index: 0))

        // Out of zone is NOTZONE, in either section.
        let outside = name("10.100.51.198.hoa.other.example.")
        #expect(request { $0.updates = [DNSResourceRecord(name: outside, ttl: 5, data: .a(1))] } == .outOfZone(outside))
        #expect(request { $0.prerequisites = [DNSResourceRecord(name: outside, class: .any, ttl: 0, data: .empty(.any))] }
                == .outOfZone(outside))
    }

    @Test func errorsMapToResponseCodes() {
        #expect(DNSUpdateError.notAnUpdate.responseCode == .notImp)
        #expect(DNSUpdateError.badZoneSection.responseCode == .formErr)
        #expect(DNSUpdateError.badPrerequisite(index: 0).responseCode == .formErr)
        #expect(DNSUpdateError.badUpdate(index: 0).responseCode == .formErr)
        #expect(DNSUpdateError.outOfZone(.root).responseCode == .notZone)
    }
}
