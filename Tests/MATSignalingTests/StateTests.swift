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
