import Foundation
@testable import MATNode
import MATPacket
import MATSystem
import Testing

/// What a move costs before its first alert goes out, with many learned peers, and the
/// longest turn it then takes: the pure parts of `MappingService.followUplinks` and of the
/// turns that gather the round (``AlertQueue``, ``PeerHolds``), and the engine's part.
/// "before" runs the per-peer path moves took until 2026-12-07 (one hold per peer in the
/// service and in the engine, the round sorted whole, all before the first alert) on the
/// same types, for the comparison in docs/benchmarks.md ("Scale").
/// 2,000 peers by default; `MAT_SCALE_BENCH_PEERS=100000` for the figures, which it prints.
@Suite struct MoveScaleTests {
    static let peers = Int(ProcessInfo.processInfo.environment["MAT_SCALE_BENCH_PEERS"] ?? "") ?? 2_000

    static func hoa(_ index: Int) -> IPAddress { .v6(IPv6Address(high: 0x2001_0db8_4000_0000, low: UInt64(index))) }
    static func moa(_ index: Int) -> IPAddress { .v6(IPv6Address(high: 0x2001_0db8_4001_0000, low: UInt64(index))) }

    static let before = NodeAddresses(home6: IPv6Address("2001:db8:100::10")!, mobile6: IPv6Address("2001:db8:1::10")!)
    static let after = NodeAddresses(home6: IPv6Address("2001:db8:100::10")!, mobile6: IPv6Address("2001:db8:2::10")!)

    static func ms(_ nanoseconds: UInt64) -> String { String(format: "%.1f", Double(nanoseconds) / 1e6) }

    /// The learned peers, peer 0 configured too, and when each was last heard from (a
    /// tenth of them within the idle period).
    static func learned(_ count: Int) -> (learned: LearnedPeers, heard: [IPAddress: UInt64]) {
        var learned = LearnedPeers()
        var heard: [IPAddress: UInt64] = [:]
        for index in 0..<count {
            learned[hoa(index)] = (PeerMapping(hoa: hoa(index), moas: [MoABinding(address: moa(index))]), 0)
            heard[hoa(index)] = index % 10 == 0 ? 50_000 + UInt64(index) : 1_000
        }
        return (learned, heard)
    }

    @Test func aMoveSendsItsFirstAlertsBeforeAnyWorkPerPeer() throws {
        let count = Self.peers
        let (learned, heard) = Self.learned(count)
        let configured = Self.hoa(0)
        let lastHeard = { (hoa: IPAddress) in heard[hoa] ?? 0 }
        let recentSince: UInt64 = 40_000

        // The move's turn, from the reading to its first alerts, then the HoAs handed over.
        let start = MonotonicClock.nanoseconds()
        var holds = PeerHolds()
        let families = PeerHolds.families(from: Self.before, to: Self.after, force: false)
        let commands = holds.move(families, now: 1_000)
        var queue = AlertQueue()
        let round = queue.begin(for: families)
        holds.join([configured])
        queue.add([(hoa: configured, moa: Self.moa(0))], to: round, first: [configured], recentSince: recentSince, lastHeard: lastHeard)
        let first = queue.next()
        let firstAlert = MonotonicClock.nanoseconds()
        holds.reserve(learned.count)
        queue.gather(Array(learned.keys))
        let moveTurnEnd = MonotonicClock.nanoseconds()
        #expect(commands.count == 1, "one command for the family, whatever the number of peers")
        #expect(first.map(\.hoa) == [configured])

        // The turns after it: a slice gathered per turn, then the alerts, `perTurn` a turn.
        var longestTurn = moveTurnEnd - start, turns = 1
        var alerted = first.count, learnedAlertAfter: UInt64?
        while !queue.isEmpty {
            let turnStart = MonotonicClock.nanoseconds()
            let batch = queue.next()
            if learnedAlertAfter == nil && !batch.isEmpty { learnedAlertAfter = turnStart - start }
            alerted += batch.count
            if let slice = queue.nextToGather() {
                var peers: [AlertQueue.Peer] = []
                peers.reserveCapacity(slice.hoas.count)
                for hoa in slice.hoas where slice.families.contains(hoa.family) && hoa != configured {
                    guard let moa = learned[hoa]?.mapping.moas.first?.address else { continue }
                    peers.append((hoa: hoa, moa: moa))
                }
                holds.join(peers.map(\.hoa))
                queue.add(peers, to: slice.round, first: [configured], recentSince: recentSince, lastHeard: lastHeard)
                if slice.isLast {
                    let end = holds.gathered(.ipv6)
                    #expect(end == nil, "every peer is held")
                }
            }
            longestTurn = max(longestTurn, MonotonicClock.nanoseconds() - turnStart)
            turns += 1
        }
        #expect(alerted == count)
        #expect(holds.since.count == count)

        print("move-scale: peers=\(count) path=after first_alert_ms=\(Self.ms(firstAlert - start)) "
            + "move_turn_ms=\(Self.ms(moveTurnEnd - start)) longest_service_turn_ms=\(Self.ms(longestTurn)) "
            + "first_learned_alert_ms=\(Self.ms(learnedAlertAfter ?? 0)) turns=\(turns) engine_commands=\(commands.count)")
    }

    /// The path before the family-wide hold, on the same types: one hold per peer in the
    /// service and the engine and the whole round ordered, all before the first alert.
    @Test func thePerPeerPathItReplaced() throws {
        let count = Self.peers
        let (learned, heard) = Self.learned(count)
        let configured = Self.hoa(0)

        let start = MonotonicClock.nanoseconds()
        var active: [IPAddress: IPAddress] = [:]
        for (hoa, entry) in learned { active[hoa] = entry.mapping.moas.first?.address }
        let families = PeerHolds.families(from: Self.before, to: Self.after, force: false)
        let concerned = active.map { (hoa: $0.key, moa: $0.value) }.filter { families.contains($0.hoa.family) }
        var since: [IPAddress: UInt64] = [:]
        since.reserveCapacity(concerned.count)
        for peer in concerned { since[peer.hoa] = 1_000 }
        let commands: [PacketProcessor.Command] = concerned.map { .hold($0.hoa) }
        var queue = AlertQueue()
        queue.startRound(with: concerned, first: [configured], recentSince: 40_000, lastHeard: { heard[$0] ?? 0 })
        let first = queue.next()
        let firstAlert = MonotonicClock.nanoseconds()
        #expect(first.first?.hoa == configured)
        #expect(commands.count == count)

        // The engine's part: one hold per peer, at most Engine.commandsPerTurn a turn.
        var table = MappingTable(ipv6Capacity: count)
        for index in 0..<count { try table.insert(PeerMapping(hoa: Self.hoa(index), moas: [MoABinding(address: Self.moa(index))])) }
        var processor = PacketProcessor(table: table, addresses: Self.after)
        var longestTurn: UInt64 = 0
        processor.held.reserveCapacity(commands.count)
        for turn in stride(from: 0, to: commands.count, by: Engine.commandsPerTurn) {
            let turnStart = MonotonicClock.nanoseconds()
            for command in commands[turn..<min(commands.count, turn + Engine.commandsPerTurn)] {
                #expect(processor.apply(command) == nil)
            }
            longestTurn = max(longestTurn, MonotonicClock.nanoseconds() - turnStart)
        }
        #expect(processor.held.count == count)
        print("move-scale: peers=\(count) path=before first_alert_ms=\(Self.ms(firstAlert - start)) "
            + "engine_commands=\(commands.count) engine_longest_turn_ms=\(Self.ms(longestTurn))")
    }

    /// The diversion's part of a move before its first alert (``HostSetup``): "before", what
    /// `divertInbound` computed from every peer's MoA when the MoA changed (the list of
    /// them, the set, both tables' differences with what they held, the MoAs in UDP among
    /// them); "after", what `moveDiversion` computes from the MoAs that changed since. The
    /// nftables transaction (the rules) is the same for both and not timed here; the
    /// IPv6 next hops' route lookups (nftables path), one per IPv6 peer, now follow the
    /// alerts (`finishMove`).
    @Test func theDiversionOfAMoveBeforeItsFirstAlert() {
        let count = Self.peers
        let (learned, _) = Self.learned(count)
        let configured: Set<IPAddress> = [IPAddress("192.0.2.77")!]
        let table = "matd_mat0"
        let held = PeerMoASets(addresses: configured.union(learned.moas))
        let encapsulated: Set<IPAddress> = [Self.moa(7)]

        let start = MonotonicClock.nanoseconds()
        let peerMoAs = Array(configured.union(learned.moas))
        let sets = PeerMoASets(addresses: Set(peerMoAs))
        let commands = ["inet", "netdev"].flatMap { held.changes(to: sets, tableFamily: $0, table: table, quoted: $0 == "netdev") }
        let inUDP = encapsulated.intersection(sets.addresses)
        let before = MonotonicClock.nanoseconds() - start

        let moved = MonotonicClock.nanoseconds()
        var kept = held
        let (adding, removing): (Set<IPAddress>, Set<IPAddress>) = ([], [])
        let deleted = removing.intersection(kept.addresses), added = adding.subtracting(kept.addresses)
        kept.addresses.subtract(deleted)
        kept.addresses.formUnion(added)
        let changes = ["inet", "netdev"].flatMap {
            PeerMoASets.elements("delete", deleted, tableFamily: $0, table: table, quoted: $0 == "netdev")
                + PeerMoASets.elements("add", added, tableFamily: $0, table: table, quoted: $0 == "netdev")
        }
        let inUDPAfter = encapsulated.filter { kept.addresses.contains($0) }
        let after = MonotonicClock.nanoseconds() - moved

        #expect(commands.isEmpty && changes.isEmpty, "a move changes no peer")
        #expect(inUDP == inUDPAfter && kept == sets)
        print("move-scale: peers=\(count) diversion_before_first_alert_ms before=\(Self.ms(before)) after=\(Self.ms(after)) "
            + String(format: "ratio=%.0f", Double(before) / Double(max(1, after))))
    }
}
