import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATTestSupport
import Synchronization
import Testing

/// A settable monotonic clock (seconds) for the core's expiry.
final class TestMonotonic: Sendable {
    private let value = Mutex<Double>(1_000)
    func advance(_ seconds: Double) { value.withLock { $0 += seconds } }
    var closure: @Sendable () -> Double { { self.value.withLock { $0 } } }
}

/// A node's registration as matd writes it: its MoAs, its TXT (with `life=` when
/// `lifetime` is set) and a PTR per MoA.
func registration(_ key: TSIGKey, owner: DNSName, moas: [String], sequence: Int, lifetime: Int?,
                  at time: UInt64) throws -> SignedRequest {
    try update(key, at: time) { u in
        u.deleteRRset(owner, type: .a)
        u.deleteRRset(owner, type: .txt)
        for address in moas { u.add(owner, ttl: 10, a(address)) }
        u.add(owner, ttl: 10, .txt(strings: ["v=1", "seq=\(sequence)"] + (lifetime.map { ["life=\($0)"] } ?? [])))
        for address in moas {
            u.deleteRRset(moa(address), type: .ptr)
            u.add(moa(address), ttl: 10, .ptr(owner))
        }
    }
}

@Suite struct MappingExpiryTests {
    @Test func theLifetimeIsOneWellFormedLifeString() {
        func life(_ strings: [String]) -> UInt32? { MappingExpiry.lifetime(of: .txt(strings: strings)) }
        #expect(life(["v=1", "seq=5", "life=300"]) == 300)
        #expect(life(["life=4294967295", "v=1"]) == UInt32.max)
        #expect(life(["v=1", "seq=5"]) == nil)
        #expect(life(["life=300", "life=300"]) == nil, "two are ambiguous")
        for bad in ["life=", "life=0", "life=030", "life=-1", "life=1e3", "life=4294967296", "life= 30", "life=99999999999"] {
            #expect(life([bad]) == nil, "\(bad)")
        }
        #expect(MappingExpiry.lifetime(of: a("192.0.2.1")) == nil)
    }

    @Test func aMappingIsDueOnceItsLifetimeHasPassedAndExpiringSparesOtherNodesPTRs() throws {
        var store = ZoneStore(origin: zoneName, soa: DNSSOA(primary: zoneName, mailbox: zoneName, serial: 1, refresh: 1,
                                                           retry: 1, expire: 1, minimum: 1), soaTTL: 60)
        store.add(DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.10")))
        store.add(DNSResourceRecord(name: node1, ttl: 10, data: .txt(strings: ["v=1", "seq=1", "life=30"])))
        store.add(DNSResourceRecord(name: moa("192.0.2.10"), ttl: 10, data: .ptr(node1)))
        store.add(DNSResourceRecord(name: moa("192.0.2.10"), ttl: 10, data: .ptr(node2)))
        // node2 publishes no lifetime: it never expires.
        store.add(DNSResourceRecord(name: node2, ttl: 10, data: a("192.0.2.10")))
        store.add(DNSResourceRecord(name: node2, ttl: 10, data: .txt(strings: ["v=1", "seq=1"])))
        var expiry = try MappingExpiry(zone: zoneName)
        expiry.track(store, now: 100)
        #expect(expiry.deadlines == [node1: 130])
        #expect(expiry.due(at: 129.9).isEmpty)
        #expect(expiry.due(at: 130) == [node1])
        let operations = expiry.expire(node1, in: store)
        #expect(operations == [.deleteRRset(node1, .a), .deleteRecord(moa("192.0.2.10"), .ptr(node1))])
        #expect(expiry.deadlines.isEmpty)
    }

    @Test func aNewTXTRestartsTheLifetimeAndOneWithoutALifetimeEndsIt() throws {
        var store = ZoneStore(origin: zoneName, soa: DNSSOA(primary: zoneName, mailbox: zoneName, serial: 1, refresh: 1,
                                                           retry: 1, expire: 1, minimum: 1), soaTTL: 60)
        var expiry = try MappingExpiry(zone: zoneName)
        func write(_ strings: [String], at now: Double) {
            let diff = store.apply([.deleteRRset(node1, .txt),
                                    .add(DNSResourceRecord(name: node1, ttl: 10, data: .txt(strings: strings)))])!
            expiry.track(diff, store: store, now: now)
        }
        write(["v=1", "seq=1", "life=30"], at: 0)
        #expect(expiry.deadlines[node1] == 30)
        write(["v=1", "seq=2", "life=60"], at: 20)
        #expect(expiry.deadlines[node1] == 80)
        write(["v=1", "seq=3"], at: 40)
        #expect(expiry.deadlines[node1] == nil)
        // A TXT outside `hoa.` is no mapping.
        let other = name("notes.mat.example.")
        let diff = store.apply([.add(DNSResourceRecord(name: other, ttl: 10, data: .txt(strings: ["life=5"])))])!
        expiry.track(diff, store: store, now: 50)
        #expect(expiry.deadlines.isEmpty)
    }
}

@Suite struct ExpiryCoreTests {
    @Test func aRegistrationNotRenewedWithinItsLifetimeLosesItsMoAsAndPTRs() throws {
        let clock = TestMonotonic()
        let core = try IMSCore(configuration: testConfiguration(), clock: TestClock().closure, monotonic: clock.closure)
        #expect(rcode(try send(registration(node1Key, owner: node1, moas: ["192.0.2.10"], sequence: 1, lifetime: 30,
                                            at: baseTime), to: core)) == .noError)
        clock.advance(20)
        // The refresh, at two thirds of the lifetime, restarts it.
        #expect(rcode(try send(registration(node1Key, owner: node1, moas: ["192.0.2.10"], sequence: 2, lifetime: 30,
                                            at: baseTime + 20), to: core)) == .noError)
        clock.advance(20)
        #expect(core.expireMappings() == 0)
        let serial = try #require(core.zone(zoneName)).serial
        clock.advance(10.5)
        #expect(core.expireMappings() == 1)
        let zone = try #require(core.zone(zoneName))
        #expect(zone.rrset(at: node1, type: .a) == nil)
        #expect(zone.rrset(at: moa("192.0.2.10"), type: .ptr) == nil)
        #expect(zone.rrset(at: node1, type: .txt)?.records == [.txt(strings: ["v=1", "seq=2", "life=30"])])
        #expect(zone.serial == serial &+ 1)
        #expect(core.counters[.mappingsExpired] == 1)
        #expect(rcode(try query(core, node1, .a)) == .noError)
        #expect(try query(core, node1, .a).answers.isEmpty)
        // Nothing more to expire; a new registration is taken as usual.
        clock.advance(100)
        #expect(core.expireMappings() == 0)
        #expect(rcode(try send(registration(node1Key, owner: node1, moas: ["192.0.2.11"], sequence: 3, lifetime: 30,
                                            at: baseTime + 200), to: core)) == .noError)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .a)?.records == [a("192.0.2.11")])
    }

    @Test func aMappingWithoutALifetimeNeverExpires() throws {
        let clock = TestMonotonic()
        let core = try IMSCore(configuration: testConfiguration(), clock: TestClock().closure, monotonic: clock.closure)
        try send(registration(node1Key, owner: node1, moas: ["192.0.2.10"], sequence: 1, lifetime: nil, at: baseTime),
                 to: core)
        clock.advance(1_000_000)
        #expect(core.expireMappings() == 0)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .a)?.records == [a("192.0.2.10")])
    }

    /// The expiry is a journaled change like an update: it survives a restart, and a
    /// mapping still alive at the restart gets its whole lifetime again.
    @Test func theExpiryIsJournaledAndARestartGrantsLifetimesAfresh() throws {
        let directory = try TemporaryDirectory(prefix: "mat-ims-test")
        defer { directory.remove() }
        let clock = TestMonotonic()
        var core: IMSCore? = try IMSCore(configuration: testConfiguration(stateDirectory: directory.path),
                                         clock: TestClock().closure, monotonic: clock.closure)
        try send(registration(node1Key, owner: node1, moas: ["192.0.2.10"], sequence: 1, lifetime: 30, at: baseTime),
                 to: core!)
        try send(registration(node2Key, owner: node2, moas: ["192.0.2.20"], sequence: 1, lifetime: 30, at: baseTime),
                 to: core!)
        clock.advance(31)
        try send(registration(node2Key, owner: node2, moas: ["192.0.2.20"], sequence: 2, lifetime: 30,
                              at: baseTime + 31), to: core!)
        #expect(core!.expireMappings() == 1)
        core!.close()
        core = nil
        clock.advance(25)
        let restarted = try IMSCore(configuration: testConfiguration(stateDirectory: directory.path),
                                    clock: TestClock().closure, monotonic: clock.closure)
        defer { restarted.close() }
        let zone = try #require(restarted.zone(zoneName))
        #expect(zone.rrset(at: node1, type: .a) == nil)
        #expect(zone.rrset(at: node2, type: .a)?.records == [a("192.0.2.20")])
        clock.advance(25)
        // node2's lifetime counts from the restart: 50 s after its registration it is still there.
        #expect(restarted.expireMappings() == 0)
        clock.advance(6)
        #expect(restarted.expireMappings() == 1)
    }
}
