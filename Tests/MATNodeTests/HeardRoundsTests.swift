@testable import MATNode
import MATPacket
import Testing

/// The BPF datapath's heard map read in parts (``HeardRounds``): each read takes at most
/// a part of the map, a peer is reported once per new time, and a peer gone from the map
/// is forgotten at the end of the round.
@Suite struct HeardRoundsTests {
    static let limit = 1_024

    /// A map of `count` peers, each noted at `at(index)` ns, read in parts as
    /// BPFDatapath.heard(limit:) returns them: one round; what each read reported.
    static func round(_ rounds: inout HeardRounds<IPv4Address>, count: Int, at: (Int) -> UInt64) -> [[(IPv4Address, UInt64)]] {
        var reads: [[(IPv4Address, UInt64)]] = []
        var start = 0
        while true {
            let part = (start..<min(start + limit, count)).map { (home: IPv4Address(UInt32(0xC633_0000) + UInt32($0)), nanoseconds: at($0)) }
            reads.append(rounds.take(part, limit: limit))
            start += part.count
            if part.count < limit { return reads }
        }
    }

    @Test func eachReadTakesAPartAndAPeerIsReportedOncePerTime() {
        var rounds = HeardRounds<IPv4Address>()
        // 3,000 peers: three reads of at most 1,024, every peer reported once, in ms.
        let first = Self.round(&rounds, count: 3_000) { 5_000_000_000 + UInt64($0) * 1_000_000 }
        #expect(first.map(\.count) == [1_024, 1_024, 952])
        #expect(first[0][1].1 == 5_001)
        // The same times again: nothing new.
        let second = Self.round(&rounds, count: 3_000) { 5_000_000_000 + UInt64($0) * 1_000_000 }
        #expect(second.map(\.count) == [0, 0, 0])
        // Ten peers noted anew: those ten only.
        let third = Self.round(&rounds, count: 3_000) { 5_000_000_000 + UInt64($0) * 1_000_000 + ($0 % 300 == 0 ? 1 : 0) }
        #expect(third.reduce(0) { $0 + $1.count } == 10)
        #expect(rounds.reported.count == 3_000)
    }

    @Test func peersGoneFromTheMapAreForgottenAtTheRoundsEnd() {
        var rounds = HeardRounds<IPv4Address>()
        _ = Self.round(&rounds, count: 3_000) { _ in 7 }
        _ = Self.round(&rounds, count: 2_000) { _ in 7 }
        #expect(rounds.reported.count == 2_000)
        // An empty map: one read of nothing ends the round.
        #expect(rounds.take([], limit: Self.limit).isEmpty)
        #expect(rounds.reported.isEmpty)
    }
}
