import MATPacket
import MATSignaling
import Testing
@testable import MATNode

/// The challenges of peers' updates, one per listed MoA, with the clock (ms) in the test's hands.
@Suite struct UpdateChallengesTests {
    let peer = IPAddress("198.51.100.10")!
    let old = IPAddress("192.0.2.10")!
    let own = IPAddress("203.0.113.10")!
    let bystander = IPAddress("203.0.113.99")!

    func sent(_ decision: UpdateChallenges.Decision) -> [Nonce: IPAddress] {
        if case .challenge(let sent, _, _) = decision { return sent }
        Issue.record("no challenges: \(decision)")
        return [:]
    }

    @Test func everyNewMoAIsChallengedOnItsOwnAndOnlyThoseThatAnswerAreAdopted() throws {
        var challenges = UpdateChallenges()
        let decision = challenges.update(from: peer, sequence: 7, moas: [own, bystander, own], lifetime: 60,
                                         inUse: [old], now: 0)
        guard case .challenge(let out, let unproven, let void) = decision else { Issue.record("\(decision)"); return }
        #expect(Set(out.values) == [own, bystander], "one challenge per distinct new MoA")
        #expect(unproven == [own, bystander])
        #expect(void.isEmpty)
        let toOwn = try #require(out.first { $0.value == own }?.key)
        let toBystander = try #require(out.first { $0.value == bystander }?.key)
        // The signer answers the bystander's challenge from its own address: proves nothing.
        let crossed = challenges.response(toBystander, from: peer, sequence: 7, source: own)
        #expect(crossed == nil)
        let proof = challenges.response(toOwn, from: peer, sequence: 7, source: own)
        #expect(proof == .init(moas: [own], lifetime: 60, first: true), "the bystander is not adopted with it")
        let again = challenges.response(toOwn, from: peer, sequence: 7, source: own)
        #expect(again == nil, "answered once")
        // The bystander's challenge runs out: no fall-back, as one MoA answered.
        #expect(challenges.expire(at: 4_999).isEmpty)
        #expect(challenges.expire(at: 5_000) == [.init(peer: peer, moa: bystander, sequence: 7, trialFailed: false)])
        #expect(challenges.trials.isEmpty && challenges.challenges.isEmpty)
    }

    @Test func aSecondAnswerAddsItsMoAWithoutASecondAcknowledgement() throws {
        var challenges = UpdateChallenges()
        let out = sent(challenges.update(from: peer, sequence: 7, moas: [own, bystander], lifetime: 60, inUse: [old], now: 0))
        let toOwn = try #require(out.first { $0.value == own }?.key)
        let toOther = try #require(out.first { $0.value == bystander }?.key)
        let second = challenges.response(toOther, from: peer, sequence: 7, source: bystander)
        #expect(second == .init(moas: [bystander], lifetime: 60, first: true))
        let first = challenges.response(toOwn, from: peer, sequence: 7, source: own)
        #expect(first == .init(moas: [own, bystander], lifetime: 60, first: false), "in the update's order")
    }

    @Test func noAnswerAtAllFailsTheTrialOnceAndItsRetransmissionsStartNoOther() {
        var challenges = UpdateChallenges()
        _ = challenges.update(from: peer, sequence: 7, moas: [own, bystander], lifetime: 60, inUse: [old], now: 0)
        #expect(challenges.nextExpiry == 5_000)
        let expired = challenges.expire(at: 5_000)
        #expect(expired.count == 2)
        #expect(expired.filter(\.trialFailed).count == 1, "the fall-back happens once, with the last one")
        #expect(challenges.nextExpiry == nil)
        // The mover's last retransmission comes at 6.2 s: the MoAs just failed.
        #expect(challenges.update(from: peer, sequence: 7, moas: [own, bystander], lifetime: 60, inUse: [old], now: 6_200)
                == .failedBefore)
        // Its next update is checked afresh.
        let next = sent(challenges.update(from: peer, sequence: 8, moas: [own], lifetime: 60, inUse: [old], now: 7_000))
        #expect(Array(next.values) == [own])
    }

    @Test func aRetransmissionGetsTheSameChallengesAndAKnownMoANone() {
        var challenges = UpdateChallenges()
        let out = sent(challenges.update(from: peer, sequence: 7, moas: [old, own], lifetime: 60, inUse: [old], now: 0))
        #expect(Array(out.values) == [own], "the MoA in use is proven already")
        let again = challenges.update(from: peer, sequence: 7, moas: [old, own], lifetime: 60, inUse: [old], now: 200)
        #expect(again == .again(out))
        // Nothing new: acknowledged, adopted only when it changes what is in use.
        var fresh = UpdateChallenges()
        #expect(fresh.update(from: peer, sequence: 8, moas: [old], lifetime: 60, inUse: [old], now: 0) == .known(adopt: nil))
        #expect(fresh.update(from: peer, sequence: 9, moas: [old], lifetime: 60, inUse: [own, old], now: 0) == .known(adopt: [old]))
    }

    @Test func aNewerUpdateVoidsTheOlderOnesChallenges() throws {
        var challenges = UpdateChallenges()
        let first = sent(challenges.update(from: peer, sequence: 7, moas: [own, bystander], lifetime: 60, inUse: [old], now: 0))
        let decision = challenges.update(from: peer, sequence: 8, moas: [own], lifetime: 60, inUse: [old], now: 100)
        guard case .challenge(let second, _, let void) = decision else { Issue.record("\(decision)"); return }
        #expect(void == [bystander], "what only the older update listed is not used")
        #expect(Array(second.values) == [own])
        let stale = try #require(first.first { $0.value == own }?.key)
        let late = challenges.response(stale, from: peer, sequence: 7, source: own)
        #expect(late == nil, "the older update's challenge is void")
        #expect(challenges.challenges.count == 1)
    }
}
