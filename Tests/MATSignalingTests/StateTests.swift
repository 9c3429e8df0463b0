import MATPacket
import Testing
import MATSignaling

@Suite("Replay guard")
struct ReplayGuardTests {
    @Test func strictlyIncreasingPerSender() {
        var guardian = ReplayGuard()
        #expect(guardian.lastSequence(from: Fixture.hoaA4) == nil)
        do { let ok = guardian.accept(sequence: 5, from: Fixture.hoaA4); #expect(ok) }
        do { let ok = guardian.accept(sequence: 5, from: Fixture.hoaA4); #expect(!ok) }
        do { let ok = guardian.accept(sequence: 4, from: Fixture.hoaA4); #expect(!ok) }
        #expect(guardian.lastSequence(from: Fixture.hoaA4) == 5)
        do { let ok = guardian.accept(sequence: 6, from: Fixture.hoaA4); #expect(ok) }
        do { let ok = guardian.accept(sequence: 1_000, from: Fixture.hoaA4); #expect(ok) }
        do { let ok = guardian.accept(sequence: 999, from: Fixture.hoaA4); #expect(!ok) }
        #expect(guardian.lastSequence(from: Fixture.hoaA4) == 1_000)
        // Another sender has its own counter; a first sequence of 0 is fine.
        do { let ok = guardian.accept(sequence: 0, from: Fixture.hoaA6); #expect(ok) }
        do { let ok = guardian.accept(sequence: 0, from: Fixture.hoaA6); #expect(!ok) }
        do { let ok = guardian.accept(sequence: 1, from: Fixture.hoaB4); #expect(ok) }
        #expect(guardian.count == 3)
        do { let ok = guardian.accept(sequence: UInt64.max, from: Fixture.hoaB4); #expect(ok) }
        do { let ok = guardian.accept(sequence: UInt64.max, from: Fixture.hoaB4); #expect(!ok) }
    }

    @Test func boundedAndRefusesNewSendersWhenFull() {
        var guardian = ReplayGuard(capacity: 3)
        let senders = (1...5).map { IPAddress.v4(IPv4Address(192, 0, 2, UInt8($0))) }
        for sender in senders.prefix(3) { do { let ok = guardian.accept(sequence: 1, from: sender); #expect(ok) } }
        do { let ok = guardian.accept(sequence: 1, from: senders[3]); #expect(!ok) }
        #expect(guardian.count == 3 && guardian.lastSequence(from: senders[3]) == nil)
        // Known senders still work; a refused one does not evict anybody.
        do { let ok = guardian.accept(sequence: 2, from: senders[0]); #expect(ok) }
        #expect(guardian.lastSequence(from: senders[1]) == 1)
        guardian.forget(senders[1])
        #expect(guardian.lastSequence(from: senders[1]) == nil)
        do { let ok = guardian.accept(sequence: 1, from: senders[4]); #expect(ok) }
        do { let ok = guardian.accept(sequence: 1, from: senders[1]); #expect(!ok) }
        #expect(guardian.count == 3)
        var none = ReplayGuard(capacity: 0)
        do { let ok = none.accept(sequence: 1, from: senders[0]); #expect(!ok) }
        #expect(ReplayGuard().capacity == 65536)
    }
}

@Suite("Rate limiter")
struct RateLimiterTests {
    let a = Fixture.moa4, b = Fixture.moa4b, c = Fixture.moa6

    @Test func burstThenRefill() {
        var limiter = RateLimiter()  // 20/s, burst 40
        for _ in 0..<40 { do { let ok = limiter.allow(source: a, now: 1_000); #expect(ok) } }
        do { let ok = limiter.allow(source: a, now: 1_000); #expect(!ok) }
        do { let ok = limiter.allow(source: a, now: 1_049); #expect(!ok) }  // 0.98 token
        do { let ok = limiter.allow(source: a, now: 1_050); #expect(ok) }   // one token every 50 ms
        do { let ok = limiter.allow(source: a, now: 1_050); #expect(!ok) }
        // Long idle: back to a full burst, not more.
        var allowed = 0
        for _ in 0..<100 where limiter.allow(source: a, now: 60_000) { allowed += 1 }
        #expect(allowed == 40)
        // Time going backwards gains nothing and does not trap.
        do { let ok = limiter.allow(source: a, now: 10); #expect(!ok) }
        do { let ok = limiter.allow(source: a, now: 60_000); #expect(!ok) }
    }

    @Test func sourcesAreIsolated() {
        var limiter = RateLimiter(perSourceRate: 1, perSourceBurst: 2)
        for _ in 0..<2 { let ok = limiter.allow(source: a, now: 0); #expect(ok) }
        do { let ok = limiter.allow(source: a, now: 0); #expect(!ok) }
        for source in [b, c] { let ok = limiter.allow(source: source, now: 0); #expect(ok) }
        do { let ok = limiter.allow(source: b, now: 0); #expect(ok) }
        do { let ok = limiter.allow(source: b, now: 0); #expect(!ok) }
        do { let ok = limiter.allow(source: a, now: 1_000); #expect(ok) }
        do { let ok = limiter.allow(source: a, now: 1_999); #expect(!ok) }
    }

    @Test func boundedMemory() {
        var limiter = RateLimiter(maximumSources: 16)
        // An attacker exhausts its own bucket.
        for _ in 0..<40 { do { let ok = limiter.allow(source: a, now: 0); #expect(ok) } }
        do { let ok = limiter.allow(source: a, now: 0); #expect(!ok) }
        // Many spoofed sources: never more than 16 buckets; past that, only the shared
        // budget (SignalAdmission's) limits them, so they are allowed here.
        for i in 0..<1_000 {
            let source = IPAddress.v6(IPv6Address(high: 0x2001_0db8_ffff_0000, low: UInt64(i)))
            do { let ok = limiter.allow(source: source, now: UInt64(i % 10)); #expect(ok) }
            #expect(limiter.trackedSources <= 16)
        }
        #expect(limiter.trackedSources == 16)
        // 150 ms later the spoofed buckets have refilled (one token used, 50 ms per token)
        // and are dropped at the next new source; the attacker's (3 of 40 tokens) is kept.
        do { let ok = limiter.allow(source: b, now: 150); #expect(ok) }
        #expect(limiter.trackedSources == 2)
        var allowed = 0
        for _ in 0..<10 where limiter.allow(source: a, now: 150) { allowed += 1 }
        #expect(allowed == 3)
    }

    @Test func zeroBurstAllowsNothing() {
        var none = RateLimiter(perSourceBurst: 0)
        do { let ok = none.allow(source: a, now: 0); #expect(!ok) }
        do { let ok = none.allow(source: a, now: 100_000); #expect(!ok) }
        #expect(none.trackedSources == 0)
    }
}

@Suite("Retransmit schedule")
struct RetransmitScheduleTests {
    @Test func defaultBackoff() {
        var schedule = RetransmitSchedule(now: 10_000)
        #expect(schedule.attempts == 0 && !schedule.hasGivenUp)
        #expect(schedule.nextSendAt == 10_000)
        var now: UInt64 = 10_000
        var waits: [UInt64] = []
        var sends: [UInt64] = []
        while let at = schedule.nextSendAt {
            now = at
            sends.append(now)
            schedule.sent(now: now)
            waits.append(schedule.deadline - now)
            #expect(!schedule.hasExpired(at: now))
        }
        #expect(waits == [200, 400, 800, 1600, 3200, 3200])
        #expect(sends.map { $0 - 10_000 } == [0, 200, 600, 1400, 3000, 6200])
        #expect(schedule.attempts == 6 && schedule.hasGivenUp && schedule.nextSendAt == nil)
        #expect(schedule.deadline == 19_400)
        #expect(!schedule.hasExpired(at: 19_399))
        #expect(schedule.hasExpired(at: 19_400))
        // Extra calls change nothing.
        schedule.sent(now: 20_000)
        #expect(schedule.attempts == 6 && schedule.deadline == 19_400)
    }

    @Test func sendsLateAreMeasuredFromTheActualSend() {
        var schedule = RetransmitSchedule(now: 0)
        schedule.sent(now: 5)
        #expect(schedule.nextSendAt == 205)
        schedule.sent(now: 300)  // the timer fired late
        #expect(schedule.nextSendAt == 700)
        #expect(schedule.attempts == 2)
    }

    @Test func configurable() {
        var schedule = RetransmitSchedule(now: 0, initialDelay: 100, maximumDelay: 250, maximumSends: 3)
        #expect((1...5).map { schedule.delay(afterSend: $0) } == [100, 200, 250, 250, 250])
        schedule.sent(now: 0)
        schedule.sent(now: 100)
        #expect(!schedule.hasGivenUp && schedule.nextSendAt == 300)
        schedule.sent(now: 300)
        #expect(schedule.hasGivenUp && schedule.nextSendAt == nil && schedule.deadline == 550)
        var once = RetransmitSchedule(now: 7, maximumSends: 1)
        once.sent(now: 7)
        #expect(once.hasGivenUp && once.hasExpired(at: 207) && !once.hasExpired(at: 206))
        // No overflow near the end of time or with huge delays.
        var late = RetransmitSchedule(now: UInt64.max - 10, initialDelay: UInt64.max / 3, maximumDelay: UInt64.max)
        late.sent(now: UInt64.max - 10)
        #expect(late.deadline == UInt64.max)
        #expect(late.delay(afterSend: 60) == UInt64.max)
    }
}

@Suite("Round trip estimate")
struct RoundTripEstimateTests {
    @Test func withNoSampleTheFirstWaitIsTheDefault() {
        let none = RoundTripEstimate()
        #expect(none.smoothed == nil && none.samples == 0)
        #expect(RetransmitSchedule.firstWait(for: none) == 200)
        #expect(RetransmitSchedule(now: 50, roundTrip: none) == RetransmitSchedule(now: 50))
    }

    @Test func samplesAreSmoothedAsTCPDoes() {
        var estimate = RoundTripEstimate()
        estimate.record(120)
        // RFC 6298 2.2: the first sample R gives SRTT = R, RTTVAR = R / 2.
        #expect(estimate.smoothed == 120 && estimate.deviation == 60)
        #expect(estimate.retransmitTimeout(floor: 0, ceiling: 10_000) == 360)
        estimate.record(200)
        // 2.3: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|, then SRTT = 7/8 SRTT + 1/8 R.
        #expect(estimate.deviation == (3 * 60 + 80) / 4 && estimate.smoothed == (7 * 120 + 200) / 8)
        #expect(estimate.samples == 2)
    }

    @Test func aShortPathKeepsTheFloorAndASlowOneWaitsLonger() {
        var quiet = RoundTripEstimate()
        for sample: UInt64 in [20, 22, 19, 21] { quiet.record(sample) }
        #expect(RetransmitSchedule.firstWait(for: quiet) == 200, "a lost alert costs no more than before")
        // Behind a standing queue: the answers take 130-300 ms (docs/benchmarks.md, handoff).
        var loaded = RoundTripEstimate()
        for sample: UInt64 in [150, 300, 130, 260] { loaded.record(sample) }
        let wait = RetransmitSchedule.firstWait(for: loaded)
        #expect(wait > 300 && wait < 800, "longer than any answer measured, \(wait) ms")
        // Doubling starts from it and stops at the default longest wait.
        let schedule = RetransmitSchedule(now: 0, roundTrip: loaded)
        #expect(schedule.delay(afterSend: 1) == wait && schedule.delay(afterSend: 2) == 2 * wait)
        #expect(schedule.delay(afterSend: 6) == 3_200)
        // A wild sample cannot push the first wait past the longest.
        var wild = RoundTripEstimate()
        wild.record(UInt64.max)
        #expect(wild.smoothed == 600_000 && RetransmitSchedule.firstWait(for: wild) == 3_200)
    }

    @Test func theEstimateComesBackDownWhenThePathDoes() {
        var estimate = RoundTripEstimate()
        estimate.record(400)
        #expect(RetransmitSchedule.firstWait(for: estimate) == 1_200)
        for _ in 0..<30 { estimate.record(20) }
        #expect(RetransmitSchedule.firstWait(for: estimate) == 200)
    }

    @Test func anAnswerGivesTheRestOfTheExchangeAWaitButNeverBringsASendForward() {
        var schedule = RetransmitSchedule(now: 0)
        schedule.sent(now: 0)
        #expect(schedule.nextSendAt == 200)
        schedule.answered(now: 130, wait: 390)  // the challenge came after 130 ms
        #expect(schedule.nextSendAt == 520 && schedule.attempts == 1)
        schedule.answered(now: 140, wait: 200)
        #expect(schedule.nextSendAt == 520, "a shorter wait does not bring the send forward")
        // After the last send it extends the wait for the answer, without another send.
        var last = RetransmitSchedule(now: 0, maximumSends: 1)
        last.sent(now: 0)
        last.answered(now: 150, wait: 300)
        #expect(last.nextSendAt == nil && !last.hasExpired(at: 449) && last.hasExpired(at: 450))
        var late = RetransmitSchedule(now: 0)
        late.sent(now: 0)
        late.answered(now: UInt64.max - 1, wait: 10)
        #expect(late.deadline == UInt64.max)
    }
}
