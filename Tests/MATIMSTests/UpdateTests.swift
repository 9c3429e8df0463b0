import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import Testing

@Suite("UPDATE semantics (RFC 2136 §3)")
struct UpdateTests {
    @Test func setMoAIsAppliedAndBumpsTheSerialOnce() throws {
        let core = try makeCore()
        let before = try #require(core.zone(zoneName)).serial
        let reply = try send(update(node1Key) { u in
            u.deleteRRset(node1, type: .a)
            u.add(node1, ttl: 10, a("192.0.2.10"))
            u.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=1"]))
        }, to: core)
        #expect(rcode(reply) == .noError)
        #expect(reply.header.opcode == .update && reply.header.isResponse)
        #expect(reply.questions == [DNSQuestion(name: zoneName, type: .soa)])
        let zone = try #require(core.zone(zoneName))
        #expect(zone.serial == before &+ 1)
        #expect(zone.rrset(at: node1, type: .a)?.records == [a("192.0.2.10")])
        #expect(core.counters[.updatesAccepted] == 1)
    }

    @Test func anUpdateThatChangesNothingKeepsTheSerial() throws {
        let core = try makeCore()
        try send(update(node1Key, at: baseTime) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        let serial = try #require(core.zone(zoneName)).serial
        let reply = try send(update(node1Key, at: baseTime + 1) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        #expect(rcode(reply) == .noError)
        #expect(try #require(core.zone(zoneName)).serial == serial)
        #expect(core.counters[.updatesNoChange] == 1)
        // Deleting something absent is no change either.
        try send(update(node1Key, at: baseTime + 2) { $0.delete(node1, a("192.0.2.99")) }, to: core)
        #expect(try #require(core.zone(zoneName)).serial == serial)
    }

    @Test func everyPrerequisiteKindAnswersItsRCode() throws {
        let core = try makeCore()
        try send(update(node1Key) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        var time = baseTime
        func check(_ expected: DNSResponseCode, _ build: (inout DNSUpdateBuilder) -> Void) throws {
            time += 1
            let reply = try send(update(node1Key, at: time) { u in
                build(&u)
                u.add(node1, ttl: 10, .txt(strings: ["probe \(time)"]))
            }, to: core)
            #expect(rcode(reply) == expected, "expected \(expected)")
        }
        try check(.noError) { $0.requireNameInUse(node1) }
        try check(.nxDomain) { $0.requireNameInUse(node2) }
        try check(.noError) { $0.requireNameNotInUse(node2) }
        try check(.yxDomain) { $0.requireNameNotInUse(node1) }
        try check(.noError) { $0.requireRRsetExists(node1, type: .a) }
        try check(.nxRRset) { $0.requireRRsetExists(node1, type: .aaaa) }
        try check(.noError) { $0.requireRRsetDoesNotExist(node1, type: .aaaa) }
        try check(.yxRRset) { $0.requireRRsetDoesNotExist(node1, type: .a) }
        try check(.noError) { $0.requireRRset(node1, equals: [a("192.0.2.10")]) }
        try check(.nxRRset) { $0.requireRRset(node1, equals: [a("192.0.2.11")]) }
        try check(.nxRRset) { $0.requireRRset(node1, equals: [a("192.0.2.10"), a("192.0.2.11")]) }
        // Five successful probes each added one TXT; the failed ones added nothing.
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .txt)?.records.count == 5)
        #expect(core.counters[.updatesRefusedPrerequisite] == 6)
    }

    @Test func compareAndSwapOnTheSequenceNumber() throws {
        let core = try makeCore()
        try send(update(node1Key) { u in
            u.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=1"]))
            u.add(node1, ttl: 10, a("192.0.2.10"))
        }, to: core)
        // Two writers race from seq=1: the first wins, the second sees NXRRSET.
        func move(to moa: String, seq: Int, time: UInt64) throws -> DNSResponseCode {
            rcode(try send(update(node1Key, at: time) { u in
                u.requireRRset(node1, equals: [.txt(strings: ["v=1", "seq=1"])])
                u.deleteRRset(node1, type: .a)
                u.add(node1, ttl: 10, a(moa))
                u.deleteRRset(node1, type: .txt)
                u.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=\(seq)"]))
            }, to: core))
        }
        #expect(try move(to: "192.0.2.20", seq: 2, time: baseTime + 1) == .noError)
        #expect(try move(to: "192.0.2.30", seq: 2, time: baseTime + 2) == .nxRRset)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .a)?.records == [a("192.0.2.20")])
    }

    @Test func oneRefusedOperationLeavesTheZoneUntouched() throws {
        let core = try makeCore()
        try send(update(node1Key) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        let before = try #require(core.zone(zoneName))
        let reply = try send(update(node1Key, at: baseTime + 1) { u in
            u.deleteRRset(node1, type: .a)
            u.add(node1, ttl: 10, a("192.0.2.11"))
            u.add(node2, ttl: 10, a("192.0.2.66"))  // not its name
        }, to: core)
        #expect(rcode(reply) == .refused)
        let after = try #require(core.zone(zoneName))
        #expect(after.serial == before.serial)
        #expect(after.rrset(at: node1, type: .a)?.records == [a("192.0.2.10")])
        #expect(after.rrsets(at: node2) == nil)
    }

    @Test func malformedUpdatesGetFormErrAndNamesOutsideTheZoneNotZone() throws {
        let core = try makeCore()
        let outside = try send(update(adminKey) { $0.add(name("www.other.example."), ttl: 10, a("192.0.2.1")) }, to: core)
        #expect(rcode(outside) == .notZone)
        var builder = DNSUpdateBuilder(id: 9, zone: zoneName)
        builder.add(node1, ttl: 10, a("192.0.2.1"))
        var message = builder.message
        message.updates[0].recordClass = DNSClass(7)
        let signed = try TSIG.sign(message.encode(), key: adminKey, now: baseTime)
        let reply = try send(SignedRequest(bytes: signed.bytes, mac: signed.mac, key: adminKey), to: core)
        #expect(rcode(reply) == .formErr)
        #expect(reply.tsig != nil)
        let wrongZone = try send(update(adminKey, at: baseTime + 1, zone: name("other.example.")) {
            $0.add(name("x.other.example."), ttl: 10, a("192.0.2.1"))
        }, to: core)
        #expect(rcode(wrongZone) == .notAuth)
        let subZone = try send(update(adminKey, at: baseTime + 2, zone: name("hoa.mat.example.")) {
            $0.add(node1, ttl: 10, a("192.0.2.1"))
        }, to: core)
        #expect(rcode(subZone) == .notAuth)
    }

    @Test func apexSOAAndNSAreProtected() throws {
        var zone = IMSCore.initialStore(testZone(), serial: 100)
        let untouched = zone.apply([
            .deleteRRset(zoneName, .soa), .deleteRRset(zoneName, .ns),
            .deleteRecord(zoneName, .ns(name("ns.mat.example."))),
        ])
        #expect(untouched == nil)
        _ = zone.apply([.deleteAllRRsets(zoneName)])
        #expect(zone.rrset(at: zoneName, type: .ns) != nil)
        #expect(zone.rrset(at: zoneName, type: .soa) != nil)
        // A second NS may be added, and then one of the two removed.
        _ = zone.apply([.add(DNSResourceRecord(name: zoneName, ttl: 3600, data: .ns(name("ns2.mat.example."))))])
        _ = zone.apply([.deleteRecord(zoneName, .ns(name("ns.mat.example.")))])
        #expect(zone.rrset(at: zoneName, type: .ns)?.records == [.ns(name("ns2.mat.example."))])
        // An older SOA serial is ignored, a newer one taken as is.
        var soa = zone.soa
        let serial = zone.serial
        soa.serial = serial &- 5
        #expect(zone.apply([.add(DNSResourceRecord(name: zoneName, ttl: 3600, data: .soa(soa)))]) == nil)
        soa.serial = serial &+ 1000
        soa.minimum = 5
        let diff = zone.apply([.add(DNSResourceRecord(name: zoneName, ttl: 3600, data: .soa(soa)))])
        #expect(diff?.newSerial == serial &+ 1000)
        #expect(zone.soa.minimum == 5)
    }

    @Test func cnameConflictsAreIgnored() {
        var zone = IMSCore.initialStore(testZone(), serial: 1)
        let alias = name("alias.mat.example.")
        _ = zone.apply([.add(DNSResourceRecord(name: alias, ttl: 10, data: .cname(node1)))])
        #expect(zone.apply([.add(DNSResourceRecord(name: alias, ttl: 10, data: a("192.0.2.1")))]) == nil)
        _ = zone.apply([.add(DNSResourceRecord(name: alias, ttl: 10, data: .cname(node2)))])
        #expect(zone.rrset(at: alias, type: .cname)?.records == [.cname(node2)])
        #expect(zone.apply([.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.1"))),
                            .add(DNSResourceRecord(name: node1, ttl: 10, data: .cname(node2)))])?.added.count == 1)
    }

    @Test func diffsRevertExactlyIncludingTTLChanges() {
        var zone = IMSCore.initialStore(testZone(), serial: 1)
        _ = zone.apply([.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.1"))),
                        .add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.2")))])
        let before = zone
        let diff = zone.apply([.add(DNSResourceRecord(name: node1, ttl: 60, data: a("192.0.2.3"))),
                               .deleteRecord(node1, a("192.0.2.1")),
                               .add(DNSResourceRecord(name: node2, ttl: 10, data: a("192.0.2.9")))])
        let change = try! #require(diff)
        #expect(change.deleted.count == 2)  // the whole old set: its TTL changed
        #expect(change.added.count == 3)
        zone.revert(change)
        #expect(zone.nodes == before.nodes)
        #expect(zone.serial == before.serial)
        #expect(!zone.nameExists(name("20.100.51.198.hoa.mat.example.")))
        var replayed = before
        replayed.apply(change)
        zone.apply(change)
        #expect(replayed.nodes == zone.nodes)
    }
}
