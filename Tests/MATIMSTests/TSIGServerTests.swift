import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import Testing

@Suite("TSIG at the server: every failure refused, the zone unchanged")
struct TSIGServerTests {
    func assertUnchanged(_ core: IMSCore, serial: UInt32, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let zone = try #require(core.zone(zoneName), sourceLocation: sourceLocation)
        #expect(zone.serial == serial, sourceLocation: sourceLocation)
        #expect(zone.rrsets(at: node1) == nil, sourceLocation: sourceLocation)
    }

    @Test func unsignedUpdatesAreRefused() throws {
        let core = try makeCore()
        let serial = try #require(core.zone(zoneName)).serial
        let reply = try send(update(nil) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        #expect(rcode(reply) == .refused)
        #expect(reply.questions.first?.name == zoneName)
        try assertUnchanged(core, serial: serial)
        #expect(core.counters[.updatesRefusedUnsigned] == 1)
    }

    @Test func aWrongSecretIsBadSigAndAnUnknownKeyBadKey() throws {
        let core = try makeCore()
        let serial = try #require(core.zone(zoneName)).serial
        let forged = try send(update(strangerKey) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        #expect(rcode(forged) == .notAuth)
        #expect(forged.tsig?.data.error == .badSig)
        #expect(forged.tsig?.data.mac.isEmpty == true)  // unsigned: we cannot prove anything to a stranger
        let unknown = TSIGKey(name: name("nobody.mat.example."), secret: Array(repeating: 1, count: 32))
        let badKey = try send(update(unknown) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        #expect(badKey.tsig?.data.error == .badKey)
        try assertUnchanged(core, serial: serial)
        #expect(core.counters[.tsigBadSig] == 1 && core.counters[.tsigBadKey] == 1)
    }

    @Test func signaturesOutsideTheFudgeAreBadTime() throws {
        let clock = TestClock()
        let core = try makeCore(clock: clock)
        let serial = try #require(core.zone(zoneName)).serial
        for skew in [Int64(-301), 301, -3600, 86400] {
            let time = UInt64(Int64(baseTime) + skew)
            let reply = try send(update(node1Key, at: time) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
            #expect(rcode(reply) == .notAuth)
            #expect(reply.tsig?.data.error == .badTime)
            // Signed, with the server's clock in Other Data.
            #expect(reply.tsig?.data.otherData == [0, 0, 0x6B, 0x49, 0xD2, 0x00])
        }
        // A smaller fudge than the skew is honoured too.
        let tight = try send(update(node1Key, at: baseTime - 20, fudge: 10) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        #expect(tight.tsig?.data.error == .badTime)
        try assertUnchanged(core, serial: serial)
        #expect(core.counters[.tsigBadTime] == 5)
    }

    @Test func aReplayedUpdateIsRefusedEvenWithinTheFudge() throws {
        let clock = TestClock()
        let core = try makeCore(clock: clock)
        let original = try update(node1Key, at: baseTime) { u in
            u.deleteRRset(node1, type: .a)
            u.add(node1, ttl: 10, a("192.0.2.10"))
        }
        #expect(rcode(try send(original, to: core)) == .noError)
        clock.advance(5)
        let moved = try update(node1Key, at: baseTime + 5) { u in
            u.deleteRRset(node1, type: .a)
            u.add(node1, ttl: 10, a("192.0.2.20"))
        }
        #expect(rcode(try send(moved, to: core)) == .noError)
        // The captured first update, replayed: older than the last one accepted.
        let replay = try send(original, to: core)
        #expect(replay.tsig?.data.error == .badTime)
        // The same bytes again at the same second: identical MAC.
        let again = try send(moved, to: core)
        #expect(again.tsig?.data.error == .badTime)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .a)?.records == [a("192.0.2.20")])
        #expect(core.counters[.updatesRefusedReplay] == 2)
        // A different update in the same second is fine.
        let sameSecond = try update(node1Key, at: baseTime + 5, id: 99) { $0.add(node1, ttl: 10, .txt(strings: ["v=1"])) }
        #expect(rcode(try send(sameSecond, to: core)) == .noError)
    }

    @Test func theReplayGuardToleratesOneSecondOfReorderingOnly() {
        var guardian = ReplayGuard()
        let key = node1
        func admit(_ key: DNSName, _ time: UInt64, _ mac: UInt8) -> Bool { guardian.admit(key: key, time: time, mac: [mac]) }
        #expect(admit(key, 100, 1))
        #expect(admit(key, 101, 2))
        #expect(admit(key, 100, 3))   // handled late, never seen: fine
        #expect(!admit(key, 100, 1))  // seen: a replay
        #expect(!admit(key, 101, 2))
        #expect(!admit(key, 99, 4))   // two seconds older
        #expect(admit(key, 105, 1))
        #expect(admit(key, 104, 9))   // one second late, unseen: fine
        #expect(!admit(key, 103, 9))
        #expect(admit(node2, 50, 1))  // keys are independent
        var restored = ReplayGuard()
        for stamp in guardian.stamps.sorted(by: { $0.timeSigned < $1.timeSigned }) { restored.restore(stamp) }
        let replayed = restored.admit(key: key, time: 105, mac: [1])
        let stale = restored.admit(key: key, time: 103, mac: [7])
        #expect(!replayed && !stale)
    }

    @Test func truncatedMACsFollowRFC8945() throws {
        let core = try makeCore()
        var builder = DNSUpdateBuilder(id: 5, zone: zoneName)
        builder.add(node1, ttl: 10, a("192.0.2.10"))
        let bytes = try builder.message.encode()
        let truncated = try TSIG.sign(bytes, key: node1Key, now: baseTime, macLength: 16)
        let reply = try #require(core.handleDatagram(truncated.bytes))
        let message = try DNSMessage(bytes: reply)
        #expect(message.tsig?.data.error == .badTrunc)
        #expect(core.counters[.tsigBadTrunc] == 1)
    }

    @Test func signedQueriesGetSignedAnswersAndBadOnesErrors() throws {
        let core = try makeCore()
        let bytes = try queryBytes(zoneName, .soa)
        let signed = try TSIG.sign(bytes, key: transferKey, now: baseTime)
        let reply = try #require(core.handleDatagram(signed.bytes))
        let outcome = TSIG.verifyResponse(reply, key: transferKey, requestMAC: signed.mac, now: baseTime)
        #expect(outcome.context.map { .verified($0) } == outcome)
        let forged = try TSIG.sign(bytes, key: TSIGKey(name: transferKey.name, secret: [1, 2, 3]), now: baseTime)
        let refused = try DNSMessage(bytes: try #require(core.handleDatagram(forged.bytes)))
        #expect(rcode(refused) == .notAuth && refused.tsig?.data.error == .badSig)
    }
}
