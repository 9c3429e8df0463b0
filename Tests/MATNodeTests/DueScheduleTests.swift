import MATPacket
@testable import MATNode
import Testing

/// The service's timed work per peer, found through deadline heaps (``DueQueue``) instead
/// of walks over every peer: over random schedules of every change the service makes, each
/// structure must say what the walk it replaced says (`PerPeerWalks.swift`), turn by turn.
@Suite struct DueScheduleTests {
    static func hoa(_ n: Int) -> IPAddress {
        n % 3 == 0 ? .v4(IPv4Address(0xC633_6400 | UInt32(n))) : .v6(IPv6Address(high: 0x2001_0db8_0100_0000, low: UInt64(n)))
    }
    static func moa(_ n: Int) -> IPAddress { .v6(IPv6Address(high: 0x2001_0db8_00c0_0000, low: UInt64(n))) }

    @Test(arguments: [1, 2, 3, 4, 5, 6])
    func idleProbesComeWhenTheWalkSaysTheyAreDue(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var idle = IdleProbing(idleAfter: 1_000), walk = IdleProbingWalk(idleAfter: 1_000)
        var now: UInt64 = 0
        for step in 0..<3_000 {
            let peer = Self.hoa(random.below(30))
            switch random.below(9) {
            case 0, 1:
                idle.track(peer, now: now)
                walk.track(peer, now: now)
            case 2:
                idle.heard(peer, now: now)
                walk.heard(peer, now: now)
            case 3, 4:
                // The fast path's reports come late: an older time too.
                let at = now - min(now, UInt64(random.below(3_000)))
                idle.dataArrived(from: peer, now: at)
                walk.dataArrived(from: peer, now: at)
            case 5:
                idle.forget(peer)
                walk.forget(peer)
            case 6:
                idle.roundNotStarted(peer)
                walk.roundNotStarted(peer)
            case 7:
                let dropped = idle.roundFailed(peer, now: now)
                #expect(dropped == walk.roundFailed(peer, now: now), "seed \(seed) step \(step)")
            default:
                now += UInt64(random.below(600))
                let due = idle.due(at: now)
                #expect(due == walk.due(at: now), "seed \(seed) step \(step)")
            }
            #expect(idle.nextDue == walk.nextDue, "seed \(seed) step \(step)")
            #expect(idle.probing == walk.probing && idle.lastHeard == walk.lastHeard)
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6])
    func refreshesComeWhenTheWalkSaysTheyAreDue(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var learned = LearnedPeers()
        var walk: [IPAddress: UInt64] = [:]
        var now: UInt64 = 0
        for step in 0..<3_000 {
            let peer = Self.hoa(random.below(40))
            switch random.below(8) {
            case 0, 1:
                let at = now + UInt64(random.below(5_000))
                learned[peer] = (PeerMapping(hoa: peer, moas: [MoABinding(address: Self.moa(random.below(20)))]), at)
                walk[peer] = at
            case 2:
                // A move: the mapping changes, its refresh time not.
                guard let entry = learned[peer] else { continue }
                learned[peer] = (PeerMapping(hoa: peer, moas: [MoABinding(address: Self.moa(random.below(20)))]), entry.expiresAt)
            case 3:
                let at = now + UInt64(random.below(5_000))
                learned[peer]?.expiresAt = at
                if walk[peer] != nil { walk[peer] = at }
            case 4:
                learned.refreshFailed(peer, now: now)
                if walk[peer] != nil { walk[peer] = now + MappingRefresh.retryAfterFailure }
            case 5:
                learned[peer] = nil
                walk[peer] = nil
            default:
                now += UInt64(random.below(1_500))
                let expected = Set(walk.filter { $0.value <= now }.map(\.key))
                for hoa in expected { walk[hoa] = now + MappingRefresh.answerWait }
                let due = learned.takeDueRefreshes(now: now)
                #expect(Set(due) == expected && due.count == expected.count, "seed \(seed) step \(step)")
            }
            #expect(learned.refreshes.nextDeadline == walk.values.min(), "seed \(seed) step \(step)")
            #expect(Dictionary(uniqueKeysWithValues: learned.map { ($0.key, $0.value.expiresAt) }) == walk)
        }
        // The reference walk over the LearnedPeers itself, at the end.
        var copy = learned
        #expect(Set(learned.takeDueRefreshes(now: now + 100_000)) == Set(dueRefreshesWalk(&copy, now: now + 100_000)))
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6])
    func publicAddressHoldsEndWhenTheWalkSaysTheyDo(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var waits = PublicAddressWaits(), walk = PublicAddressWaitsWalk()
        var now: UInt64 = 0
        for step in 0..<2_000 {
            switch random.below(6) {
            case 0, 1:
                let peers = (0..<(1 + random.below(4))).map { _ in
                    let n = random.below(30)
                    return (hoa: Self.hoa(n), moa: Self.moa(n + random.below(2)))
                }
                waits.wait(peers, now: now)
                walk.wait(peers.map(\.hoa), now: now)
            case 2:
                let family: AddressFamily = random.below(2) == 0 ? .ipv4 : .ipv6
                let answered = waits.answered(family)
                #expect(Set(answered.map(\.hoa)) == walk.answered(family), "seed \(seed) step \(step)")
            default:
                now += UInt64(random.below(4_000))
                let expired = waits.expire(now: now)
                let expected = walk.expire(now: now)
                #expect(Set(expired) == Set(expected) && expired.count == expected.count, "seed \(seed) step \(step)")
            }
            let held = waits.waiting.values.joined().filter(\.held).map(\.hoa)
            #expect(Set(held) == Set(walk.waiting.filter(\.value.held).keys), "seed \(seed) step \(step)")
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6])
    func encapEndpointsExpireWhenTheWalkSaysTheyDo(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var endpoints = EncapEndpoints(lifetime: 10_000), walk = EncapEndpointsWalk(lifetime: 10_000)
        var now: UInt64 = 0
        for step in 0..<3_000 {
            let moa = Self.moa(random.below(25))
            switch random.below(8) {
            case 0, 1, 2:
                let port = UInt16(40_000 + random.below(3))
                endpoints.heard(moa, port: port, now: now)
                walk.heard(moa, port: port, now: now)
            case 3:
                endpoints.start(moa, port: 4_500, now: now)
                walk.start(moa, port: 4_500, now: now)
            case 4:
                endpoints.stop(moa)
                walk.stop(moa)
            default:
                now += UInt64(random.below(4_000))
                let gone = endpoints.expire(now: now)
                let expected = walk.expire(now: now)
                #expect(Set(gone) == Set(expected) && gone.count == expected.count, "seed \(seed) step \(step)")
            }
            #expect(endpoints.moas == Set(walk.ports.keys), "seed \(seed) step \(step)")
            for (moa, entry) in walk.ports { #expect(endpoints.port(for: moa) == entry.port) }
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6])
    func settledMoAsFollowTheirPeersChanges(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var settled = SettledMoAs()
        var walk: [IPAddress: IPAddress] = [:]
        for step in 0..<2_000 {
            let before = Set(walk.values)
            let changes = (0..<(1 + random.below(6))).map { _ -> (hoa: IPAddress, moa: IPAddress?) in
                (hoa: Self.hoa(random.below(20)), moa: random.below(3) == 0 ? nil : Self.moa(random.below(8)))
            }
            for change in changes { walk[change.hoa] = change.moa }
            let after = Set(walk.values)
            let (appeared, vanished) = settled.update(changes)
            #expect(Set(appeared) == after.subtracting(before) && appeared.count == Set(appeared).count, "seed \(seed) step \(step)")
            #expect(Set(vanished) == before.subtracting(after) && vanished.count == Set(vanished).count, "seed \(seed) step \(step)")
            #expect(settled.moas == after)
        }
    }

    /// The policy fed the MoAs' changes (as the service does) against the policy that took
    /// every MoA each turn and walked every peer: the same actions, deadlines and modes.
    @Test(arguments: [EncapSetting.auto, .always], [1, 2, 3] as [UInt64])
    func theEncapPolicyActsAsTheWalkDid(setting: EncapSetting, seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let nonces = (NonceCounter(), NonceCounter())
        var policy = EncapPolicy(setting: setting, keepaliveInterval: 5_000, reprobeInterval: 20_000,
                                 makeNonce: { [counter = nonces.0] in counter.next() })
        var walk = EncapPolicyWalk(setting: setting, keepaliveInterval: 5_000, reprobeInterval: 20_000,
                                   makeNonce: { [counter = nonces.1] in counter.next() })
        var settled: Set<IPAddress> = [], behindNAT = false, now: UInt64 = 0
        var sentNonces: [(IPAddress, [UInt8])] = []
        let sorted = { (actions: [EncapPolicy.Action]) in actions.map { "\($0)" }.sorted() }
        for step in 0..<2_000 {
            switch random.below(10) {
            case 0, 1, 2, 3:
                let before = settled
                for _ in 0..<(1 + random.below(3)) {
                    let moa = Self.moa(random.below(25))
                    if settled.remove(moa) == nil { settled.insert(moa) }
                }
                let (added, gone) = (settled.subtracting(before), before.subtracting(settled))
                let actions = policy.follow(appeared: added, vanished: gone, now: now)
                #expect(sorted(actions) == sorted(walk.track(settled, behindNAT: behindNAT, now: now)), "seed \(seed) step \(step)")
                for case .sendProbe(let moa, let nonce) in actions { sentNonces.append((moa, nonce)) }
            case 4:
                behindNAT.toggle()
                let actions = policy.track(settled, behindNAT: behindNAT, now: now)
                #expect(sorted(actions) == sorted(walk.track(settled, behindNAT: behindNAT, now: now)), "seed \(seed) step \(step)")
                for case .sendProbe(let moa, let nonce) in actions { sentNonces.append((moa, nonce)) }
            case 5:
                guard !sentNonces.isEmpty else { continue }
                let (moa, nonce) = sentNonces[random.below(sentNonces.count)]
                #expect(policy.probeAnswered(from: moa, nonce: nonce, now: now) == walk.probeAnswered(from: moa, nonce: nonce, now: now))
            default:
                now += UInt64(random.below(2_500))
                let actions = policy.tick(now: now)
                #expect(actions == walk.tick(now: now), "seed \(seed) step \(step)")
                for case .sendProbe(let moa, let nonce) in actions { sentNonces.append((moa, nonce)) }
            }
            #expect(policy.nextDeadline == walk.nextDeadline, "seed \(seed) step \(step)")
            for n in 0..<25 { #expect(policy.mode(of: Self.moa(n)) == walk.mode(of: Self.moa(n))) }
        }
    }
}

/// Nonces 1, 2, 3... so the two policies under comparison draw the same ones.
final class NonceCounter: @unchecked Sendable {
    private var value: UInt32 = 0
    func next() -> [UInt8] {
        value += 1
        return withUnsafeBytes(of: value.bigEndian) { Array($0) } + [UInt8](repeating: 0, count: 12)
    }
}
