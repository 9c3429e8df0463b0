import MATConfig
import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import Testing

@Suite("Update limits: how far one node key can grow the zone")
struct UpdateLimitTests {
    func v4(_ i: Int) -> DNSRecordData { a("192.0.2.\(i)") }

    @Test func aNameHoldsSixteenAddressesNotSeventeen() throws {
        let core = try makeCore()
        let sixteen = try send(update(node1Key) { u in
            for i in 1...10 { u.add(node1, ttl: 10, v4(i)) }
            for i in 1...6 { u.add(node1, ttl: 10, aaaa("2001:db8::\(i)")) }
        }, to: core)
        #expect(rcode(sixteen) == .noError)
        let serial = try #require(core.zone(zoneName)).serial
        let seventeenth = try send(update(node1Key, at: baseTime + 1) { $0.add(node1, ttl: 10, v4(11)) }, to: core)
        #expect(rcode(seventeenth) == .refused)
        #expect(core.counters[.updatesRefusedLimit] == 1)
        #expect(core.counters[.updatesRefusedPolicy] == 0)
        let zone = try #require(core.zone(zoneName))
        #expect(zone.serial == serial)
        #expect(zone.rrset(at: node1, type: .a)?.records.count == 10)
        // Replacing all sixteen with sixteen others in one update is fine: only the result counts.
        let replaced = try send(update(node1Key, at: baseTime + 2) { u in
            u.deleteRRset(node1, type: .a)
            u.deleteRRset(node1, type: .aaaa)
            for i in 101...116 { u.add(node1, ttl: 10, v4(i)) }
        }, to: core)
        #expect(rcode(replaced) == .noError)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .a)?.records.count == 16)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .aaaa) == nil)
    }

    @Test func everyTypeCountsTowardsTheRecordsOfAName() throws {
        let core = try makeCore { $0.zones[0].updateLimits = UpdateLimits(addressesPerName: 16, recordsPerName: 3) }
        let three = try send(update(node1Key) { u in
            u.add(node1, ttl: 10, v4(1))
            u.add(node1, ttl: 10, v4(2))
            u.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=1"]))
        }, to: core)
        #expect(rcode(three) == .noError)
        let secondTXT = try send(update(node1Key, at: baseTime + 1) { $0.add(node1, ttl: 10, .txt(strings: ["x"])) }, to: core)
        #expect(rcode(secondTXT) == .refused)
        // Swapping the TXT (delete + add) keeps the count and is accepted.
        let swap = try send(update(node1Key, at: baseTime + 2) { u in
            u.deleteRRset(node1, type: .txt)
            u.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=2"]))
        }, to: core)
        #expect(rcode(swap) == .noError)
        #expect(core.counters[.updatesRefusedLimit] == 1)
    }

    @Test func aKeyOwnsItsNameAndALimitedNumberOfPointerNames() throws {
        let core = try makeCore { $0.zones[0].updateLimits.namesPerKey = 4 }
        // Its own name plus three PTR names: four.
        let three = try send(update(node1Key) { u in
            u.add(node1, ttl: 10, v4(1))
            for i in 1...3 { u.add(moa("192.0.2.\(i)"), ttl: 10, .ptr(node1)) }
        }, to: core)
        #expect(rcode(three) == .noError)
        #expect(try #require(core.zone(zoneName)).ptrCount(to: node1) == 3)
        let fourth = try send(update(node1Key, at: baseTime + 1) { $0.add(moa("192.0.2.4"), ttl: 10, .ptr(node1)) }, to: core)
        #expect(rcode(fourth) == .refused)
        #expect(try #require(core.zone(zoneName)).rrsets(at: moa("192.0.2.4")) == nil)
        // Moving a pointer (delete one, add another) does not grow the count.
        let move = try send(update(node1Key, at: baseTime + 2) { u in
            u.delete(moa("192.0.2.3"), .ptr(node1))
            u.add(moa("192.0.2.4"), ttl: 10, .ptr(node1))
        }, to: core)
        #expect(rcode(move) == .noError)
        // Another key has its own allowance, even at the same names.
        let other = try send(update(node2Key) { u in
            for i in 1...3 { u.add(moa("192.0.2.\(i)"), ttl: 10, .ptr(node2)) }
        }, to: core)
        #expect(rcode(other) == .noError)
        #expect(core.counters[.updatesRefusedLimit] == 1)
        #expect(try #require(core.zone(zoneName)).ptrCount(to: node1) == 3)
    }

    @Test func adminKeysAreNotBoundAndAnOverfullNameMayShrink() throws {
        let core = try makeCore()
        let admin = try send(update(adminKey) { u in for i in 1...20 { u.add(node1, ttl: 10, v4(i)) } }, to: core)
        #expect(rcode(admin) == .noError)
        let shrink = try send(update(node1Key) { $0.delete(node1, v4(20)) }, to: core)
        #expect(rcode(shrink) == .noError)
        // A TTL change re-adds the whole set but does not grow it.
        let ttl = try send(update(node1Key, at: baseTime + 1) { $0.add(node1, ttl: 30, v4(1)) }, to: core)
        #expect(rcode(ttl) == .noError)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .a)?.ttl == 30)
        let grow = try send(update(node1Key, at: baseTime + 2) { $0.add(node1, ttl: 30, v4(20)) }, to: core)
        #expect(rcode(grow) == .refused)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .a)?.records.count == 19)
    }

    @Test func thePointerCountFollowsEveryWayOfChangingTheZone() {
        var store = IMSCore.initialStore(testZone(), serial: 1)
        let m1 = moa("192.0.2.1"), m2 = moa("192.0.2.2")
        store.add(DNSResourceRecord(name: m1, ttl: 10, data: .ptr(node1)))
        store.add(DNSResourceRecord(name: m1, ttl: 10, data: .ptr(node1)))  // already there
        store.add(DNSResourceRecord(name: m1, ttl: 10, data: .ptr(node2)))
        store.add(DNSResourceRecord(name: m2, ttl: 10, data: .ptr(name("10.100.51.198.HOA.mat.example."))))
        #expect(store.ptrCount(to: node1) == 2 && store.ptrCount(to: node2) == 1)
        let diff = store.apply([.deleteAllRRsets(m1)])
        #expect(store.ptrCount(to: node1) == 1 && store.ptrCount(to: node2) == 0)
        store.revert(diff!)
        #expect(store.ptrCount(to: node1) == 2 && store.ptrCount(to: node2) == 1)
        store.remove(m2, .ptr(node1))
        _ = store.apply([.deleteRRset(m1, .ptr)])
        #expect(store.ptrCount(to: node1) == 0 && store.ptrCount(to: node2) == 0)
    }
}

@Suite("Response rate limiter and connection limiter (pure)")
struct LimiterTests {
    func limiter(rate: Int = 5, slip: Int = 2, window: Int = 2) -> ResponseRateLimiter {
        ResponseRateLimiter(RateLimitConfiguration(responsesPerSecond: rate, slip: slip, window: window, exempt: []))
    }

    let client = IPAddress("192.0.2.10")!

    @Test func aPrefixGetsItsRateThenEverySecondResponseSlips() {
        var rrl = limiter()
        #expect((0..<5).map { _ in rrl.debit(client, now: 100) } == Array(repeating: .pass, count: 5))
        #expect((0..<6).map { _ in rrl.debit(client, now: 100) } == [.drop, .slip, .drop, .slip, .drop, .slip])
        // The same /24 shares the account; the next /24 has its own.
        #expect(rrl.debit(IPAddress("192.0.2.200")!, now: 100) == .drop)
        #expect(rrl.debit(IPAddress("192.0.3.10")!, now: 100) == .pass)
        // IPv6: one account per /56.
        for _ in 0..<5 { #expect(rrl.debit(IPAddress("2001:db8:0:100::1")!, now: 100) == .pass) }
        #expect(rrl.debit(IPAddress("2001:db8:0:1ff::2")!, now: 100) != .pass)
        #expect(rrl.debit(IPAddress("2001:db8:0:200::1")!, now: 100) == .pass)
    }

    @Test func aFloodStaysLimitedForTheWindowAfterItStops() {
        var rrl = limiter(rate: 5, slip: 0, window: 2)
        for _ in 0..<1000 { _ = rrl.debit(client, now: 100) }
        // The debt stops at window x rate (10): refilled after 2 s, overdrawn again by one.
        #expect(rrl.debit(client, now: 102) == .drop)
        #expect(rrl.debit(client, now: 103) == .pass)
        // A steady client below the rate is never limited.
        var steady = limiter(rate: 5)
        for i in 0..<100 { #expect(steady.debit(client, now: 200 + Double(i) * 0.25) == .pass) }
    }

    @Test func exemptSourcesAndAZeroRatePass() {
        var rrl = ResponseRateLimiter(RateLimitConfiguration(responsesPerSecond: 1, slip: 2, window: 1))
        for _ in 0..<10 { #expect(rrl.debit(IPAddress("127.0.0.1")!, now: 1) == .pass) }
        for _ in 0..<10 { #expect(rrl.debit(IPAddress("::1")!, now: 1) == .pass) }
        var off = limiter(rate: 0)
        for _ in 0..<10 { #expect(off.debit(client, now: 1) == .pass) }
        #expect(rrl.accountCount == 0 && off.accountCount == 0)
    }

    @Test func theTableStaysBoundedUnderASpoofedFlood() {
        var rrl = limiter(rate: 1, slip: 0, window: 60)
        let total = ResponseRateLimiter.maxAccounts + 5000
        for i in 0..<total {
            let source = IPAddress.v4(IPv4Address(UInt32(i) << 8))
            _ = rrl.debit(source, now: 1)
            _ = rrl.debit(source, now: 1)  // in debt, so not forgotten for free
        }
        #expect(rrl.accountCount <= ResponseRateLimiter.maxAccounts)
        #expect(rrl.accountCount > ResponseRateLimiter.maxAccounts / 2)
    }

    @Test func connectionsAreBoundedPerSourceAndInAll() {
        var limiter = ConnectionLimiter(total: 4, perSource: 2)
        let one = IPAddress("192.0.2.1")!, two = IPAddress("192.0.2.2")!
        #expect(limiter.admit(one) == .admitted)
        #expect(limiter.admit(one) == .admitted)
        #expect(limiter.admit(one) == .sourceFull)
        #expect(limiter.admit(two) == .admitted)
        // IPv6 sources count per /64.
        #expect(limiter.admit(IPAddress("2001:db8::1")!) == .admitted)
        #expect(limiter.admit(IPAddress("2001:db8::2")!) == .serverFull)
        limiter.release(IPAddress("2001:db8::1")!)
        #expect(limiter.admit(IPAddress("2001:db8::2")!) == .admitted)
        #expect(limiter.admit(IPAddress("2001:db8::3")!) == .serverFull)
        limiter.release(one)
        #expect(limiter.held(by: one) == 1 && limiter.active == 3)
        #expect(limiter.admit(one) == .admitted)
        var v6 = ConnectionLimiter(total: 10, perSource: 1)
        #expect(v6.admit(IPAddress("2001:db8:0:1::1")!) == .admitted)
        #expect(v6.admit(IPAddress("2001:db8:0:1:ffff::9")!) == .sourceFull)
        #expect(v6.admit(IPAddress("2001:db8:0:2::1")!) == .admitted)
    }

    @Test func theLimitsAreConfigurable() throws {
        let keys = node1Key.keyFileText
        let text = """
            [server]
            listen = 127.0.0.1:53
            key-file = k
            max-tcp-connections-per-source = 3
            rrl-responses-per-second = 50
            rrl-slip = 3
            rrl-window = 5
            rrl-exempt = 192.0.2.0/24
            rrl-exempt = 2001:db8::/32
            [zone]
            name = mat.example.
            max-addresses-per-name = 8
            max-records-per-name = 10
            max-names-per-key = 12
            """
        let read: (String) throws(ConfigError) -> String = { _ in keys }
        let config = try IMSConfiguration.parse(text, readFile: read)
        #expect(config.maxTCPConnectionsPerSource == 3)
        #expect(config.rateLimit == RateLimitConfiguration(responsesPerSecond: 50, slip: 3, window: 5,
                                                           exempt: [IMSPrefix("192.0.2.0/24")!, IMSPrefix("2001:db8::/32")!]))
        #expect(config.zones[0].updateLimits == UpdateLimits(addressesPerName: 8, recordsPerName: 10, namesPerKey: 12))
        // The defaults, and `none` for no exemption.
        let plain = try IMSConfiguration.parse("[server]\nlisten = 127.0.0.1\nrrl-exempt = none\n[zone]\nname = mat.example.\n",
                                               readFile: read)
        #expect(plain.maxTCPConnectionsPerSource == 8)
        #expect(plain.rateLimit == RateLimitConfiguration(exempt: []))
        #expect(plain.zones[0].updateLimits == UpdateLimits())
        #expect(IMSConfiguration().rateLimit.exempt == [IMSPrefix("127.0.0.0/8")!, IMSPrefix("::1/128")!])
        #expect(throws: ConfigError.self) {
            try IMSConfiguration.parse("[server]\nlisten = 127.0.0.1\nrrl-exempt = nowhere\n[zone]\nname = mat.example.\n",
                                       readFile: read)
        }
        #expect(throws: ConfigError.self) {
            try IMSConfiguration.parse("[server]\nlisten = 127.0.0.1\nrrl-slip = 11\n[zone]\nname = mat.example.\n",
                                       readFile: read)
        }
    }
}
