import Foundation
@testable import MATNode
import MATPacket
import MATSystem
import Testing

/// What a move costs before its first alert goes out, with many learned peers: the pure
/// parts of `MappingService.followUplinks` (the concerned peers, their holds, the alert
/// queue's round and its first turn) and the engine's part (applying one hold per peer,
/// ``Engine/commandsPerTurn`` per turn of its loop).
/// 2,000 peers by default; `MAT_SCALE_BENCH_PEERS=100000` for the figures in
/// docs/benchmarks.md ("Scale"), which it prints.
@Suite struct MoveScaleTests {
    static let peers = Int(ProcessInfo.processInfo.environment["MAT_SCALE_BENCH_PEERS"] ?? "") ?? 2_000

    static func hoa(_ index: Int) -> IPAddress { .v6(IPv6Address(high: 0x2001_0db8_4000_0000, low: UInt64(index))) }
    static func moa(_ index: Int) -> IPAddress { .v6(IPv6Address(high: 0x2001_0db8_4001_0000, low: UInt64(index))) }

    @Test func aMovesCriticalPathAndTheEnginesHolds() throws {
        let count = Self.peers
        let before = NodeAddresses(home6: IPv6Address("2001:db8:100::10")!, mobile6: IPv6Address("2001:db8:1::10")!)
        let after = NodeAddresses(home6: IPv6Address("2001:db8:100::10")!, mobile6: IPv6Address("2001:db8:2::10")!)
        let active: [AlertQueue.Peer] = (0..<count).map { (hoa: Self.hoa($0), moa: Self.moa($0)) }

        // The service thread, from the reading to the first alerts.
        let start = MonotonicClock.nanoseconds()
        let concerned = PeerHolds.concerned(active, from: before, to: after, force: false)
        var holds = PeerHolds()
        let commands = holds.hold(concerned.map(\.hoa), now: 1_000)
        let held = MonotonicClock.nanoseconds()
        var queue = AlertQueue()
        queue.startRound(with: concerned, first: [Self.hoa(0)], recentSince: 0, lastHeard: { _ in 0 })
        let first = queue.next()
        let queued = MonotonicClock.nanoseconds()
        #expect(commands.count == count)
        #expect(first.count == min(count, AlertQueue.perTurn))
        #expect(first.first?.hoa == Self.hoa(0), "the configured peer first")

        // The engine thread: one hold per peer, in one batch.
        var table = MappingTable(ipv6Capacity: count)
        for index in 0..<count { try table.insert(PeerMapping(hoa: Self.hoa(index), moas: [MoABinding(address: Self.moa(index))])) }
        var processor = PacketProcessor(table: table, addresses: after)
        // As the engine applies them: at most Engine.commandsPerTurn per turn of its loop.
        var longestTurn: UInt64 = 0
        let engineStart = MonotonicClock.nanoseconds()
        processor.held.reserveCapacity(commands.count)
        for turn in stride(from: 0, to: commands.count, by: Engine.commandsPerTurn) {
            let turnStart = MonotonicClock.nanoseconds()
            for command in commands[turn..<min(commands.count, turn + Engine.commandsPerTurn)] {
                #expect(processor.apply(command) == nil)
            }
            longestTurn = max(longestTurn, MonotonicClock.nanoseconds() - turnStart)
        }
        let engineEnd = MonotonicClock.nanoseconds()
        #expect(processor.held.count == count)

        let ms = { (from: UInt64, to: UInt64) in String(format: "%.1f", Double(to - from) / 1e6) }
        print("move-scale: peers=\(count) concerned_and_held_ms=\(ms(start, held)) queue_round_ms=\(ms(held, queued)) "
            + "service_before_first_alert_ms=\(ms(start, queued)) engine_holds_ms=\(ms(engineStart, engineEnd)) engine_longest_turn_ms=\(ms(0, longestTurn))")
    }
}
