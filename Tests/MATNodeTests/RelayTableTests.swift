@testable import MATNode
import MATPacket
import Testing

/// The relay's registrations and forwarding rules, and a node's choice of the relay
/// (docs/datapath.md, "Not yet supported: a relay for the rest"), with the clock in the
/// test's hands.
@Suite struct RelayTableTests {
    let vmHoA = IPAddress("198.51.100.10")!, cnHoA = IPAddress("198.51.100.20")!
    let otherHoA = IPAddress("198.51.100.30")!
    let vmNAT = RelayTable.Binding(address: IPAddress("203.0.113.50")!, port: 7541)
    let cnNAT = RelayTable.Binding(address: IPAddress("203.0.113.51")!, port: 7541)
    let stranger = RelayTable.Binding(address: IPAddress("203.0.113.99")!, port: 4000)

    func table(lifetime: UInt64 = 60_000, rate: UInt32 = 1_000, burst: UInt32 = 10) -> RelayTable {
        var table = RelayTable(lifetime: lifetime, rate: rate, burst: burst, capacity: 3)
        #expect(table.register([vmHoA], sequence: 1, from: vmNAT, now: 0) == .accepted)
        #expect(table.register([cnHoA], sequence: 1, from: cnNAT, now: 0) == .accepted)
        return table
    }

    @Test func aPacketGoesOnlyFromItsSourcesBindingToTheDestinationsBinding() {
        var table = table()
        #expect(table.route(from: vmNAT, source: vmHoA, destination: cnHoA, now: 10) == .forward(to: cnNAT))
        #expect(table.route(from: cnNAT, source: cnHoA, destination: vmHoA, now: 10) == .forward(to: vmNAT))
        // The VM's binding may not send as the CN (no injection of another node's HoA)...
        #expect(table.route(from: vmNAT, source: cnHoA, destination: cnHoA, now: 10) == .unregisteredSource)
        // ... nor to a HoA nobody registered, and nobody unregistered sends at all (no reflector).
        #expect(table.route(from: vmNAT, source: vmHoA, destination: otherHoA, now: 10) == .unknownDestination)
        #expect(table.route(from: stranger, source: otherHoA, destination: cnHoA, now: 10) == .unknownSender)
    }

    @Test func bindingsLapseALifetimeAfterTheirLastRegistration() {
        var table = table(lifetime: 60_000)
        #expect(table.register([vmHoA], sequence: 2, from: vmNAT, now: 50_000) == .accepted)
        #expect(table.route(from: vmNAT, source: vmHoA, destination: cnHoA, now: 59_999) == .forward(to: cnNAT))
        // The CN's binding lapsed at 60,000 (registered at 0), the VM's lives on.
        #expect(table.route(from: vmNAT, source: vmHoA, destination: cnHoA, now: 60_000) == .unknownDestination)
        #expect(table.route(from: cnNAT, source: cnHoA, destination: vmHoA, now: 60_000) == .unknownSender)
        #expect(table.expire(now: 60_000) == [cnNAT])
        #expect(table.count == 1 && table.hoas(of: vmNAT) == [vmHoA])
        #expect(table.expire(now: 110_000) == [vmNAT] && table.count == 0)
    }

    @Test func aNewerRegistrationTakesTheHoAOverAndAReplayIsRefused() {
        var table = table()
        let moved = RelayTable.Binding(address: IPAddress("203.0.113.50")!, port: 31_000)
        // The VM's NAT chose another port: its next registration (sequence 2) moves the HoA.
        #expect(table.register([vmHoA], sequence: 2, from: moved, now: 1_000) == .accepted)
        #expect(table.hoas(of: vmNAT).isEmpty && table.hoas(of: moved) == [vmHoA])
        #expect(table.route(from: cnNAT, source: cnHoA, destination: vmHoA, now: 1_000) == .forward(to: moved))
        #expect(table.route(from: vmNAT, source: vmHoA, destination: cnHoA, now: 1_000) == .unknownSender)
        // The old registration, replayed from anywhere (its old binding too), takes nothing back.
        #expect(table.register([vmHoA], sequence: 1, from: vmNAT, now: 2_000) == .replayed)
        #expect(table.register([vmHoA], sequence: 2, from: stranger, now: 2_000) == .replayed)
        #expect(table.hoas(of: moved) == [vmHoA] && table.count == 2)
        // The same registration again from its own binding only refreshes it.
        #expect(table.register([vmHoA], sequence: 2, from: moved, now: 2_000) == .accepted)
    }

    @Test func aHoANoLongerRegisteredIsGivenUp() {
        var table = table()
        #expect(table.register([vmHoA, otherHoA], sequence: 2, from: vmNAT, now: 100) == .accepted)
        #expect(table.route(from: cnNAT, source: cnHoA, destination: otherHoA, now: 100) == .forward(to: vmNAT))
        #expect(table.register([vmHoA], sequence: 3, from: vmNAT, now: 200) == .accepted)
        #expect(table.route(from: cnNAT, source: cnHoA, destination: otherHoA, now: 200) == .unknownDestination)
        #expect(table.route(from: vmNAT, source: otherHoA, destination: cnHoA, now: 200) == .unregisteredSource)
    }

    @Test func eachBindingHasItsOwnRate() {
        var table = table(rate: 1_000, burst: 10)
        for _ in 0..<10 {
            #expect(table.route(from: vmNAT, source: vmHoA, destination: cnHoA, now: 5) == .forward(to: cnNAT))
        }
        #expect(table.route(from: vmNAT, source: vmHoA, destination: cnHoA, now: 5) == .rateLimited)
        // The CN's binding is not held back by the VM's burst.
        #expect(table.route(from: cnNAT, source: cnHoA, destination: vmHoA, now: 5) == .forward(to: vmNAT))
        // 1,000 a second: one more after a millisecond, then none again.
        #expect(table.route(from: vmNAT, source: vmHoA, destination: cnHoA, now: 6) == .forward(to: cnNAT))
        #expect(table.route(from: vmNAT, source: vmHoA, destination: cnHoA, now: 6) == .rateLimited)
    }

    @Test func theTableHoldsAtMostItsCapacity() {
        var table = table()
        #expect(table.register([otherHoA], sequence: 1, from: stranger, now: 0) == .accepted)
        let fourth = RelayTable.Binding(address: IPAddress("203.0.113.98")!, port: 1)
        #expect(table.register([IPAddress("198.51.100.40")!], sequence: 1, from: fourth, now: 0) == .full)
        // A binding already held still registers; a lapsed one makes room.
        #expect(table.register([otherHoA], sequence: 2, from: stranger, now: 0) == .accepted)
        #expect(table.register([IPAddress("198.51.100.40")!], sequence: 1, from: fourth, now: 60_000) == .accepted)
    }

    @Test func aNodeTurnsToTheRelayAfterThreeSilentKeepaliveIntervals() {
        let peer = IPAddress("203.0.113.51")!
        var fallback = RelayFallback(keepaliveInterval: 15_000)
        #expect(!fallback.relayed(peer, now: 1_000_000) && fallback.nextDeadline == nil)
        fallback.encapsulated(peer, now: 1_000)
        #expect(fallback.follow(now: 1_000).isEmpty && fallback.nextDeadline == 46_000)
        #expect(!fallback.relayed(peer, now: 45_999) && !fallback.needsFollow(now: 45_999))
        #expect(fallback.relayed(peer, now: 46_000) && fallback.needsFollow(now: 46_000))
        #expect(fallback.follow(now: 46_000).relayed == [peer] && fallback.relayedMoAs == [peer])
        // A keepalive from the peer after all: the hole opened, back to the peer's address.
        fallback.heard(peer, now: 50_000)
        #expect(!fallback.relayed(peer, now: 50_000) && fallback.follow(now: 50_000).direct == [peer])
        #expect(fallback.nextDeadline == 95_000 && fallback.relayedMoAs.isEmpty)
        #expect(fallback.relayed(peer, now: 95_000) && fallback.follow(now: 95_000).relayed == [peer])
        // Going in UDP again does not restart the wait; going direct ends it.
        fallback.encapsulated(peer, now: 90_000)
        #expect(fallback.relayed(peer, now: 95_000))
        fallback.stopped(peer)
        #expect(!fallback.relayed(peer, now: 200_000) && fallback.follow(now: 200_000).direct == [peer])
        #expect(fallback.nextDeadline == nil && fallback.relayedMoAs.isEmpty)
    }

    /// A peer whose IMS record names the relay goes through it as soon as it is in UDP,
    /// until its first keepalive; then the usual three silent intervals decide. Only a peer
    /// in UDP can be sent through the relay.
    @Test func aPeerKnownToBeBehindTheRelayGoesThroughItAtOnceUntilAKeepaliveComes() {
        let peer = IPAddress("203.0.113.51")!
        var fallback = RelayFallback(keepaliveInterval: 15_000)
        fallback.relayAtOnce(peer)
        #expect(!fallback.relayed(peer, now: 1_000) && !fallback.isRelayedAtOnce(peer))
        fallback.encapsulated(peer, now: 1_000)
        fallback.relayAtOnce(peer)
        #expect(fallback.relayed(peer, now: 1_000) && fallback.isRelayedAtOnce(peer))
        fallback.heard(peer, now: 5_000)
        #expect(!fallback.relayed(peer, now: 5_000) && !fallback.isRelayedAtOnce(peer))
        #expect(fallback.relayed(peer, now: 50_000))
        fallback.stopped(peer)
        #expect(!fallback.relayed(peer, now: 60_000))
    }

    /// An IMS record that stops naming the relay clears "at once": the peer waits for hole
    /// punching again (three silent keepalive intervals).
    @Test func aPeerNoLongerKnownToBeBehindTheRelayWaitsForHolePunchingAgain() {
        let peer = IPAddress("203.0.113.51")!
        var fallback = RelayFallback(keepaliveInterval: 15_000)
        fallback.encapsulated(peer, now: 1_000)
        fallback.relayAtOnce(peer, true)
        #expect(fallback.relayed(peer, now: 2_000))
        fallback.relayAtOnce(peer, false)
        #expect(!fallback.relayed(peer, now: 2_000) && !fallback.isRelayedAtOnce(peer))
        #expect(fallback.relayed(peer, now: 46_000))
    }

    /// Two nodes behind one NAT share its address as their MoA: the relay is used at once
    /// for that MoA when any of them has a record naming the relay, whichever is listed first.
    @Test func aMoAIsRelayedAtOnceWhenAnyPeerAtItIsBehindTheRelay() {
        let nat = IPAddress("203.0.113.60")!, other = IPAddress("203.0.113.61")!
        let a = IPAddress("198.51.100.10")!, b = IPAddress("198.51.100.11")!, c = IPAddress("198.51.100.12")!
        let peers = [(hoa: a, moa: nat), (hoa: b, moa: nat), (hoa: c, moa: other)]
        #expect(EncapControl.relaysAtOnce(nat, peers: peers, relayedHoAs: [b]))
        #expect(EncapControl.relaysAtOnce(nat, peers: peers.reversed(), relayedHoAs: [b]))
        #expect(!EncapControl.relaysAtOnce(other, peers: peers, relayedHoAs: [b]))
        #expect(!EncapControl.relaysAtOnce(nat, peers: peers, relayedHoAs: []))
    }
}
