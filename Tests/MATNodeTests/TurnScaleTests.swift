import Foundation
@testable import MATNode
import MATPacket
import MATSystem
import Testing

/// What a turn of the service loop costs with many learned peers and little due, for the
/// timed work per peer: the refresh of mappings, the idle probes, the holds waiting for the
/// IMS's public address, and the UDP encapsulation's keepalives (with `udp-encapsulation =
/// always`, every peer in UDP). "before" runs the walks each turn made until 2026-12-07
/// (`PerPeerWalks.swift`), "after" the deadline heaps (``DueQueue``), on the same state and
/// in the same run, and prints the ratio, for docs/benchmarks.md ("Scale").
/// 2,000 peers by default; `MAT_SCALE_BENCH_PEERS=100000` for the figures.
@Suite struct TurnScaleTests {
    static let peers = MoveScaleTests.peers
    static let hoa = MoveScaleTests.hoa, moa = MoveScaleTests.moa

    /// Nanoseconds per call of `turn`, the mean over `turns` calls at 1 ms apart from `start`.
    static func timePerTurn(_ turns: Int, from start: UInt64, _ turn: (UInt64) -> Void) -> Double {
        let began = MonotonicClock.nanoseconds()
        for index in 0..<turns { turn(start + UInt64(index)) }
        return Double(MonotonicClock.nanoseconds() - began) / Double(turns)
    }

    static func report(_ name: String, before: Double, after: Double) -> String {
        String(format: "%@_before_ms=%.3f %@_after_ms=%.4f %@_ratio=%.0f", name, before / 1e6, name, after / 1e6, name, before / after)
    }

    /// Deadlines spread over a minute from 1 s on, so a turn finds a few peers due.
    static func spread(_ index: Int) -> UInt64 { 1_000 + UInt64(index % 60_000) }

    @Test func aTurnCostsWhatIsDueNotEveryPeer() {
        let count = Self.peers
        var lines: [String] = []
        var total = (before: 0.0, after: 0.0)

        // The refresh of learned mappings.
        var learned = LearnedPeers()
        for index in 0..<count {
            learned[Self.hoa(index)] = (PeerMapping(hoa: Self.hoa(index), moas: [MoABinding(address: Self.moa(index))]), 30_000 + Self.spread(index))
        }
        var walked = learned
        let refreshBefore = Self.timePerTurn(5, from: 31_000) { now in _ = dueRefreshesWalk(&walked, now: now) }
        let refreshAfter = Self.timePerTurn(200, from: 31_000) { now in _ = learned.takeDueRefreshes(now: now) }
        lines.append(Self.report("refresh", before: refreshBefore, after: refreshAfter))

        // The idle probes.
        var idle = IdleProbing(idleAfter: 30_000), idleWalk = IdleProbingWalk(idleAfter: 30_000)
        for index in 0..<count {
            idle.track(Self.hoa(index), now: Self.spread(index))
            idleWalk.track(Self.hoa(index), now: Self.spread(index))
        }
        let idleBefore = Self.timePerTurn(5, from: 31_000) { now in _ = (idleWalk.due(at: now), idleWalk.nextDue) }
        let idleAfter = Self.timePerTurn(200, from: 31_000) { now in _ = (idle.due(at: now), idle.nextDue) }
        lines.append(Self.report("idle", before: idleBefore, after: idleAfter))

        // The holds of a move behind 1:1 NAT waiting for the IMS's answer, gathered over
        // turns (``AlertQueue``), a slice of 2,048 a turn.
        var waits = PublicAddressWaits(), waitsWalk = PublicAddressWaitsWalk()
        for slice in stride(from: 0, to: count, by: 2_048) {
            let peers = (slice..<min(count, slice + 2_048)).map { (hoa: Self.hoa($0), moa: Self.moa($0)) }
            waits.wait(peers, now: UInt64(slice / 2_048))
            waitsWalk.wait(peers.map(\.hoa), now: UInt64(slice / 2_048))
        }
        let waitsBefore = Self.timePerTurn(5, from: PublicAddressWaits.timeout) { now in _ = waitsWalk.expire(now: now) }
        let waitsAfter = Self.timePerTurn(200, from: PublicAddressWaits.timeout) { now in _ = waits.expire(now: now) }
        lines.append(Self.report("public_address_waits", before: waitsBefore, after: waitsAfter))

        // The UDP encapsulation, every peer in UDP: the keepalives spread over the interval.
        let keepalive: UInt64 = 15_000
        var policy = EncapPolicy(setting: .always, keepaliveInterval: keepalive, makeNonce: { [] })
        var policyWalk = EncapPolicyWalk(setting: .always, keepaliveInterval: keepalive, makeNonce: { [] })
        var settled = SettledMoAs()
        for slice in stride(from: 0, to: count, by: 1_000) {
            let at = UInt64(slice / 1_000) * keepalive / UInt64(max(1, count / 1_000))
            let (appeared, _) = settled.update((slice..<min(count, slice + 1_000)).map { (hoa: Self.hoa($0), moa: Self.moa($0)) })
            _ = policy.follow(appeared: appeared, vanished: [], now: at)
        }
        // The walk's peers all started at 0, and its turns are timed before their first
        // keepalive: the walk alone, nothing due (its cost with a few due is higher).
        _ = policyWalk.track(settled.moas, behindNAT: false, now: 0)
        let configured = (hoa: Self.hoa(0), moa: Self.moa(0))
        let encapBefore = Self.timePerTurn(3, from: 1) { now in
            // The turn as it was: every active peer, those not awaiting an ack, their MoAs,
            // the policy told all of them, and its walk for the due ones.
            var active: [IPAddress: IPAddress] = [configured.hoa: configured.moa]
            for (hoa, entry) in learned { active[hoa] = entry.mapping.moas.first?.address }
            let awaiting: Set<IPAddress> = []
            let moas = Set(active.filter { !awaiting.contains($0.key) }.map(\.value))
            _ = (policyWalk.track(moas, behindNAT: false, now: now), policyWalk.tick(now: now), policyWalk.nextDeadline)
        }
        let encapAfter = Self.timePerTurn(200, from: keepalive) { now in
            // The turn now: the peers that changed (the configured one each turn), the due ones.
            _ = settled.update([(hoa: configured.hoa, moa: Optional(configured.moa))])
            _ = (policy.tick(now: now), policy.nextDeadline)
        }
        lines.append(Self.report("encap", before: encapBefore, after: encapAfter))

        total = (refreshBefore + idleBefore + waitsBefore + encapBefore, refreshAfter + idleAfter + waitsAfter + encapAfter)
        print("turn-scale: peers=\(count) " + lines.joined(separator: " ") + " "
            + Self.report("turn", before: total.before, after: total.after))
        #expect(total.after < total.before, "a turn with a few peers due costs less than the walks over all of them")
    }
}
