import MATConfig
import MATPacket
import MATSystem
import Testing
@testable import MATNode

private let peer = IPAddress("198.51.100.10")!
private let other = IPAddress("198.51.100.20")!
private let moa = IPAddress("203.0.113.10")!
private let second = IPAddress("203.0.113.11")!

/// How long a learned MoA counts as its peer's (``ProofFreshness``), with the clock (ms) in
/// the test's hands. F is 10 s unless said otherwise.
@Suite struct ProofFreshnessTests {
    @Test func aMoAIsProvenForTheLifetimeAfterItsLastSignedWordThenLapsesAndIsProbed() {
        var proofs = ProofFreshness(lifetime: 10_000)
        let result1 = proofs.track(peer, moas: [moa], now: 1_000)
        #expect(result1.isEmpty)
        let before = proofs.step(at: 10_999)
        #expect(before == .init(), "a silent peer is not probed ahead")
        let at = proofs.step(at: 11_000)
        #expect(at.lapses == [.init(hoa: peer, moas: [moa], inUse: false)])
        #expect(at.probes == [peer], "a lapsed MoA is probed")
        #expect(proofs.lapsed[peer] == [moa])
        let result2 = proofs.step(at: 11_100)
        #expect(result2 == .init(), "one lapse, one round at a time")
        proofs.roundEnded(peer)
        let result3 = proofs.step(at: 16_500)
        #expect(result3 == .init(), "no second round after the lapse's: idle probing takes over")
    }

    @Test func aLapsedPeerWhoseRoundCouldNotStartWaitsForItAgain() {
        var proofs = ProofFreshness(lifetime: 10_000)
        _ = proofs.track(peer, moas: [moa], now: 0)
        let result4 = proofs.step(at: 10_000)
        #expect(result4.probes == [peer])
        proofs.roundNotStarted(peer)
        #expect(proofs.awaitingProbe == [peer])
        let result5 = proofs.step(at: 10_100)
        #expect(result5.probes == [peer])
        proofs.roundEnded(peer)
        #expect(proofs.awaitingProbe.isEmpty)
    }

    @Test func aSignedWordFromTheLapsedMoAProvesItAgain() {
        var proofs = ProofFreshness(lifetime: 10_000)
        _ = proofs.track(peer, moas: [moa], now: 0)
        _ = proofs.step(at: 10_000)
        let renewed = proofs.signed(peer, from: moa, now: 10_050)
        #expect(renewed, "the limit is to end")
        #expect(proofs.lapsed.isEmpty && proofs.awaitingProbe.isEmpty)
        let again = proofs.signed(peer, from: moa, now: 10_060)
        #expect(!again, "proven already: nothing to end")
        proofs.roundEnded(peer)
        let result6 = proofs.step(at: 20_059)
        #expect(result6.lapses.isEmpty)
        let result7 = proofs.step(at: 20_060)
        #expect(result7.lapses == [.init(hoa: peer, moas: [moa], inUse: false)], "F after the last word")
    }

    @Test func aWordFromAnotherMoAOrAnUntrackedPeerProvesNothingHere() {
        var proofs = ProofFreshness(lifetime: 10_000)
        _ = proofs.track(peer, moas: [moa, second], now: 0)
        for at in stride(from: UInt64(1_000), through: 9_000, by: 1_000) { _ = proofs.signed(peer, from: moa, now: at) }
        let untracked = proofs.signed(other, from: moa, now: 9_000)
        #expect(!untracked)
        #expect(proofs.provenAt[other] == nil)
        let result8 = proofs.step(at: 10_000)
        #expect(result8.lapses == [.init(hoa: peer, moas: [second], inUse: false)],
                "each MoA is proven by its own words: the second was silent")
    }

    @Test func aPeerInUseIsProbedAtHalfTheLifetimeAndNeverLapsesWhileItAnswers() {
        var proofs = ProofFreshness(lifetime: 10_000)
        _ = proofs.track(peer, moas: [moa], now: 0)
        var probedAt: [UInt64] = []
        for now in stride(from: UInt64(100), through: 100_000, by: 100) {
            proofs.dataArrived(from: peer, now: now)
            let step = proofs.step(at: now)
            #expect(step.lapses.isEmpty, "lapsed at \(now)")
            if step.probes == [peer] {
                probedAt.append(now)
                // Answered a round trip later.
                _ = proofs.signed(peer, from: moa, now: now + 1)
                proofs.roundEnded(peer)
            }
        }
        #expect(probedAt.first == 5_000, "half of F into the proof (10 s before F only from F = 20 s on)")
        #expect(probedAt.count == 19, "once per half of F: \(probedAt)")
        #expect(ProofFreshness(lifetime: 40_000).refreshAfter == 30_000, "10 s before the default F")
    }

    @Test func aDeadPeerInUseIsProbedUntilItsProofRunsOutAndThenLapsesWhateverItsDataSays() {
        var proofs = ProofFreshness(lifetime: 20_000)
        _ = proofs.track(peer, moas: [moa], now: 0)
        var rounds: [UInt64] = []
        var lapsedAt: UInt64?
        var roundEnds: UInt64?
        for now in stride(from: UInt64(100), through: 60_000, by: 100) {
            // The new tenant's data, and nobody answers: each round ends 5.5 s after it began.
            proofs.dataArrived(from: peer, now: now)
            if let end = roundEnds, now >= end {
                proofs.roundEnded(peer)
                roundEnds = nil
            }
            let step = proofs.step(at: now)
            if !step.lapses.isEmpty {
                #expect(step.lapses == [.init(hoa: peer, moas: [moa], inUse: true)])
                lapsedAt = lapsedAt ?? now
            }
            if step.probes == [peer] {
                rounds.append(now)
                roundEnds = now + 5_500
            }
        }
        #expect(lapsedAt == 20_000, "at F, not a moment later, whatever the data")
        #expect(rounds == [10_000, 15_500, 21_000], "refreshes from 10 s before F on, then the lapse's round once: \(rounds)")
    }

    @Test func dataOfAnUntrackedPeerCountsForNothingAndDataStopsCountingAfterTheLifetime() {
        var proofs = ProofFreshness(lifetime: 10_000)
        proofs.dataArrived(from: peer, now: 0)
        #expect(proofs.lastData.isEmpty)
        _ = proofs.track(peer, moas: [moa], now: 0)
        proofs.dataArrived(from: peer, now: 1_000)
        proofs.dataArrived(from: peer, now: 500)
        #expect(proofs.lastData[peer] == 1_000, "a late report never moves the time back")
        #expect(proofs.inUse(peer, now: 10_999))
        #expect(!proofs.inUse(peer, now: 11_000))
        // In use at half F: probed then.
        let result9 = proofs.step(at: 5_000)
        #expect(result9.probes == [peer])
    }

    @Test func aMoANewToTheMappingIsProvenFromThenAndOneThatLeftIsForgotten() {
        var proofs = ProofFreshness(lifetime: 10_000)
        _ = proofs.track(peer, moas: [moa], now: 0)
        _ = proofs.step(at: 10_000)
        let result10 = proofs.track(peer, moas: [moa, second], now: 12_000)
        #expect(result10.isEmpty)
        #expect(proofs.provenAt[peer] == [moa: 0, second: 12_000], "naming a MoA again proves nothing")
        #expect(proofs.lapsed[peer] == [moa], "still lapsed while the mapping names it")
        let result11 = proofs.track(peer, moas: [second], now: 13_000)
        #expect(result11 == [moa], "a lapsed MoA that left: its limit is to end")
        #expect(proofs.lapsed[peer] == nil && proofs.awaitingProbe.isEmpty)
        _ = proofs.track(other, moas: [moa], now: 13_000)
        _ = proofs.step(at: 23_000)
        let result12 = proofs.forget(other)
        #expect(result12 == [moa])
        #expect(proofs.provenAt[other] == nil && proofs.lapsed[other] == nil)
        let result13 = proofs.forget(other)
        #expect(result13.isEmpty)
    }

    @Test func aMoAAnotherPeersLapseHoldsKeepsItsLimitUntilThatPeerLetsGoToo() {
        var proofs = ProofFreshness(lifetime: 10_000)
        _ = proofs.track(peer, moas: [moa, second], now: 0)
        _ = proofs.track(other, moas: [moa], now: 0)
        _ = proofs.step(at: 10_000)
        #expect(proofs.isLapsed(moa) && proofs.isLapsed(second))
        let forgotten = proofs.forget(peer)
        #expect(forgotten == [second], "the other peer's lapse still holds the shared MoA")
        #expect(proofs.isLapsed(moa) && !proofs.isLapsed(second))
        let left = proofs.track(other, moas: [], now: 11_000)
        #expect(left == [moa], "the last holder let go")
        #expect(!proofs.isLapsed(moa))
        _ = proofs.track(peer, moas: [moa], now: 11_000)
        _ = proofs.track(other, moas: [moa], now: 11_000)
        _ = proofs.step(at: 21_000)
        let renewed = proofs.signed(peer, from: moa, now: 21_001)
        #expect(!renewed, "the other peer's lapse still holds the MoA: its limit stays")
        #expect(proofs.isLapsed(moa) && proofs.lapsed[peer] == nil)
        let last = proofs.forget(other)
        #expect(last == [moa], "a signed word released the first holder's part")
    }

    /// Two peers behind one MoA, both lapsed: a signed word from one ends the MoA's limit
    /// only once the other has answered from it too.
    @Test func aSignedWordEndsASharedMoAsLimitOnlyWhenItsLastHolderAnswers() {
        var proofs = ProofFreshness(lifetime: 10_000)
        _ = proofs.track(peer, moas: [moa], now: 0)
        _ = proofs.track(other, moas: [moa], now: 0)
        _ = proofs.step(at: 10_000)
        let byPeer = proofs.signed(peer, from: moa, now: 10_100)
        #expect(!byPeer && proofs.isLapsed(moa))
        let byOther = proofs.signed(other, from: moa, now: 10_200)
        #expect(byOther && !proofs.isLapsed(moa))
    }

    /// A mass lapse (a node stopped past F with every peer restored, then the peers'
    /// mappings gone): the caller used to walk every lapsed peer for each MoA let go, 1.25
    /// billion set lookups for 50,000 peers (minutes in a debug build); one count per MoA
    /// now. 5 s is about a hundred times what it takes here.
    @Test func fiftyThousandPeersLapsingTogetherAreForgottenInLinearTime() {
        let count = 50_000
        let hoa = { (index: Int) in IPAddress.v6(IPv6Address(high: 0x2001_0db8_4000_0000, low: UInt64(index))) }
        let moa = { (index: Int) in IPAddress.v6(IPv6Address(high: 0x2001_0db8_4001_0000, low: UInt64(index))) }
        var proofs = ProofFreshness(lifetime: 10_000)
        for index in 0..<count { _ = proofs.track(hoa(index), moas: [moa(index), moa(count)], now: 0) }
        let lapses = proofs.step(at: 10_000, lapseLimit: .max).lapses.count
        #expect(lapses == count)
        let start = MonotonicClock.nanoseconds()
        var released = 0
        for index in 0..<count {
            let free = proofs.forget(hoa(index))
            released += free.count
            if index == count - 1 { #expect(free == [moa(index), moa(count)], "the shared MoA goes with its last holder") }
        }
        let took = MonotonicClock.nanoseconds() - start
        #expect(released == count + 1 && proofs.lapsed.isEmpty && !proofs.isLapsed(moa(count)))
        #expect(took < 5_000_000_000, "forgetting \(count) lapsed peers took \(took / 1_000_000) ms")
    }

    @Test func theBucketBoundsRoundsPerSecondEarliestDeadlineFirst() {
        var proofs = ProofFreshness(lifetime: 10_000, roundsPerSecond: 10)
        let peers = (1...30).map { IPAddress("198.51.100.\($0)")! }
        for (index, hoa) in peers.enumerated() {
            _ = proofs.track(hoa, moas: [IPAddress("192.0.2.\(index + 1)")!], now: UInt64(index) * 10)
        }
        var probed: [IPAddress] = []
        for now in stride(from: UInt64(5_300), through: 7_200, by: 100) {
            for hoa in peers { proofs.dataArrived(from: hoa, now: now) }
            let step = proofs.step(at: now)
            if now == 5_300 { #expect(step.probes.count == 10, "a second's burst") }
            probed += step.probes
        }
        #expect(probed == Array(peers.prefix(29)), "the burst, then a round per 100 ms, earliest deadline first")
    }

    @Test func peersInUseComeBeforeSilentOnesWhenRoundsAreShort() {
        var proofs = ProofFreshness(lifetime: 10_000, roundsPerSecond: 1)
        _ = proofs.track(other, moas: [second], now: 0)
        _ = proofs.track(peer, moas: [moa], now: 4_000)
        proofs.dataArrived(from: peer, now: 10_000)
        let step = proofs.step(at: 10_000)
        #expect(step.lapses == [.init(hoa: other, moas: [second], inUse: false)])
        #expect(step.probes == [peer], "the peer in use first, though its proof runs out later")
        let result14 = proofs.step(at: 10_999)
        #expect(result14.probes.isEmpty, "one round a second")
        let result15 = proofs.step(at: 11_000)
        #expect(result15.probes == [other])
    }

    @Test func aRoundNeverReportedEndedCountsAsEndedAfterItsTimeout() {
        var proofs = ProofFreshness(lifetime: 10_000)
        _ = proofs.track(peer, moas: [moa], now: 0)
        proofs.dataArrived(from: peer, now: 5_000)
        let result16 = proofs.step(at: 5_000)
        #expect(result16.probes == [peer])
        let during = proofs.step(at: 5_000 + ProofFreshness.roundTimeout - 1)
        #expect(during.probes.isEmpty, "its round still counts as out")
        #expect(during.lapses == [.init(hoa: peer, moas: [moa], inUse: true)])
        let result17 = proofs.step(at: 5_000 + ProofFreshness.roundTimeout)
        #expect(result17.probes == [peer], "the lapse's round")
    }

    @Test func proofLifetimeDefaultsTo40SecondsAndIsBounded() throws {
        let defaults = try NodeConfig(parsing: KernelPathConfigTests.config(""))
        #expect(defaults.proofLifetime == 40)
        for good in [10, 3_600] {
            #expect(try NodeConfig(parsing: KernelPathConfigTests.config("proof-lifetime = \(good)")).proofLifetime == UInt64(good))
        }
        for bad in ["proof-lifetime = 9", "proof-lifetime = 3601", "proof-lifetime = 40s", "proof-lifetime = -1"] {
            #expect(throws: ConfigError.self, "\(bad)") { try NodeConfig(parsing: KernelPathConfigTests.config(bad)) }
        }
        let (_, notApplied) = defaults.reloaded(from: try NodeConfig(parsing: KernelPathConfigTests.config("proof-lifetime = 20")))
        #expect(notApplied == ["proof-lifetime changed; it takes effect when matd is restarted"])
    }
}
