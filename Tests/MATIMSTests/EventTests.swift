import MATDNS
import MATLog
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import Synchronization
import Testing

/// A journal in memory whose commits or stages can be made to fail, as a full or broken
/// disk would: the core's reaction to that is what these tests check.
final class FaultyJournal: ZoneJournaling {
    private let faults = Mutex((commit: false, stage: false))
    func failCommits(_ fail: Bool) { faults.withLock { $0.commit = fail } }
    func failStages(_ fail: Bool) { faults.withLock { $0.stage = fail } }

    func stage(_ diff: ZoneDiff, signer: SignerStamp?) -> Bool { !faults.withLock { $0.stage } }
    func commit() throws(JournalError) {
        if faults.withLock({ $0.commit }) { throw JournalError(description: "disk full") }
    }
    func compactIfNeeded(threshold: Int, store: ZoneStore, stamps: [SignerStamp]) -> Bool { false }
    var isCompacting: Bool { false }
    var size: Int { 0 }
    func close() {}
}

@Suite("IMS core events: what happened, returned for the server to log")
struct IMSEventTests {
    func coreWithJournal(_ journal: FaultyJournal, monotonic: TestMonotonic) throws -> IMSCore {
        try IMSCore(configuration: testConfiguration(), clock: TestClock().closure, monotonic: monotonic.closure,
                    journals: { _, initial in (journal, LoadedZone(store: initial, history: [], stamps: [])) })
    }

    @Test func anUpdatePastALimitIsAnEventNamingTheKeyAndTheLimit() throws {
        let core = try makeCore { $0.zones[0].updateLimits.addressesPerName = 1 }
        #expect(core.takeEvents().isEmpty)
        let refused = try send(update(node1Key) { u in
            u.add(node1, ttl: 10, a("192.0.2.1"))
            u.add(node1, ttl: 10, a("192.0.2.2"))
        }, to: core)
        #expect(rcode(refused) == .refused)
        let violation = LimitViolation(kind: .addressesPerName, name: node1, count: 2, limit: 1)
        #expect(core.takeEvents() == [.updateRefusedByLimit(key: node1Key.name, violation: violation)])
        // Taken once: the next take has nothing, and an accepted update adds nothing.
        #expect(core.takeEvents().isEmpty)
        #expect(rcode(try send(update(node1Key, at: baseTime + 1) { $0.add(node1, ttl: 10, a("192.0.2.1")) },
                               to: core)) == .noError)
        #expect(core.takeEvents().isEmpty)
    }

    @Test func anExpiredMappingIsAnEvent() throws {
        let clock = TestMonotonic()
        let core = try IMSCore(configuration: testConfiguration(), clock: TestClock().closure, monotonic: clock.closure)
        try send(registration(node1Key, owner: node1, moas: ["192.0.2.10"], sequence: 1, lifetime: 30, at: baseTime),
                 to: core)
        clock.advance(29)
        #expect(core.expireMappings() == 0)
        #expect(core.takeEvents().isEmpty)
        clock.advance(2)
        #expect(core.expireMappings() == 1)
        #expect(core.takeEvents() == [.mappingExpired(name: node1)])
    }

    @Test func aFailingJournalIsAnEventAndTheUpdateIsAnsweredServfail() throws {
        let journal = FaultyJournal()
        let clock = TestMonotonic()
        let core = try coreWithJournal(journal, monotonic: clock)
        journal.failCommits(true)
        let reply = try send(registration(node1Key, owner: node1, moas: ["192.0.2.10"], sequence: 1, lifetime: 30,
                                          at: baseTime), to: core)
        #expect(rcode(reply) == .servFail)
        #expect(core.takeEvents() == [.journalCommitFailed(zone: zoneName, error: "disk full")])
        #expect(core.counters[.updatesFailedJournal] == 1)
    }

    /// A core writing to `journal` whose one registration's 30 s lifetime has just passed.
    private func coreWithALapsedRegistration(_ journal: FaultyJournal) throws -> IMSCore {
        let clock = TestMonotonic()
        let core = try coreWithJournal(journal, monotonic: clock)
        try send(registration(node1Key, owner: node1, moas: ["192.0.2.10"], sequence: 1, lifetime: 30, at: baseTime),
                 to: core)
        clock.advance(31)
        return core
    }

    /// A journal that fails is tried again at the next call; a change that does not
    /// encode would not encode the next time either: the mapping stays.
    @Test func anExpiryTheJournalDoesNotTakeIsAnEvent() throws {
        let journal = FaultyJournal()
        let core = try coreWithALapsedRegistration(journal)
        journal.failCommits(true)
        #expect(core.expireMappings() == 0)
        #expect(core.takeEvents() == [.expiryCommitFailed(zone: zoneName, count: 1, error: "disk full")])
        #expect(core.counters[.updatesFailedJournal] == 1)
        journal.failCommits(false)
        journal.failStages(true)
        #expect(core.expireMappings() == 0)
        #expect(core.takeEvents() == [.expiryNotEncodable(name: node1)])
        journal.failStages(false)
        #expect(core.expireMappings() == 0)
        #expect(core.takeEvents().isEmpty)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .a)?.records == [a("192.0.2.10")])
    }

    @Test func anExpiryRetriedAfterAFailingJournalGoesThrough() throws {
        let journal = FaultyJournal()
        let core = try coreWithALapsedRegistration(journal)
        journal.failCommits(true)
        #expect(core.expireMappings() == 0)
        #expect(core.takeEvents().count == 1)
        journal.failCommits(false)
        #expect(core.expireMappings() == 1)
        #expect(core.takeEvents() == [.mappingExpired(name: node1)])
    }

    @Test func aZoneTooLongForHoANamesIsAnEventAtStart() throws {
        // 4 labels of 62 (63 octets each) and the root: 253 octets, no room left for "hoa".
        let long = name(Array(repeating: String(repeating: "z", count: 62), count: 4).joined(separator: ".") + ".")
        var configuration = testConfiguration()
        configuration.zones[0] = ZoneConfiguration(name: long)
        let core = try IMSCore(configuration: configuration, clock: TestClock().closure)
        #expect(core.takeEvents() == [.zoneWithoutExpiry(zone: long)])
    }

    @Test func theQueueIsBoundedAndSaysHowManyItDropped() {
        var queue = EventQueue()
        for _ in 0..<(EventQueue.capacity + 5) { queue.append(.mappingExpired(name: node1)) }
        let taken = queue.take()
        #expect(taken.count == EventQueue.capacity + 1)
        #expect(taken.last == .eventsDropped(count: 5))
        #expect(queue.take().isEmpty)
    }

    @Test func theServerLogsFailuresAsErrorsAndExpiriesAsInfo() {
        #expect(IMSCore.logLevel(of: .journalCommitFailed(zone: zoneName, error: "x")) == .error)
        #expect(IMSCore.logLevel(of: .updateRefusedByLimit(
            key: node1, violation: LimitViolation(kind: .namesPerKey, name: node1, count: 2, limit: 1))) == .notice)
        #expect(IMSCore.logLevel(of: .mappingExpired(name: node1)) == .info)
    }
}
