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
}
