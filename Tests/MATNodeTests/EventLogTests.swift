import Testing
@testable import MATNode

@Suite struct EventLogTests {
    @Test func numberedBoundedAndAskedForByTheLastNumberSeen() {
        let log = EventLog()
        #expect(log.events(after: nil) == ([], 1))
        for index in 1...(EventLog.capacity + 10) { log.post("alert", ["index": "\(index)"]) }
        let (all, next) = log.events(after: 0)
        #expect(all.count == EventLog.capacity && next == UInt64(EventLog.capacity + 11))
        #expect(all.first?.number == 11, "the oldest ten went: a reader sees the gap")
        #expect(log.events(after: next - 3).events.map(\.number) == [next - 2, next - 1])
        #expect(log.events(after: nil).events.isEmpty)
    }

    @Test func refusalsAreSummedAtMostOnceASecond() {
        let log = EventLog()
        var reporter = RefusalReporter()
        var counters = SignalingCounters()
        reporter.report(counters, now: 0, to: log)
        #expect(log.events(after: 0).events.isEmpty, "nothing refused, nothing posted")
        counters.refusedBadSignature = 500
        counters.refusedRateLimited = 2
        reporter.report(counters, now: 10, to: log)
        counters.refusedBadSignature = 900
        reporter.report(counters, now: 500, to: log)   // within the second: held back
        reporter.report(counters, now: 1_010, to: log)
        let events = log.events(after: 0).events
        #expect(events.map(\.details) == [["refused_bad_signature": "500", "refused_rate_limited": "2"],
                                          ["refused_bad_signature": "400"]])
        #expect(events.allSatisfy { $0.kind == "refused" })
    }
}
