import MATPacket
import MATSignaling
import Testing
@testable import MATNode

private typealias F = SignalingFixture

/// A guest restored from a snapshot numbers its first alerts from the snapshot's clock,
/// and its peers refuse them as replays (docs/security.md, S2 and Open: rollback). When
/// the IMS's time moves the node's clock forward, the alerts still waiting for their
/// acknowledgement are sent again with fresh numbers (``SignalingMachine/renumberUpdates(below:now:environment:)``).
@Suite struct RenumberedUpdatesTests {
    @Test func anUpdateNumberedBelowTheNewFloorIsSentAgainWithAFreshNumber() throws {
        var (machine, environment) = F.machine()
        let old = try #require(F.sent(try F.announce(&machine, environment)).first)
        // Its retransmissions are the same bytes, the same number: refused as often as sent.
        let again = machine.renumberUpdates(below: old.message.sequence + 1, now: 700, environment: environment)
        let fresh = try #require(F.sent(again).first)
        #expect(F.sent(again).count == 1)
        #expect(fresh.to == F.peerMoA && fresh.message.body == old.message.body)
        #expect(fresh.message.sequence > old.message.sequence)
        #expect(again.contains(.event("alert", ["peer": "\(F.peer)", "at": "\(F.peerMoA)", "sequence": "\(fresh.message.sequence)"])))
        #expect(machine.awaiting == [F.peer] && machine.counters.updatesSent == 2)
        // The new update is the one waiting: its schedule starts afresh, the old one's
        // acknowledgement matches nothing, the new one's settles it.
        #expect(machine.nextEventAt == 900)
        let stale = F.fromPeer(.bindingAck(sequence: old.message.sequence, status: .accepted), sequence: 50)
        #expect(F.effects(machine.receive(stale, from: F.peerMoA, now: 710, environment: environment)).isEmpty)
        #expect(machine.counters.refusedUnexpected == 1)
        let ack = F.fromPeer(.bindingAck(sequence: fresh.message.sequence, status: .accepted), sequence: 51)
        #expect(F.effects(machine.receive(ack, from: F.peerMoA, now: 720, environment: environment))
                == [.reached(hoa: F.peer, at: F.peerMoA, key: nil), .settled(hoa: F.peer, acknowledged: true)])
    }

    @Test func updatesAtOrAboveTheFloorAndAcknowledgedOnesAreLeftAlone() throws {
        var (machine, environment) = F.machine()
        let sent = try #require(F.sent(try F.announce(&machine, environment)).first)
        #expect(machine.renumberUpdates(below: sent.message.sequence, now: 100, environment: environment).isEmpty)
        let ack = F.fromPeer(.bindingAck(sequence: sent.message.sequence, status: .accepted), sequence: 50)
        _ = machine.receive(ack, from: F.peerMoA, now: 120, environment: environment)
        #expect(machine.renumberUpdates(below: UInt64.max, now: 200, environment: environment).isEmpty)
        #expect(machine.counters.updatesSent == 1)
    }

    /// An alert whose retransmissions ran out before the IMS set the clock (a restored
    /// guest whose peer refused it and every resend as replays, and whose first exchange
    /// with the IMS came later) is sent again with a fresh number too, within
    /// ``SignalingMachine/givenUpWindow``; the clock's correction comes from a
    /// ``SequenceClock`` on an injected host clock, as matd's service takes it.
    @Test func anAlertGivenUpBeforeTheClockWasSetIsSentAgainWithAFreshNumber() throws {
        var (machine, environment) = F.machine()
        let old = try #require(F.sent(try F.announce(&machine, environment)).first)
        for at: UInt64 in [200, 600, 1_400, 3_000, 6_200] { _ = machine.tick(now: at, environment: environment) }
        #expect(F.effects(machine.tick(now: 9_400, environment: environment)) == [.settled(hoa: F.peer, acknowledged: false)])
        #expect(machine.awaiting.isEmpty)
        // The snapshot's clock: 15 s behind the IMS, whose signed refusal says so.
        let clock = SequenceClock(host: { 1_800_000_000 })
        #expect(clock.follow(15))
        let floor = clock.floor
        #expect(floor > old.message.sequence)
        let again = machine.renumberUpdates(below: floor, now: 12_000, environment: environment)
        let fresh = try #require(F.sent(again).first)
        #expect(F.sent(again).count == 1 && fresh.to == F.peerMoA && fresh.message.body == old.message.body)
        #expect(fresh.message.sequence > old.message.sequence && machine.awaiting == [F.peer])
        // Sent again once: the given-up alert is replaced, and the new one (numbered by the
        // corrected clock, which the fake's numbers stand for here) is not below the floor.
        #expect(machine.renumberUpdates(below: fresh.message.sequence, now: 12_500, environment: environment).isEmpty)
    }

    @Test func aGivenUpAlertIsLeftAloneAboveTheFloorOrPastTheWindow() throws {
        var (machine, environment) = F.machine()
        let old = try #require(F.sent(try F.announce(&machine, environment)).first)
        for at: UInt64 in [200, 600, 1_400, 3_000, 6_200, 9_400] { _ = machine.tick(now: at, environment: environment) }
        #expect(machine.renumberUpdates(below: old.message.sequence, now: 10_000, environment: environment).isEmpty)
        let late = 9_400 + SignalingMachine.givenUpWindow + 1
        #expect(machine.renumberUpdates(below: UInt64.max, now: late, environment: environment).isEmpty)
        #expect(machine.counters.updatesSent == 1)
    }
}
