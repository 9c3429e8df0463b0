import MATPacket
import MATSignaling
import Testing
@testable import MATNode

private typealias F = SignalingFixture

/// The signaling decisions on what this node sends: alerts, their retransmissions and
/// acknowledgements, cookie replies to them, and probes.
@Suite struct SignalingMachineOutboundTests {
    @Test func anAlertIsSentPaddedAndEndsWithItsAcknowledgement() throws {
        var (machine, environment) = F.machine()
        let actions = try F.announce(&machine, environment)
        let alert = try #require(F.sent(actions).first)
        #expect(alert.to == F.peerMoA)
        #expect(alert.message.body == .bindingUpdate(moas: [F.mobile], lifetime: 600))
        #expect(alert.bytes.count == SignalCodec.paddedUpdateLength, "padded for the peer's unvalidated-path budget")
        #expect(machine.awaiting == [F.peer] && machine.peerStates[F.peer]?.alert == .awaitingAck)
        let ack = F.fromPeer(.bindingAck(sequence: alert.message.sequence, status: .accepted), sequence: 50)
        let acknowledged = machine.receive(ack, from: F.peerMoA, now: 30, environment: environment)
        #expect(F.effects(acknowledged) == [.reached(hoa: F.peer, at: F.peerMoA, key: nil), .settled(hoa: F.peer, acknowledged: true)])
        #expect(machine.awaiting.isEmpty)
        #expect(machine.peerStates[F.peer] == PeerSignalState(alert: .acknowledged, lastAckAt: 30, roundTripMilliseconds: 30))
        #expect(machine.counters.acksReceived == 1 && machine.counters.alertAcknowledged.count == 1)
        #expect(machine.receive(ack, from: F.peerMoA, now: 40, environment: environment).isEmpty, "acknowledged once")
        #expect(machine.nextEventAt == nil)
    }

    @Test func anAlertWithoutAMoAOfThePeersFamilyIsNotSent() {
        var (machine, environment) = F.machine()
        #expect(machine.announce(to: IPAddress("2001:db8::20")!, at: IPAddress("2001:db8:a::20")!, now: 0,
                                 environment: environment) == nil)
        #expect(machine.awaiting.isEmpty && machine.counters.updatesSent == 0)
    }

    @Test func aChallengeOfThisNodesAlertIsAnsweredAndReleasesTheHeldTraffic() throws {
        var (machine, environment) = F.machine()
        let actions = try F.announce(&machine, environment)
        let sequence = try #require(F.sent(actions).first?.message.sequence)
        let nonce = Nonce(bytes: Array(0x10...0x1F))
        let challenge = F.fromPeer(.challenge(nonce: nonce, sequence: sequence), sequence: 60)
        let answered = machine.receive(challenge, from: F.peerMoA, now: 20, environment: environment)
        #expect(F.sent(answered).map(\.message.body) == [.challengeResponse(nonce: nonce, sequence: sequence)])
        #expect(F.effects(answered) == [.reached(hoa: F.peer, at: F.peerMoA, key: nil), .peerIsAlive(hoa: F.peer)],
                "the peer has the update: the hold ends before its ack")
        #expect(machine.awaiting == [F.peer], "still waiting for the ack")
    }

    /// The first wait before an alert is resent follows the round trip measured to its peer
    /// (RetransmitSchedule.firstWait): behind a standing queue an answer takes longer than
    /// the fixed 200 ms, and the copy sent then was spurious (docs/benchmarks.md, handoff).
    @Test func theResendWaitFollowsThePeersMeasuredRoundTrip() throws {
        var (machine, environment) = F.machine()
        let peer = F.peer
        // Move 1: no round trip known, the first resend at 200 ms; the challenge after 150 ms
        // measures one and gives the response and ack a round trip's wait (to 150 + 450).
        let first = try #require(F.sent(try F.announce(&machine, environment)).first)
        #expect(machine.nextEventAt == 200)
        let nonce = Nonce(bytes: Array(0x10...0x1F))
        _ = machine.receive(F.fromPeer(.challenge(nonce: nonce, sequence: first.message.sequence), sequence: 60),
                            from: F.peerMoA, now: 150, environment: environment)
        #expect(machine.roundTrips[peer]?.smoothed == 150)
        #expect(machine.nextEventAt == 600)
        #expect(machine.tick(now: 300, environment: environment).isEmpty, "no spurious copy at 200 or 300 ms")
        // Its ack (after the response's round trip) measures nothing more.
        _ = machine.receive(F.fromPeer(.bindingAck(sequence: first.message.sequence, status: .accepted), sequence: 61),
                            from: F.peerMoA, now: 310, environment: environment)
        #expect(machine.roundTrips[peer]?.samples == 1 && machine.awaiting.isEmpty)
        // Move 2: the next alert waits that peer's timeout (150 + 4 x 75 ms) before its resend.
        let announced = machine.announce(to: peer, at: F.peerMoA, now: 1_000, environment: environment)
        let second = try #require(announced)
        let bytes = try #require(F.sent(second).first?.bytes)
        #expect(machine.nextEventAt == 1_450)
        #expect(machine.tick(now: 1_449, environment: environment).isEmpty)
        #expect(machine.tick(now: 1_450, environment: environment) == [.transmit(bytes, to: F.peerMoA)])
        // Answered after the resend: ambiguous (Karn), no sample.
        let sequence = F.sent(second)[0].message.sequence
        _ = machine.receive(F.fromPeer(.bindingAck(sequence: sequence, status: .accepted), sequence: 62),
                            from: F.peerMoA, now: 1_500, environment: environment)
        #expect(machine.roundTrips[peer]?.samples == 1 && machine.awaiting.isEmpty)
        // A peer never measured keeps the 200 ms.
        let other = IPAddress("192.0.2.21")!
        _ = machine.announce(to: other, at: IPAddress("198.51.100.21")!, now: 2_000, environment: environment)
        #expect(machine.nextEventAt == 2_200)
    }

    @Test func anUnansweredAlertIsResentOnItsScheduleTheIMSAskedAgainAndThePeerGivenUp() throws {
        var (machine, environment) = F.machine()
        environment.hasIMS = true
        let first = try F.announce(&machine, environment)
        let bytes = try #require(F.sent(first).first?.bytes)
        #expect(machine.nextEventAt == 200)
        #expect(machine.tick(now: 199, environment: environment).isEmpty)
        // Sent at 0, 200, 600, 1400, 3000 and 6200 ms, the same bytes each time.
        for at: UInt64 in [200, 600, 1_400, 3_000, 6_200] {
            #expect(machine.tick(now: at, environment: environment) == [.transmit(bytes, to: F.peerMoA)], "resent at \(at)")
        }
        #expect(machine.counters.updatesRetransmitted == 5)
        #expect(environment.lookups.map(\.purpose) == Array(repeating: "again", count: 4),
                "after the second send, every resend asks the IMS where the peer is")
        #expect(machine.counters.peersLookedUpAgain == 4)
        #expect(machine.nextEventAt == 9_400)
        #expect(machine.tick(now: 9_399, environment: environment).isEmpty)
        let gaveUp = machine.tick(now: 9_400, environment: environment)
        #expect(F.effects(gaveUp) == [.settled(hoa: F.peer, acknowledged: false)])
        #expect(gaveUp.contains(.event("unanswered", ["peer": "\(F.peer)", "at": "\(F.peerMoA)",
                                                      "sequence": "\(F.sent(first)[0].message.sequence)"])))
        #expect(machine.awaiting.isEmpty && machine.peerStates[F.peer]?.alert == .unanswered)
        #expect(machine.counters.updatesUnanswered == 1)
        #expect(machine.nextEventAt == nil)
    }

    @Test func theIMSRedirectsTheRetransmissionsOfAPeerThatMoved() throws {
        var (machine, environment) = F.machine()
        _ = try F.announce(&machine, environment)
        #expect(machine.redirect(F.peer, to: [F.peerMoA]).isEmpty, "where it is already")
        #expect(machine.redirect(F.peer, to: [F.peerNewMoA]).count == 1)
        let resent = machine.tick(now: 200, environment: environment)
        #expect(F.sent(resent).map(\.to) == [F.peerNewMoA])
        // An ack after a resend gives no round trip (Karn).
        let sequence = try #require(F.sent(resent).first?.message.sequence)
        _ = machine.receive(F.fromPeer(.bindingAck(sequence: sequence, status: .accepted), sequence: 70), from: F.peerNewMoA,
                            now: 250, environment: environment)
        #expect(machine.peerStates[F.peer]?.roundTripMilliseconds == nil && machine.peerStates[F.peer]?.alert == .acknowledged)
    }

    @Test func aCookieReplyToAnAlertSendsItAgainWithTheCookieAndOnlyOnce() throws {
        var (machine, environment) = F.machine()
        let first = try F.announce(&machine, environment)
        let alert = try #require(F.sent(first).first?.bytes)
        let cookie = Cookie(high: 0x3031_3233_3435_3637, low: 0x3839_3A3B_3C3D_3E3F)
        let reply = SignalCodec.seal(CookieReply(echo: SignalCodec.echo(of: alert), cookie: cookie))
        let again = machine.receive(reply, from: F.peerMoA, now: 10, environment: environment)
        #expect(again == [.transmit(SignalCodec.attaching(cookie, to: alert), to: F.peerMoA)])
        #expect(machine.counters.cookiesReceived == 1)
        #expect(machine.receive(reply, from: F.peerMoA, now: 20, environment: environment).isEmpty, "answered once")
        #expect(machine.counters.refusedUnexpected == 1)
        // What follows carries the cookie.
        #expect(machine.tick(now: 200, environment: environment) == [.transmit(SignalCodec.attaching(cookie, to: alert), to: F.peerMoA)])
        // A reply echoing something else plants nothing.
        let planted = SignalCodec.seal(CookieReply(echo: cookie, cookie: cookie))
        #expect(machine.receive(planted, from: F.peerNewMoA, now: 30, environment: environment).isEmpty)
    }

    @Test func aProbeIsResentUntilAnsweredFromTheProbedMoA() throws {
        var (machine, environment) = F.machine()
        let sent = machine.probe(F.peer, at: [F.peerNewMoA], key: nil, now: 0, environment: environment)
        let probe = try #require(F.sent(sent).first)
        #expect(probe.to == F.peerNewMoA)
        guard case .challenge(let nonce, SignalingMachine.probeSequence) = probe.message.body else {
            Issue.record("not a probe: \(probe.message.body)")
            return
        }
        #expect(machine.isProbing(F.peer))
        #expect(machine.probe(F.peer, at: [F.peerNewMoA], key: nil, now: 10, environment: environment).isEmpty,
                "probed already")
        #expect(F.sent(machine.sendDueProbes(now: 500, environment: environment)).count == 1, "resent at 0.5 s")
        let answer = F.fromPeer(.challengeResponse(nonce: nonce, sequence: SignalingMachine.probeSequence), sequence: 80)
        #expect(machine.receive(answer, from: F.peerMoA, now: 600, environment: environment).isEmpty, "not from the probed MoA")
        let reached = machine.receive(answer, from: F.peerNewMoA, now: 700, environment: environment)
        #expect(reached == [.reached(hoa: F.peer, at: F.peerNewMoA, key: nil)])
        #expect(!machine.isProbing(F.peer) && machine.counters.probesAnswered == 1)
    }

    @Test func aProbeOfACandidateKeyIsAnsweredOnlyWithThatKey() throws {
        var (machine, environment) = F.machine()
        let rotated = try SigningKey(rawRepresentation: (96..<128).map { UInt8($0) })
        let sent = machine.probe(F.peer, at: [F.peerNewMoA], key: rotated.publicKey, now: 0, environment: environment)
        guard case .challenge(let nonce, _) = try #require(F.sent(sent).first).message.body else { return }
        let withOld = F.fromPeer(.challengeResponse(nonce: nonce, sequence: 0), sequence: 90)
        #expect(machine.receive(withOld, from: F.peerNewMoA, now: 10, environment: environment).isEmpty,
                "the bound key does not prove the new one")
        let withNew = F.fromPeer(.challengeResponse(nonce: nonce, sequence: 0), sequence: 91, key: rotated)
        #expect(machine.receive(withNew, from: F.peerNewMoA, now: 20, environment: environment)
                == [.reached(hoa: F.peer, at: F.peerNewMoA, key: rotated.publicKey)])
    }

    @Test func aProbeUnansweredForItsLastWaitReportsTheMoAUnreachable() {
        var (machine, environment) = F.machine()
        _ = machine.probe(F.peer, at: [F.peerNewMoA], key: nil, now: 0, environment: environment)
        // Sent at 0, 0.5, 1.5 and 3.5 s, waited for until 5.5 s.
        for at: UInt64 in [500, 1_500, 3_500] {
            #expect(F.sent(machine.sendDueProbes(now: at, environment: environment)).count == 1)
        }
        #expect(machine.sendDueProbes(now: 5_499, environment: environment).isEmpty)
        #expect(machine.sendDueProbes(now: 5_500, environment: environment) == [.unreachable(hoa: F.peer, at: F.peerNewMoA)])
        #expect(machine.counters.probesSent == 4 && machine.counters.probesUnanswered == 1)
        #expect(machine.nextEventAt == nil)
    }

    @Test func aCancelledProbeIsNotSent() {
        var (machine, environment) = F.machine()
        _ = machine.probe(F.peer, at: [F.peerNewMoA], key: nil, now: 0, environment: environment)
        machine.cancelProbes(of: F.peer)
        #expect(machine.sendDueProbes(now: 500, environment: environment).isEmpty)
    }

    @Test func aKeepaliveIsSentAndCounted() {
        var (machine, _) = F.machine()
        #expect(machine.keepalive(to: F.peerMoA) == [.transmit(EncapWire.control(.keepalive), to: F.peerMoA)])
        #expect(machine.counters.keepalivesSent == 1)
    }
}
