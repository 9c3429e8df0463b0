import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import Testing

@Suite("Zone store and serial arithmetic")
struct ZoneStoreTests {
    func store() -> ZoneStore {
        IMSCore.initialStore(testZone(), serial: 100)
    }

    @Test func serialArithmeticFollowsRFC1982() {
        #expect(SerialNumber.isNewer(2, than: 1))
        #expect(!SerialNumber.isNewer(1, than: 2))
        #expect(!SerialNumber.isNewer(5, than: 5))
        #expect(SerialNumber.isNewer(0, than: 0xFFFF_FFFF))
        #expect(SerialNumber.isNewer(10, than: 0xFFFF_FFF0))
        #expect(!SerialNumber.isNewer(0x8000_0000, than: 0))
        #expect(SerialNumber.next(0xFFFF_FFFF) == 0)
    }

    @Test func emptyNonTerminalsExistAndGoAwayWithTheirLastChild() {
        var zone = store()
        zone.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.10")))
        #expect(zone.nameExists(name("hoa.mat.example.")))
        #expect(zone.nameExists(name("198.hoa.mat.example.")))
        #expect(zone.nameExists(name("100.51.198.hoa.mat.example.")))
        #expect(!zone.nameExists(name("11.100.51.198.hoa.mat.example.")))
        zone.add(DNSResourceRecord(name: node2, ttl: 10, data: a("192.0.2.20")))
        zone.remove(node1, a("192.0.2.10"))
        #expect(zone.nameExists(name("100.51.198.hoa.mat.example.")))
        #expect(!zone.nameExists(node1))
        zone.remove(node2, a("192.0.2.20"))
        #expect(!zone.nameExists(name("hoa.mat.example.")))
        #expect(zone.nodes.count == 2)  // apex and the name server
    }

    @Test func addingADuplicateUpdatesTheTTLOfTheWholeSet() {
        var zone = store()
        zone.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.10")))
        zone.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.11")))
        let added = zone.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.11")))
        #expect(!added)
        zone.add(DNSResourceRecord(name: node1, ttl: 30, data: a("192.0.2.10")))
        let set = zone.rrset(at: node1, type: .a)
        #expect(set?.ttl == 30)
        #expect(set?.records.count == 2)
    }

    @Test func answersPositiveNegativeAndNoData() {
        var zone = store()
        zone.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.10")))
        let positive = zone.answer(name: node1, owner: node1, type: .a, allTypesForAny: false)
        #expect(positive.responseCode == .noError && positive.answers.count == 1 && positive.authoritative)
        let noData = zone.answer(name: node1, owner: node1, type: .aaaa, allTypesForAny: false)
        #expect(noData.responseCode == .noError && noData.answers.isEmpty)
        #expect(noData.authorities.first?.type == .soa)
        #expect(noData.authorities.first?.ttl == 10)  // min(SOA TTL, MINIMUM)
        let ent = zone.answer(name: name("hoa.mat.example."), owner: name("hoa.mat.example."), type: .a, allTypesForAny: false)
        #expect(ent.responseCode == .noError && ent.answers.isEmpty)
        let missing = zone.answer(name: node2, owner: node2, type: .a, allTypesForAny: false)
        #expect(missing.responseCode == .nxDomain && missing.authorities.first?.type == .soa)
        let ns = zone.answer(name: zoneName, owner: zoneName, type: .ns, allTypesForAny: false)
        #expect(ns.answers.count == 1 && ns.additionals.first?.data == a("192.0.2.53"))
    }

    @Test func cnameIsFollowedInsideTheZoneAndLoopsEnd() {
        var zone = store()
        zone.add(DNSResourceRecord(name: name("alias.mat.example."), ttl: 10, data: .cname(node1)))
        zone.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.10")))
        let chased = zone.answer(name: name("alias.mat.example."), owner: name("alias.mat.example."), type: .a,
                                 allTypesForAny: false)
        #expect(chased.answers.map(\.type) == [.cname, .a])
        zone.add(DNSResourceRecord(name: name("l1.mat.example."), ttl: 10, data: .cname(name("l2.mat.example."))))
        zone.add(DNSResourceRecord(name: name("l2.mat.example."), ttl: 10, data: .cname(name("l1.mat.example."))))
        let loop = zone.answer(name: name("l1.mat.example."), owner: name("l1.mat.example."), type: .a, allTypesForAny: false)
        #expect(loop.answers.count == 8)
    }

    @Test func delegationsGiveReferralsWithoutAA() {
        var zone = store()
        let cut = name("sub.mat.example.")
        zone.add(DNSResourceRecord(name: cut, ttl: 60, data: .ns(name("ns.sub.mat.example."))))
        zone.add(DNSResourceRecord(name: name("ns.sub.mat.example."), ttl: 60, data: a("192.0.2.54")))
        let below = name("x.y.sub.mat.example.")
        let referral = zone.answer(name: below, owner: below, type: .a, allTypesForAny: false)
        #expect(!referral.authoritative)
        #expect(referral.authorities.map(\.type) == [.ns])
        #expect(referral.additionals.map(\.data) == [a("192.0.2.54")])
        zone.setRRsets([], at: cut)
        #expect(zone.delegations.isEmpty)
    }

    @Test func minimalAnyGivesOneSetOverUDPAndAllOverTCP() {
        var zone = store()
        zone.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.10")))
        zone.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.11")))
        zone.add(DNSResourceRecord(name: node1, ttl: 10, data: .txt(strings: ["v=1", "seq=1"])))
        #expect(zone.answer(name: node1, owner: node1, type: .any, allTypesForAny: false).answers.count == 1)
        #expect(zone.answer(name: node1, owner: node1, type: .any, allTypesForAny: true).answers.count == 3)
    }

    @Test func namesForIPv4AndIPv6AddressesAreReversed() throws {
        #expect(hoa("198.51.100.10") == name("10.100.51.198.hoa.mat.example."))
        #expect(moa("192.0.2.10") == name("10.2.0.192.moa.mat.example."))
        let six = hoa("2001:db8:100::10")
        #expect(six.labelCount == 32 + 3)
        #expect(six.description.hasPrefix("0.1.0.0.0.0.0.0."))
        #expect(six.description.hasSuffix("0.0.1.0.8.b.d.0.1.0.0.2.hoa.mat.example."))
    }
}
