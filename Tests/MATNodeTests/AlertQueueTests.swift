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
        #expect(!rebind.isDone(alertsWaiting: queue.count, outstanding: [], registering: false))
        #expect(!rebind.isDone(alertsWaiting: 0, outstanding: [peers[999].hoa], registering: false))
        #expect(!rebind.isDone(alertsWaiting: 0, outstanding: [], registering: true))
        while !queue.isEmpty { _ = queue.next() }
        #expect(rebind.isDone(alertsWaiting: queue.count, outstanding: [peer(5_000).hoa], registering: false))
    }
}
