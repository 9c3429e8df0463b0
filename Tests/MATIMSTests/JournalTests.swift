#if canImport(Glibc)
import Glibc
#endif
import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATTestSupport
import Testing

@Suite("Journal: acknowledged updates survive a crash and a restart")
struct JournalTests {
    /// Applies a few updates and drops the core without closing it: what `kill -9` leaves.
    func populate(_ directory: String, clock: TestClock) throws -> ZoneStore {
        let core = try makeCore(clock: clock, stateDirectory: directory)
        for i in 0..<20 {
            let owner = hoa("198.51.100.\(i + 1)")
            let reply = try send(update(adminKey, at: baseTime + UInt64(i)) { u in
                u.deleteRRset(owner, type: .a)
                u.add(owner, ttl: 10, a("192.0.2.\(i + 1)"))
                u.add(owner, ttl: 10, .txt(strings: ["v=1", "seq=\(i)"]))
            }, to: core)
            #expect(rcode(reply) == .noError)
        }
        #expect(rcode(try send(update(adminKey, at: baseTime + 30) { $0.deleteAllRRsets(hoa("198.51.100.5")) }, to: core)) == .noError)
        return try #require(core.zone(zoneName))
    }

    @Test func aRestartReplaysTheJournalToTheSameZone() throws {
        let directory = try TemporaryDirectory(prefix: "mat-ims-test")
        defer { directory.remove() }
        let clock = TestClock()
        let before = try populate(directory.path, clock: clock)
        #expect(directory.files == ["mat.example.journal", "mat.example.snapshot"])
        let reopened = try makeCore(clock: clock, stateDirectory: directory.path)
        let after = try #require(reopened.zone(zoneName))
        #expect(after.nodes == before.nodes)
        #expect(after.serial == before.serial)
        // The start compacted the journal into the snapshot; the history stayed for IXFR.
        var info = stat()
        stat(directory.path + "/mat.example.journal", &info)
        #expect(info.st_size == 8)
        let third = try makeCore(clock: clock, stateDirectory: directory.path)
        #expect(try #require(third.zone(zoneName)).nodes == before.nodes)
    }

    @Test func replayProtectionSurvivesARestart() throws {
        let directory = try TemporaryDirectory(prefix: "mat-ims-test")
        defer { directory.remove() }
        let clock = TestClock()
        let first = try makeCore(clock: clock, stateDirectory: directory.path)
        let old = try update(node1Key, at: baseTime) { $0.add(node1, ttl: 10, a("192.0.2.10")) }
        try send(old, to: first)
        try send(update(node1Key, at: baseTime + 2) { u in
            u.deleteRRset(node1, type: .a)
            u.add(node1, ttl: 10, a("192.0.2.20"))
        }, to: first)
        let restarted = try makeCore(clock: clock, stateDirectory: directory.path)
        let replay = try send(old, to: restarted)
        #expect(replay.tsig?.data.error == .badTime)
        #expect(try #require(restarted.zone(zoneName)).rrset(at: node1, type: .a)?.records == [a("192.0.2.20")])
    }

    @Test func aTornRecordAtTheEndIsCutOff() throws {
        let directory = try TemporaryDirectory(prefix: "mat-ims-test")
        defer { directory.remove() }
        let clock = TestClock()
        let before = try populate(directory.path, clock: clock)
        // A crash in the middle of writing the next record: half of it reached the file.
        let path = directory.path + "/mat.example.journal"
        let fd = open(path, O_WRONLY | O_APPEND)
        let garbage: [UInt8] = [0, 0, 1, 0, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3]
        _ = garbage.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let reopened = try makeCore(clock: clock, stateDirectory: directory.path)
        #expect(try #require(reopened.zone(zoneName)).nodes == before.nodes)
        // And the server goes on accepting updates after it.
        #expect(rcode(try send(update(adminKey, at: baseTime + 100) { $0.add(node1, ttl: 10, a("192.0.2.1")) }, to: reopened)) == .noError)
    }

    @Test func aJournalWithoutItsSnapshotIsRefused() throws {
        let directory = try TemporaryDirectory(prefix: "mat-ims-test")
        defer { directory.remove() }
        _ = try populate(directory.path, clock: TestClock())
        unlink(directory.path + "/mat.example.snapshot")
        #expect(throws: JournalError.self) { try makeCore(stateDirectory: directory.path) }
    }

    @Test func backgroundCompactionKeepsEveryUpdate() throws {
        let directory = try TemporaryDirectory(prefix: "mat-ims-test")
        defer { directory.remove() }
        let clock = TestClock()
        let core = try makeCore(clock: clock, stateDirectory: directory.path) { $0.journalCompactBytes = 4096 }
        for i in 0..<200 {
            let owner = hoa("198.51.100.\(i % 250 + 1)")
            try send(update(adminKey, at: baseTime + UInt64(i)) { u in
                u.deleteRRset(owner, type: .a)
                u.add(owner, ttl: 10, a("192.0.2.\(i % 250 + 1)"))
                u.deleteRRset(owner, type: .txt)
                u.add(owner, ttl: 10, .txt(strings: ["v=1", "seq=\(i)"]))
            }, to: core)
        }
        for _ in 0..<500 where core.isCompacting { usleep(10_000) }
        #expect(core.counters[.journalCompactions] > 0)
        let expected = try #require(core.zone(zoneName))
        let reopened = try makeCore(clock: clock, stateDirectory: directory.path)
        #expect(try #require(reopened.zone(zoneName)).nodes == expected.nodes)
        #expect(try #require(reopened.zone(zoneName)).serial == expected.serial)
    }

    @Test func aChangedConfigurationUpdatesTheApexOnce() throws {
        let directory = try TemporaryDirectory(prefix: "mat-ims-test")
        defer { directory.remove() }
        let clock = TestClock()
        let first = try makeCore(clock: clock, stateDirectory: directory.path)
        let serial = try #require(first.zone(zoneName)).serial
        let changed = try makeCore(clock: clock, stateDirectory: directory.path) { config in
            config.zones[0].nameServers = [name("ns.mat.example."), name("ns2.mat.example.")]
            config.zones[0].negativeTTL = 5
        }
        let zone = try #require(changed.zone(zoneName))
        #expect(zone.serial == serial &+ 1)
        #expect(zone.rrset(at: zoneName, type: .ns)?.records.count == 2)
        #expect(zone.soa.minimum == 5)
        let again = try makeCore(clock: clock, stateDirectory: directory.path) { config in
            config.zones[0].nameServers = [name("ns.mat.example."), name("ns2.mat.example.")]
            config.zones[0].negativeTTL = 5
        }
        #expect(try #require(again.zone(zoneName)).serial == serial &+ 1)
    }

    @Test func aJournalThatCannotBeWrittenUndoesTheChangeAndAnswersServFail() throws {
        let directory = try TemporaryDirectory(prefix: "mat-ims-test")
        defer { directory.remove() }
        let core = try makeCore(stateDirectory: directory.path)
        try send(update(adminKey) { $0.add(node1, ttl: 10, a("192.0.2.1")) }, to: core)
        #expect(rcode(try query(core, node2, .a)) == .nxDomain)  // now cached
        let before = try #require(core.zone(zoneName))
        core.close()  // the journal is gone: every commit fails
        let reply = try send(update(adminKey, at: baseTime + 1) { u in
            u.add(node2, ttl: 10, a("192.0.2.2"))
            u.deleteRRset(node1, type: .a)
        }, to: core)
        #expect(rcode(reply) == .servFail)
        let after = try #require(core.zone(zoneName))
        #expect(after.nodes == before.nodes && after.serial == before.serial)
        #expect(core.counters[.updatesFailedJournal] == 1)
        #expect(rcode(try query(core, node2, .a)) == .nxDomain)
        #expect(try query(core, node1, .a).answers.count == 1)
    }

    @Test func recordsRoundTripThroughTheEntryFormat() throws {
        let old = DNSResourceRecord(name: zoneName, ttl: 60, data: .soa(DNSSOA(primary: name("ns.mat.example."),
            mailbox: name("h.mat.example."), serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5)))
        var new = old
        if case .soa(var s) = new.data { s.serial = 2; new.data = .soa(s) }
        let diff = ZoneDiff(oldSOA: old, newSOA: new,
                            deleted: [DNSResourceRecord(name: node1, ttl: 10, data: a("192.0.2.1"))],
                            added: [DNSResourceRecord(name: node6, ttl: 10, data: aaaa("2001:db8::1")),
                                    DNSResourceRecord(name: moa("192.0.2.1"), ttl: 10, data: .ptr(node1))])
        let stamp = SignerStamp(keyName: node1, timeSigned: baseTime, mac: [1, 2, 3])
        let payload = try #require(JournalFormat.encodeEntry(diff, signer: stamp))
        let (decoded, decodedStamp) = try JournalFormat.decodeEntry(payload, from: 0, to: payload.count)
        #expect(decoded == diff)
        #expect(decodedStamp == stamp)
        #expect(ZoneJournal.fileBase(for: name("Mat.Example.")) == "mat.example")
        #expect(ZoneJournal.fileBase(for: name("a/b.example.")) == "a_2fb.example")
    }
}
