import MATPacket
import Testing
@testable import MATNode

@Suite struct AlertQueueTests {
    func peer(_ n: Int) -> AlertQueue.Peer {
        (hoa: .v6(IPv6Address(high: 0x2001_0db8_0000_0000, low: UInt64(n))), moa: .v6(IPv6Address(high: 0x2001_0db8_0001_0000, low: UInt64(n))))
    }

    /// Configured peers go first, then those heard from recently, newest first; the rest
    /// wait for later turns, `perTurn` at a time.
    @Test func configuredThenRecentFirstAndBoundedPerTurn() {
        var queue = AlertQueue()
        let peers = (0..<1_000).map(peer)
        let configured = peers[500].hoa
        queue.startRound(with: peers, first: [configured], recentSince: 5_000, lastHeard: { hoa in
            if hoa == peers[7].hoa { return 9_000 }
            if hoa == peers[3].hoa { return 8_000 }
            if hoa == peers[2].hoa { return 4_000 }   // heard, but too long ago to come first
            return 0
        })
        let first = queue.next()
        #expect(first.count == AlertQueue.perTurn)
        #expect(first.prefix(3).map(\.hoa) == [configured, peers[7].hoa, peers[3].hoa])
        #expect(first[3].hoa == peers[0].hoa, "the rest, peers[2] too, in the order given")
        var sent = first.count
        while !queue.isEmpty { sent += queue.next().count }
        #expect(sent == 1_000)
        #expect(queue.next().isEmpty)
    }

    /// A newer move's alerts go first; what the last one had not sent still goes after
    /// them, once each (those peers are held until alerted).
    @Test func aNewerMoveGoesFirstAndWhatWaitsStillGoes() {
        var queue = AlertQueue()
        queue.startRound(with: (0..<1_000).map(peer), first: [], recentSince: 0, lastHeard: { _ in 0 })
        let firstTurn = queue.next().map(\.hoa)
        // A move of the other family names two peers: one already alerted, one still waiting.
        queue.startRound(with: [peer(1), peer(900)], first: [], recentSince: 0, lastHeard: { _ in 0 })
        #expect(queue.count == 1_000 - AlertQueue.perTurn + 1)
        var sent: [IPAddress] = []
        while !queue.isEmpty { sent += queue.next().map(\.hoa) }
        #expect(Array(sent.prefix(2)) == [peer(1).hoa, peer(900).hoa])
        #expect(Set(sent).count == sent.count)
        #expect(Set(firstTurn + sent) == Set((0..<1_000).map { peer($0).hoa }))
    }

    /// `matctl rebind` reports once the whole round went out, not when the peers of its
    /// first turn have answered: with 1,000 peers, the 744 still queued keep it waiting
    /// even when nobody is outstanding, and they count in its round.
    @Test func aRebindIsDoneOnlyOnceTheWholeRoundWentOut() {
        var queue = AlertQueue()
        let peers = (0..<1_000).map(peer)
        queue.startRound(with: peers, first: [], recentSince: 0, lastHeard: { _ in 0 })
        let firstTurn = Set(queue.next().map(\.hoa))
        let rebind = PendingRebind(ticket: RebindTicket(), round: firstTurn.union(queue.hoas), startedAt: 0)
        #expect(rebind.round.count == 1_000)
        #expect(!rebind.isDone(alertsWaiting: queue.count, registering: false, isAwaiting: { _ in false }))
        #expect(!rebind.isDone(alertsWaiting: 0, registering: false, isAwaiting: { $0 == peers[999].hoa }))
        #expect(!rebind.isDone(alertsWaiting: 0, registering: true, isAwaiting: { _ in false }))
        while !queue.isEmpty { _ = queue.next() }
        #expect(rebind.isDone(alertsWaiting: queue.count, registering: false, isAwaiting: { $0 == peer(5_000).hoa }))
    }

    /// Gathers `hoas` (peers made by `peer`) slice by slice as the service does, each heard
    /// from at `heard`; returns how many slices it took.
    @discardableResult
    func gatherAll(_ queue: inout AlertQueue, recentSince: UInt64, heard: (IPAddress) -> UInt64) -> Int {
        var slices = 0
        while let slice = queue.nextToGather() {
            slices += 1
            let peers = slice.hoas.filter { slice.families.contains($0.family) }
                .map { hoa in (hoa: hoa, moa: IPAddress.v6(IPv6Address(high: 0x2001_0db8_0001_0000, low: hoa.v6Low))) }
            queue.add(peers, to: slice.round, first: [], recentSince: recentSince, lastHeard: heard)
            if slice.isLast { break }
            let early = queue.next()
            #expect(early.isEmpty, "no learned peer's alert before all are gathered")
        }
        return slices
    }

    /// A move's round gathered slice by slice sends its alerts in the order of the round
    /// sorted whole: the configured peers at once, the learned ones (recent newest first,
    /// then the rest) once the last slice is in, and never more than `perTurn` a turn.
    @Test func aGatheredRoundGoesInTheOrderOfTheWholeRound() {
        let peers = (0..<10_000).map(peer)
        let configured = peers[42]
        // Heard at distinct times, a third of them recently.
        let heard = { (hoa: IPAddress) -> UInt64 in hoa.v6Low % 3 == 0 ? 10_000 + hoa.v6Low * 7 % 9_973 : 0 }
        var whole = AlertQueue()
        whole.startRound(with: [configured] + peers.filter { $0.hoa != configured.hoa }, first: [configured.hoa],
                         recentSince: 5_000, lastHeard: heard)
        var expected: [IPAddress] = []
        while !whole.isEmpty { expected += whole.next().map(\.hoa) }

        var queue = AlertQueue()
        let round = queue.begin(for: [.ipv6])
        queue.add([configured], to: round, first: [configured.hoa], recentSince: 5_000, lastHeard: heard)
        queue.gather(peers.map(\.hoa).filter { $0 != configured.hoa })
        #expect(!queue.isEmpty && queue.hoas.count == 10_000)
        let atOnce = queue.next()
        #expect(atOnce.map(\.hoa) == [configured.hoa], "the configured peer at once")
        let slices = gatherAll(&queue, recentSince: 5_000, heard: heard)
        #expect(slices == (9_999 + AlertQueue.gatheredPerTurn - 1) / AlertQueue.gatheredPerTurn)
        var sent = [configured.hoa]
        while !queue.isEmpty {
            let batch = queue.next()
            #expect(batch.count <= AlertQueue.perTurn && !batch.isEmpty)
            sent += batch.map(\.hoa)
        }
        #expect(sent == expected)
    }

    /// While a newer move gathers, an older round's alerts wait behind it; a newer move of
    /// the same family takes over the older one's gathering, and each peer goes once.
    @Test func aNewerMoveTakesOverTheGatheringAndEachPeerGoesOnce() {
        let peers = (0..<9_000).map(peer)
        var queue = AlertQueue()
        queue.startRound(with: [peer(50_000)], first: [], recentSince: 0, lastHeard: { _ in 0 })
        queue.begin(for: [.ipv6])
        queue.gather(peers.map(\.hoa))
        let waiting = queue.next()
        #expect(waiting.isEmpty, "the older round waits behind the one gathering")
        // One slice gathered, then the node moves again.
        let slice = queue.nextToGather()
        let first = slice.map { $0.hoas.map { (hoa: $0, moa: $0) } } ?? []
        #expect(first.count == AlertQueue.gatheredPerTurn && slice?.isLast == false)
        queue.add(first, to: slice?.round, first: [], recentSince: 0, lastHeard: { _ in 0 })
        queue.begin(for: [.ipv6])
        queue.gather(peers.map(\.hoa))
        #expect(Set(queue.hoas).count == 9_000 + 1, "the first slice's peers queued, all still to gather")
        gatherAll(&queue, recentSince: 0, heard: { _ in 0 })
        var sent: [IPAddress] = []
        while !queue.isEmpty { sent += queue.next().map(\.hoa) }
        #expect(sent.count == 9_001 && Set(sent).count == sent.count)
        #expect(sent.last == peer(50_000).hoa, "the oldest round's alert last")
    }
}

extension IPAddress {
    /// The low 64 bits of an IPv6 address (the tests' peer number).
    var v6Low: UInt64 {
        if case .v6(let address) = self { return address.low }
        return 0
    }
}
