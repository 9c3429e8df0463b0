import MATPacket
import MATSignaling
import Testing
@testable import MATNode

private typealias F = SignalingFixture

/// The signaling decisions on what peers send, one test per transition, with the clock
/// (ms) and the node's surroundings in the test's hands.
@Suite struct SignalingMachineTests {
    @Test func anUpdateFromAKnownKeyToAMoAInUseIsAcknowledgedThere() throws {
        var (machine, environment) = F.machine()
        let actions = machine.receive(F.update([F.peerMoA], sequence: 10), from: F.peerMoA, now: 0, environment: environment)
        #expect(F.effects(actions) == [.reached(hoa: F.peer, at: nil, key: nil)], "alive, but where only a challenge tells")
        let sent = F.sent(actions)
        #expect(sent.count == 1)
        #expect(sent.first?.to == F.peerMoA)
        #expect(sent.first?.message.body == .bindingAck(sequence: 10, status: .accepted))
        #expect(sent.first?.message.receiver == F.peer && sent.first?.message.sender == F.home)
        #expect(machine.counters.updatesReceived == 1 && machine.counters.acksSent == 1)
        #expect(machine.replayEntries == [F.peer: 10] && machine.replayChanges == 1)
    }

    @Test func aRetransmittedUpdateIsAcknowledgedAgainAndAnOlderOneRefused() {
        var (machine, environment) = F.machine()
        _ = machine.receive(F.update([F.peerMoA], sequence: 10), from: F.peerMoA, now: 0, environment: environment)
        let again = machine.receive(F.update([F.peerMoA], sequence: 10), from: F.peerMoA, now: 200, environment: environment)
        #expect(F.sent(again).map(\.message.body) == [.bindingAck(sequence: 10, status: .accepted)],
                "the ack was lost: the same update is acknowledged again")
        #expect(F.effects(again).isEmpty, "not newest: no sign of life")
        let replayed = machine.receive(F.update([F.peerNewMoA], sequence: 9), from: F.peerNewMoA, now: 300, environment: environment)
        #expect(replayed.isEmpty)
        #expect(machine.counters.refusedReplayed == 1)
        #expect(machine.counters.updatesReceived == 1 && machine.counters.acksSent == 2)
        #expect(machine.replayChanges == 1)
    }

    @Test func aBadSignatureIsRefusedWithoutAnIMS() {
        var (machine, environment) = F.machine()
        let actions = machine.receive(F.update([F.peerNewMoA], sequence: 10, key: F.forger), from: F.peerNewMoA, now: 0,
                                      environment: environment)
        #expect(actions.isEmpty)
        #expect(machine.counters.refusedBadSignature == 1)
        #expect(machine.replayEntries.isEmpty, "a forged message never moves the replay counter")
    }

    @Test func aBadSignatureWaitsForTheIMSOnceThenIsRefused() {
        var (machine, environment) = F.machine()
        environment.hasIMS = true
        let forged = F.update([F.peerNewMoA], sequence: 10, key: F.forger)
        #expect(machine.receive(forged, from: F.peerNewMoA, now: 0, environment: environment).isEmpty)
        #expect(environment.lookups.map(\.hoa) == [F.peer], "the key may have been rotated: asked again")
        #expect(machine.counters.refusedBadSignature == 0)
        #expect(!machine.waitingMessageVerifies(from: F.peer, with: F.peerKey.publicKey))
        // The IMS answers with the key already known (one lookup per sender every 5 s: no
        // second one now): the message still does not verify and is refused.
        environment.hasIMS = false
        #expect(machine.keyArrived(for: F.peer, now: 50, environment: environment).isEmpty)
        #expect(machine.counters.refusedBadSignature == 1)
        #expect(machine.replayEntries.isEmpty)
    }

    @Test func aMessageForAnotherNodeIsRefused() {
        var (machine, environment) = F.machine()
        let elsewhere = SignalCodec.seal(SignalMessage(sequence: 10, sender: F.peer, receiver: IPAddress("192.0.2.99")!,
                                                       body: .bindingUpdate(moas: [F.peerMoA], lifetime: 60)), with: F.peerKey)
        #expect(machine.receive(elsewhere, from: F.peerMoA, now: 0, environment: environment).isEmpty)
        #expect(machine.counters.refusedWrongReceiver == 1)
    }

    @Test func anUnvalidatedMoAIsTriedOutAndChallengedThenAdoptedAndAcknowledgedOnItsAnswer() throws {
        var (machine, environment) = F.machine()
        let update = F.update([F.peerNewMoA], sequence: 10)
        let actions = machine.receive(update, from: F.peerNewMoA, now: 0, environment: environment)
        #expect(F.effects(actions) == [
            .reached(hoa: F.peer, at: nil, key: nil),
            .tryOut(hoa: F.peer, moas: [F.peerNewMoA], unproven: [F.peerNewMoA], sequence: 10, updateBytes: UInt64(update.count)),
        ])
        let challenge = try #require(F.sent(actions).first)
        #expect(challenge.to == F.peerNewMoA)
        guard case .challenge(let nonce, 10) = challenge.message.body else {
            Issue.record("not a challenge of update 10: \(challenge.message.body)")
            return
        }
        // The answer from another address proves nothing.
        let response = F.fromPeer(.challengeResponse(nonce: nonce, sequence: 10), sequence: 11)
        #expect(machine.receive(response, from: F.peerMoA, now: 30, environment: environment).isEmpty)
        #expect(machine.counters.refusedUnexpected == 1)
        let answered = machine.receive(response, from: F.peerNewMoA, now: 40, environment: environment)
        #expect(F.effects(answered) == [
            .adopt(hoa: F.peer, moas: [F.peerNewMoA], lifetime: 300, sequence: 10),
            .reached(hoa: F.peer, at: F.peerNewMoA, key: nil),
        ])
        #expect(F.sent(answered).map(\.message.body) == [.bindingAck(sequence: 10, status: .accepted)])
        #expect(F.sent(answered).first?.to == F.peerNewMoA)
        #expect(machine.counters.bindingsAdopted == 1 && machine.counters.challengesSent == 1 && machine.counters.acksSent == 1)
    }

    @Test func aChallengeUnansweredForItsLifetimeUndoesTheTrial() throws {
        var (machine, environment) = F.machine()
        _ = machine.receive(F.update([F.peerNewMoA], sequence: 10), from: F.peerNewMoA, now: 0, environment: environment)
        #expect(machine.nextEventAt == UpdateChallenges.lifetime)
        #expect(F.effects(machine.tick(now: UpdateChallenges.lifetime - 1, environment: environment)).isEmpty)
        let expired = machine.tick(now: UpdateChallenges.lifetime, environment: environment)
        #expect(expired == [.unreachable(hoa: F.peer, at: F.peerNewMoA), .challengeFailed(hoa: F.peer, sequence: 10)])
        #expect(machine.counters.challengesUnanswered == 1)
        // The mover's late retransmission starts no second trial of the MoA that failed.
        let late = machine.receive(F.update([F.peerNewMoA], sequence: 10), from: F.peerNewMoA, now: 6_200, environment: environment)
        #expect(late.isEmpty)
        #expect(machine.counters.refusedUnexpected == 1)
    }

    @Test func anUnknownKeyIsLookedUpInTheIMSAndTheMessageDecidedWhenItArrives() {
        var (machine, environment) = F.machine()
        environment.keys = [:]
        environment.hasIMS = true
        let update = F.update([F.peerMoA], sequence: 10)
        #expect(machine.receive(update, from: F.peerMoA, now: 0, environment: environment).isEmpty)
        #expect(environment.lookups.map(\.hoa) == [F.peer])
        #expect(machine.counters.refusedUnknownKey == 0, "waiting, not refused")
        #expect(machine.waitingMessageVerifies(from: F.peer, with: F.peerKey.publicKey))
        #expect(!machine.waitingMessageVerifies(from: F.peer, with: F.forger.publicKey))
        environment.keys[F.peer] = F.peerKey.publicKey
        let decided = machine.keyArrived(for: F.peer, now: 80, environment: environment)
        #expect(F.sent(decided).map(\.message.body) == [.bindingAck(sequence: 10, status: .accepted)])
        #expect(machine.keyArrived(for: F.peer, now: 90, environment: environment).isEmpty, "decided once")
    }

    @Test func unknownKeysAreLookedUpWithinTheirBudgetAndRefusedWithoutAnIMS() {
        var (machine, environment) = F.machine()
        environment.keys = [:]
        #expect(machine.receive(F.update([F.peerMoA], sequence: 10), from: F.peerMoA, now: 0, environment: environment).isEmpty)
        #expect(machine.counters.refusedUnknownKey == 1)
        environment.hasIMS = true
        // Forged senders must not turn the node into a query generator: 20 at once, then
        // 10 a second.
        for sender in 1...25 {
            let hoa = IPAddress("192.0.2.\(100 + sender)")!
            let message = SignalCodec.seal(SignalMessage(sequence: 10, sender: hoa, receiver: F.home,
                                                         body: .bindingUpdate(moas: [F.peerMoA], lifetime: 60)), with: F.forger)
            _ = machine.receive(message, from: IPAddress("203.0.113.\(sender)")!, now: 1_000, environment: environment)
        }
        #expect(environment.lookups.count == 20)
        #expect(machine.counters.refusedUnknownKey == 1 + 5)
    }

    @Test func aProbeIsAnsweredFromWhereItCameWhateverThisNodeSent() {
        var (machine, environment) = F.machine()
        let nonce = Nonce(bytes: Array(0xA0...0xAF))
        let probe = F.fromPeer(.challenge(nonce: nonce, sequence: SignalingMachine.probeSequence), sequence: 20)
        let actions = machine.receive(probe, from: F.peerNewMoA, now: 0, environment: environment)
        #expect(F.effects(actions).isEmpty)
        #expect(F.sent(actions).map(\.message.body) == [.challengeResponse(nonce: nonce, sequence: SignalingMachine.probeSequence)])
        #expect(F.sent(actions).first?.to == F.peerNewMoA)
        #expect(machine.counters.probesReceived == 1)
    }

    @Test func anUnexpectedChallengeOrAckIsRefused() {
        var (machine, environment) = F.machine()
        let nonce = Nonce(bytes: Array(0xA0...0xAF))
        #expect(machine.receive(F.fromPeer(.challenge(nonce: nonce, sequence: 5), sequence: 20), from: F.peerMoA, now: 0,
                                environment: environment).isEmpty)
        #expect(machine.receive(F.fromPeer(.bindingAck(sequence: 5, status: .accepted), sequence: 21), from: F.peerMoA, now: 0,
                                environment: environment).isEmpty)
        #expect(machine.counters.refusedUnexpected == 2)
    }

    @Test func underLoadAStrangerGetsACookieReplyAndIsHandledWhenItSendsAgainWithTheCookie() throws {
        // No shared budget: the node is under load from the start.
        var (machine, environment) = F.machine(admission: SignalAdmission(shared: TokenBucket(rate: 0, burst: 0)))
        let update = F.update([F.peerMoA], sequence: 10)
        let first = machine.receive(update, from: F.peerMoA, now: 0, environment: environment)
        guard case .transmit(let bytes, let to) = try #require(first.first), first.count == 1 else {
            Issue.record("not one cookie reply: \(first)")
            return
        }
        #expect(to == F.peerMoA)
        #expect(bytes.count < update.count, "smaller than what it answers")
        let reply = try bytes.withUnsafeBytes { try SignalCodec.openCookieReply($0) }
        #expect(reply.echo == SignalCodec.echo(of: update))
        #expect(machine.counters.cookiesSent == 1 && machine.counters.updatesReceived == 0, "no work for a stranger")
        let again = machine.receive(SignalCodec.attaching(reply.cookie, to: update), from: F.peerMoA, now: 50,
                                    environment: environment)
        #expect(F.sent(again).map(\.message.body) == [.bindingAck(sequence: 10, status: .accepted)])
        #expect(machine.counters.updatesReceived == 1)
        // The cookie is bound to its source: from elsewhere it is worth nothing.
        let moved = machine.receive(SignalCodec.attaching(reply.cookie, to: F.update([F.peerMoA], sequence: 11)),
                                    from: F.peerNewMoA, now: 60, environment: environment)
        guard case .transmit(let second, to: F.peerNewMoA) = moved.first, moved.count == 1 else {
            Issue.record("not one cookie reply: \(moved)")
            return
        }
        #expect(second.count == SignalCodec.cookieReplyLength)
        #expect(machine.counters.cookiesSent == 2 && machine.counters.updatesReceived == 1)
    }

    @Test func aChangedByteAnywhereInASignedUpdateIsRefusedAndDecidesNothing() {
        var (machine, environment) = F.machine()
        let update = F.update([F.peerNewMoA], sequence: 10)
        for offset in update.indices {
            for flip: UInt8 in [0x01, 0x80] {
                var forged = update
                forged[offset] ^= flip
                let actions = machine.receive(forged, from: F.peerNewMoA, now: UInt64(offset) * 1_000,
                                              environment: environment)
                #expect(actions.isEmpty, "byte \(offset) ^ \(flip): \(actions)")
            }
        }
        let refused = machine.counters.named.filter { $0.name.hasPrefix("refused_") }.reduce(0) { $0 + $1.value }
        #expect(refused == UInt64(update.count * 2), "each one counted as refused")
        #expect(machine.counters.refusedRateLimited == 0, "each one was looked at, none turned away unread")
        #expect(machine.replayEntries.isEmpty && machine.counters.challengesSent == 0)
    }

    @Test func keepalivesAndGarbageAreCountedAndCostNothing() {
        var (machine, environment) = F.machine()
        #expect(machine.receive(EncapWire.control(.keepalive), from: F.peerMoA, now: 0, environment: environment).isEmpty)
        #expect(machine.receive([0x4D, 0x41, 0x54], from: F.peerMoA, now: 0, environment: environment).isEmpty)
        #expect(machine.counters.keepalivesReceived == 1 && machine.counters.refusedMalformed == 1)
    }
}
