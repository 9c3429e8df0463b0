import MATPacket
import MATSignaling
import Testing
@testable import MATNode

private let peer = IPAddress("198.51.100.10")!
private let other = IPAddress("198.51.100.20")!
private let own = IPAddress("203.0.113.10")!
private let bystander = IPAddress("203.0.113.99")!
private let moved = IPAddress("203.0.113.20")!

/// Probes of a peer's MoAs, with the clock (ms) in the test's hands.
@Suite struct ReachabilityProbesTests {
    @Test func eachMoAIsProbedOnItsOwnAndResentUntilItExpires() {
        var probes = ReachabilityProbes()
        let nonces = probes.start(peer, at: [own, bystander, own], key: nil, now: 0)
        #expect(nonces.count == 2, "one probe per distinct MoA")
        var sent = probes.due(at: 0).map(\.probe.moa)
        #expect(Set(sent) == [own, bystander])
        #expect(probes.due(at: 499).isEmpty)
        // Sent at 0, 0.5, 1.5 and 3.5 s, waited for until 5.5 s.
        for at: UInt64 in [500, 1_500, 3_500] {
            sent = probes.due(at: at).map(\.probe.moa)
            #expect(sent.count == 2, "resent at \(at)")
        }
        #expect(probes.due(at: 5_000).isEmpty, "four sends at most")
        #expect(probes.expired(at: 5_499).isEmpty)
        #expect(probes.nextEvent == 5_500)
        let gone = probes.expired(at: 5_500)
        #expect(Set(gone.map(\.moa)) == [own, bystander])
        #expect(!probes.isProbing(peer))
        #expect(probes.nextEvent == nil)
    }

    @Test func onlyAnAnswerFromTheProbedMoAByThePeerCounts() {
        var probes = ReachabilityProbes()
        let nonces = probes.start(peer, at: [bystander], key: nil, now: 0)
        let nonce = try! #require(nonces.first)
        // From an address of the key holder's own: proves nothing about the bystander.
        let fromElsewhere = probes.answered(nonce, by: peer, from: own)
        #expect(fromElsewhere == nil)
        let byAnother = probes.answered(nonce, by: other, from: bystander)
        #expect(byAnother == nil)
        let unknown = probes.answered(Nonce.random(), by: peer, from: bystander)
        #expect(unknown == nil)
        #expect(probes.isProbing(peer), "still out")
        let right = probes.answered(nonce, by: peer, from: bystander)
        #expect(right?.moa == bystander)
        let again = probes.answered(nonce, by: peer, from: bystander)
        #expect(again == nil, "answered once")
    }

    @Test func aProbeOfANewKeyNamesThatKeyAndDoesNotDuplicate() {
        var probes = ReachabilityProbes()
        let key = SigningKey.generate().publicKey
        let first = probes.start(peer, at: [moved], key: key, now: 0)
        let second = probes.start(peer, at: [moved], key: key, now: 100)
        #expect(first.count == 1 && second.isEmpty, "the same MoA with the same key is probed once")
        #expect(probes.candidateKeys(of: peer) == [key])
        #expect(probes.candidateKey(for: first[0], from: peer) == key)
        #expect(probes.candidateKeys(of: other).isEmpty)
        probes.cancel(peer)
        #expect(!probes.isProbing(peer))
    }

    @Test func theNumberOutIsBounded() {
        var probes = ReachabilityProbes(capacity: 3)
        let started = probes.start(peer, at: [own, bystander, moved, IPAddress("203.0.113.30")!], key: nil, now: 0)
        #expect(started.count == 3)
        let more = probes.start(other, at: [own], key: nil, now: 0)
        #expect(more.isEmpty)
    }
}

/// When a learned peer's silence makes it probed, and what the probes' outcome does.
@Suite struct IdleProbingTests {
    @Test func aSilentPeerIsProbedOnceAndDroppedWhenNothingAnswers() {
        var idle = IdleProbing(idleAfter: 30_000)
        idle.track(peer, now: 1_000)
        idle.track(peer, now: 20_000)
        #expect(idle.nextDue == 31_000, "tracked from the first time only")
        #expect(idle.due(at: 30_999).isEmpty)
        #expect(idle.due(at: 31_000) == [peer])
        #expect(idle.due(at: 40_000).isEmpty, "one probe round at a time")
        #expect(idle.nextDue == nil)
        let drop = idle.roundFailed(peer, now: 36_500)
        #expect(drop)
        #expect(idle.lastHeard[peer] == nil)
    }

    @Test func aRoundThatDidNotStartIsDueAgain() {
        var idle = IdleProbing(idleAfter: 30_000)
        idle.track(peer, now: 0)
        #expect(idle.due(at: 30_000) == [peer])
        #expect(idle.due(at: 30_100).isEmpty, "counted as being probed")
        idle.roundNotStarted(peer)
        #expect(idle.nextDue == 30_000)
        #expect(idle.due(at: 30_100) == [peer], "no probe slot was free: the next turn tries again")
        let drop = idle.roundFailed(peer, now: 35_600)
        #expect(drop, "and its round, once started, can still drop it")
    }

    @Test func aPeerThatAnswersStaysAndIsMeasuredAfresh() {
        var idle = IdleProbing(idleAfter: 30_000)
        idle.track(peer, now: 0)
        #expect(idle.due(at: 30_000) == [peer])
        idle.heard(peer, now: 30_200)
        let drop = idle.roundFailed(peer, now: 35_500)
        #expect(!drop, "a probe that went unanswered after the peer was heard drops nothing")
        #expect(idle.due(at: 60_199).isEmpty)
        #expect(idle.due(at: 60_200) == [peer])
    }

    @Test func trafficOfItsOwnKeepsAPeerFromBeingProbed() {
        var idle = IdleProbing(idleAfter: 10_000)
        idle.track(peer, now: 0)
        idle.track(other, now: 0)
        for at in stride(from: UInt64(5_000), through: 50_000, by: 5_000) {
            idle.heard(peer, now: at)
            #expect(!idle.due(at: at).contains(peer))
        }
        idle.heard(IPAddress("192.0.2.1")!, now: 0)
        #expect(idle.lastHeard[IPAddress("192.0.2.1")!] == nil, "heard from an untracked HoA tracks nothing")
        idle.forget(other)
        #expect(idle.due(at: .max - 1) == [peer])
    }

    @Test func aRoundNotStartedDropsNothing() {
        var idle = IdleProbing(idleAfter: 10_000)
        idle.track(peer, now: 0)
        let drop = idle.roundFailed(peer, now: 5_500)
        #expect(!drop, "a probe of another purpose failing (an IMS answer's) is no idle check")
    }

    @Test func dataPutsTheProbeOffUntilTheDataOnlyLimit() {
        var idle = IdleProbing(idleAfter: 10_000)
        #expect(idle.dataOnlyLimit == 20_000)
        idle.track(peer, now: 0)
        idle.track(other, now: 0)
        idle.dataArrived(from: IPAddress("192.0.2.1")!, now: 0)
        #expect(idle.lastData.isEmpty, "data from an untracked address tracks nothing")
        // Data every second: never idle, but probed once the limit has passed since it was heard.
        for at in stride(from: UInt64(1_000), to: 20_000, by: 1_000) {
            idle.dataArrived(from: peer, now: at)
            #expect(idle.due(at: at) == (at == 10_000 ? [other] : []), "at \(at)")
        }
        idle.dataArrived(from: peer, now: 20_000)
        #expect(idle.nextDue == 20_000)
        #expect(idle.due(at: 20_000) == [peer], "two idle periods of data alone: probed whatever the data says")
        // That round goes unanswered: dropped, although the data still comes.
        idle.dataArrived(from: peer, now: 22_000)
        let drop = idle.roundFailed(peer, now: 25_500)
        #expect(drop, "past the limit only a signed word keeps a peer")
    }

    /// A dead node's MoA given to a new tenant that keeps sending (docs/security.md, S6 and
    /// R8): however the data comes, the mapping goes within the limit and one probe round
    /// of the node's last signed word; before, ten idle periods.
    @Test func aNewTenantsDataKeepsADeadNodesMappingForAtMostTheLimitAndARound() {
        for idleAfter: UInt64 in [1_000, 10_000, 30_000] {
            var idle = IdleProbing(idleAfter: idleAfter)
            idle.track(peer, now: 0)
            var droppedAt: UInt64?
            var at: UInt64 = 0
            while droppedAt == nil && at < 100 * idleAfter {
                at += 100
                idle.dataArrived(from: peer, now: at)
                _ = idle.due(at: at)
                // Each round's last wait ends 5.5 s after it started, unanswered.
                if let started = idle.probing[peer], at >= started + 5_500, idle.roundFailed(peer, now: at) {
                    droppedAt = at
                }
            }
            #expect(droppedAt == 2 * idleAfter + 5_500, "idle \(idleAfter): dropped at \(droppedAt.map(String.init) ?? "never")")
        }
    }

    /// A live peer that sends data and answers its probes is probed once per limit, not
    /// once per idle period.
    @Test func aLivePeerSendingDataIsProbedOncePerLimit() {
        func probes(withData: Bool) -> Int {
            var idle = IdleProbing(idleAfter: 10_000)
            idle.track(peer, now: 0)
            var count = 0
            for at in stride(from: UInt64(100), through: 200_000, by: 100) {
                if withData { idle.dataArrived(from: peer, now: at) }
                if idle.due(at: at) == [peer] {
                    count += 1
                    idle.heard(peer, now: at + 50)
                }
            }
            return count
        }
        #expect(probes(withData: true) == 9, "200 s of data: one probe per 20 s (the last one's answer restarts the count)")
        #expect(probes(withData: false) == 19)
    }

    @Test func dataDuringARoundKeepsAPeerWithinTheLimit() {
        var idle = IdleProbing(idleAfter: 10_000)
        idle.track(peer, now: 0)
        idle.dataArrived(from: peer, now: 3_000)
        #expect(idle.due(at: 12_999).isEmpty, "its data counts as hearing from it")
        #expect(idle.due(at: 13_000) == [peer], "an idle period after its last data")
        // Its signaling port is blocked, say: the probes go unanswered, the data comes again.
        idle.dataArrived(from: peer, now: 14_000)
        let drop = idle.roundFailed(peer, now: 18_500)
        #expect(!drop, "data came during the round")
        #expect(idle.due(at: 19_999).isEmpty)
        #expect(idle.due(at: 20_000) == [peer], "the limit: two idle periods after it was last heard")
        // Its data still comes, but that round's failure drops it.
        idle.dataArrived(from: peer, now: 22_000)
        let dropped = idle.roundFailed(peer, now: 25_500)
        #expect(dropped)
        #expect(idle.lastHeard[peer] == nil && idle.lastData[peer] == nil)
    }
}

/// What of an IMS answer is taken before and after its probes.
@Suite struct AnswerTrialTests {
    let key = SigningKey.generate().publicKey
    let foreign = SigningKey.generate().publicKey

    func mapping(_ moas: [IPAddress], sequence: UInt64) -> PeerMapping {
        PeerMapping(hoa: peer, ranked: moas, flags: .confirmed, sequence: sequence)
    }

    @Test func anAnswerWithProvenMoAsAndTheSameKeyIsTaken() {
        let previous = mapping([own], sequence: 5)
        #expect(AnswerTrial.decide(mapping([own], sequence: 6), answerKey: key, heldKey: key, previous: previous)
                == .take(mapping([own], sequence: 6)))
        // A huge sequence with the same MoA changes nothing about where the traffic goes.
        #expect(AnswerTrial.decide(mapping([own], sequence: .max), answerKey: nil, heldKey: key, previous: previous)
                == .take(mapping([own], sequence: .max)))
    }

    @Test func aBystanderBehindAnOwnAddressIsProbedAndOnlyWhatAnswersIsTaken() throws {
        let previous = mapping([own], sequence: 5)
        let decision = AnswerTrial.decide(mapping([own, bystander], sequence: .max), answerKey: key, heldKey: key,
                                          previous: previous)
        guard case .probe(var trial) = decision else { Issue.record("not on trial: \(decision)"); return }
        #expect(trial.toProbe == [bystander], "the proven MoA needs no probe")
        #expect(trial.key == nil)
        trial.failed(bystander)
        #expect(trial.isDecided)
        #expect(!trial.answeredAny, "nothing new proven: the answer is not taken, sequence and all")
        #expect(trial.provenMapping?.moas.map(\.address) == [own])
    }

    @Test func aForeignKeyPutsEveryMoAOnTrialAndIsTakenOnlyWithAnAnswer() {
        let previous = mapping([own], sequence: 5)
        let decision = AnswerTrial.decide(mapping([own, moved], sequence: 9), answerKey: foreign, heldKey: key,
                                          previous: previous)
        guard case .probe(var trial) = decision else { Issue.record("not on trial: \(decision)"); return }
        #expect(trial.key == foreign)
        #expect(trial.toProbe == [own, moved], "what the old key proved says nothing of the new one")
        #expect(trial.provenMapping == nil)
        let first = trial.answered(moved)
        #expect(first)
        let again = trial.answered(moved)
        #expect(!again)
        #expect(trial.provenMapping?.moas.map(\.address) == [moved])
        #expect(trial.provenMapping?.sequence == 9)
        #expect(!trial.isDecided)
        trial.failed(own)
        #expect(trial.isDecided && trial.answeredAny)
    }

    @Test func aFirstContactIsOnTrialWithItsOwnKey() {
        let decision = AnswerTrial.decide(mapping([own], sequence: 1), answerKey: key, heldKey: nil, previous: nil)
        guard case .probe(let trial) = decision else { Issue.record("not on trial: \(decision)"); return }
        #expect(trial.key == nil, "no key held: the answer's is the only one, taken at once")
        #expect(trial.previous == nil)
        #expect(trial.toProbe == [own])
    }

    @Test func anUnsignedAnswerSetsNoSequenceAndChangesNoKey() {
        let previous = mapping([own], sequence: 5)
        // Someone on the path answers a node without an IMS key: the largest sequence...
        #expect(AnswerTrial.decide(mapping([own], sequence: .max), answerKey: key, heldKey: key, previous: previous,
                                   authenticated: false) == .take(previous),
                "an unsigned sequence is never taken: the proven one stays")
        // ...a key of its own, at an address of its own or the peer's: refused, nothing probed.
        #expect(AnswerTrial.decide(mapping([moved], sequence: 9), answerKey: foreign, heldKey: key, previous: previous,
                                   authenticated: false) == .refuse)
        #expect(AnswerTrial.decide(mapping([own], sequence: 9), answerKey: foreign, heldKey: key, previous: previous,
                                   authenticated: false) == .refuse)
        // Signed, the same key change is probed (the IMS vouches for what the key holder wrote).
        guard case .probe = AnswerTrial.decide(mapping([own], sequence: 9), answerKey: foreign, heldKey: key,
                                               previous: previous) else { Issue.record("a signed key change is probed"); return }
        // A new MoA is probed with the held key, and taken with the proven sequence.
        let decision = AnswerTrial.decide(mapping([moved], sequence: .max), answerKey: key, heldKey: key,
                                          previous: previous, authenticated: false)
        guard case .probe(var trial) = decision else { Issue.record("not on trial: \(decision)"); return }
        #expect(trial.key == nil && trial.toProbe == [moved])
        _ = trial.answered(moved)
        #expect(trial.provenMapping == mapping([moved], sequence: 5))
    }

    /// A node without an IMS key has nothing to check a first contact's answer with: the
    /// answer's key would pass its own probe whoever wrote it. It is refused, unprobed,
    /// whatever it names; signed, the same answer is on trial with its key.
    @Test func anUnsignedAnswerStartsNoFirstContact() {
        for moas in [[own], [own, moved], [bystander]] {
            for answerKey in [key, foreign, nil] as [VerifyingKey?] {
                #expect(AnswerTrial.decide(mapping(moas, sequence: .max), answerKey: answerKey, heldKey: nil, previous: nil,
                                           authenticated: false) == .refuseUnkeyed)
            }
        }
        guard case .probe(let contact) = AnswerTrial.decide(mapping([own], sequence: 1), answerKey: key, heldKey: nil,
                                                            previous: nil) else {
            Issue.record("a signed first contact is probed")
            return
        }
        #expect(contact.toProbe == [own])
        // With a key held (pinned), an unsigned answer's new MoA is probed with it, as before.
        guard case .probe = AnswerTrial.decide(mapping([moved], sequence: 1), answerKey: nil, heldKey: key, previous: nil,
                                               authenticated: false) else {
            Issue.record("an unsigned answer for a pinned key is probed")
            return
        }
    }

    @Test func aMoveTheIMSLearnedFirstIsProbed() {
        let decision = AnswerTrial.decide(mapping([moved], sequence: 6), answerKey: key, heldKey: key,
                                          previous: mapping([own], sequence: 5))
        guard case .probe(let trial) = decision else { Issue.record("not on trial: \(decision)"); return }
        #expect(trial.toProbe == [moved])
        #expect(trial.previous?.moas.map(\.address) == [own])
    }
}

/// Answers none of whose probes was answered, not tried again for a while.
@Suite struct RefusedAnswersTests {
    let key = SigningKey.generate().publicKey

    func trial(_ moas: [IPAddress], sequence: UInt64, key: VerifyingKey?) -> AnswerTrial {
        let answer = PeerMapping(hoa: peer, ranked: moas, flags: .confirmed, sequence: sequence)
        guard case .probe(let trial) = AnswerTrial.decide(answer, answerKey: key, heldKey: key == nil ? nil : self.key,
                                                           previous: PeerMapping(hoa: peer, ranked: [own], flags: .confirmed)) else {
            fatalError("not on trial")
        }
        return trial
    }

    @Test func theSameAnswerIsNotTriedAgainUntilTheHoldOffPasses() {
        var refused = RefusedAnswers(firstHoldOff: 300_000)
        let hostile = trial([bystander], sequence: .max, key: nil)
        refused.refused(hostile, now: 1_000)
        #expect(refused.isRefused(hostile.answer, key: nil, now: 1_000))
        #expect(refused.isRefused(hostile.answer, key: nil, now: 300_999))
        #expect(!refused.isRefused(hostile.answer, key: nil, now: 301_000))
    }

    /// A peer whose path was cut is tried again 10 s after its first refused answer; a
    /// hostile answer refused again and again is tried at most once every 5 min.
    @Test func theHoldOffDoublesForTheSameAnswerUpToItsLongest() {
        var refused = RefusedAnswers()
        let answer = trial([bystander], sequence: 7, key: nil)
        var now: UInt64 = 0
        var holds: [UInt64] = []
        for _ in 1...8 {
            refused.refused(answer, now: now)
            var until = now
            while refused.isRefused(answer.answer, key: nil, now: until) { until += 1_000 }
            holds.append(until - now)
            now = until
        }
        #expect(holds == [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000])
        refused.refused(trial([moved], sequence: 7, key: nil), now: now)
        #expect(!refused.isRefused(answer.answer, key: nil, now: now), "another answer replaced it")
        #expect(refused.isRefused(trial([moved], sequence: 7, key: nil).answer, key: nil, now: now + 9_999),
                "a changed answer starts at the first hold-off again")
        #expect(!refused.isRefused(trial([moved], sequence: 7, key: nil).answer, key: nil, now: now + 10_000))
        #expect(refused.holdOff(afterRefusals: 1_000) == 300_000, "no overflow")
    }

    @Test func aChangedAnswerOrAProofIsTriedAtOnce() {
        var refused = RefusedAnswers()
        let hostile = trial([bystander], sequence: 9, key: nil)
        refused.refused(hostile, now: 0)
        #expect(!refused.isRefused(trial([bystander], sequence: 10, key: nil).answer, key: nil, now: 1), "another sequence")
        #expect(!refused.isRefused(trial([moved], sequence: 9, key: nil).answer, key: nil, now: 1), "another MoA")
        #expect(!refused.isRefused(hostile.answer, key: key, now: 1), "another key")
        refused.forget(peer)
        #expect(!refused.isRefused(hostile.answer, key: nil, now: 1))
    }

    @Test func theMemoryIsBounded() {
        var refused = RefusedAnswers(capacity: 2)
        for index in 1...3 {
            let hoa = IPAddress("198.51.100.\(100 + index)")!
            let answer = PeerMapping(hoa: hoa, ranked: [bystander], flags: .confirmed, sequence: 1)
            guard case .probe(let trial) = AnswerTrial.decide(answer, answerKey: nil, heldKey: nil, previous: nil) else { return }
            refused.refused(trial, now: 0)
        }
        #expect(refused.entries.count <= 2)
    }
}

/// The test-only wall clock step (`MATD_TEST_CLOCK_STEP`).
@Suite struct ClockStepParsingTests {
    @Test func aStepParsesAndAppliesFromItsTimeOn() throws {
        let back = try #require(ClockStep(parsing: "-1000@8"))
        #expect(back == ClockStep(parsing: "-1000@8.0"))
        #expect(back.apply(wall: 1_700_000_000, elapsed: 7_999) == 1_700_000_000)
        #expect(back.apply(wall: 1_700_000_000, elapsed: 8_000) == 1_699_999_000)
        #expect(back.apply(wall: 10, elapsed: 9_000) == 0, "never below 1970")
        let forward = try #require(ClockStep(parsing: "+30@0.5"))
        #expect(forward.apply(wall: 100, elapsed: 500) == 130)
    }

    @Test func anythingElseIsNoStep() {
        for text in ["", "1000", "@8", "-1000@", "x@8", "-1000@-1", "-1000@nan", "1@2@3", "-1000@inf"] {
            #expect(ClockStep(parsing: text) == nil, "\(text)")
        }
    }
}
