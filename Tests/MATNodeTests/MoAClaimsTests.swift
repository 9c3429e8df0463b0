import MATPacket
@testable import MATNode
import Testing

/// ``MoAClaims``, the index of which learned HoAs claim each MoA, kept by ``LearnedPeers``:
/// it must say what a walk over every learned mapping says, after any sequence of changes.
@Suite struct MoAClaimsTests {
    static func hoa(_ n: Int) -> IPAddress { .v6(IPv6Address(high: 0x2001_0db8_0100_0000, low: UInt64(n))) }
    static func moa(_ n: Int) -> IPAddress { .v6(IPv6Address(high: 0x2001_0db8_00c0_0000, low: UInt64(n))) }

    static func entry(_ hoa: IPAddress, _ moas: [IPAddress]) -> LearnedPeers.Entry {
        (PeerMapping(hoa: hoa, moas: moas.map { MoABinding(address: $0) }), 0)
    }

    /// What a walk over every learned mapping says: the HoAs other than `hoa` naming any of `moas`.
    static func bruteForce(_ learned: LearnedPeers, claiming moas: [IPAddress], besides hoa: IPAddress) -> Set<IPAddress> {
        Set(learned.filter { $0.key != hoa && $0.value.mapping.moas.contains { moas.contains($0.address) } }.map(\.key))
    }

    @Test func aSharedMoAHasEveryClaimantInTheOrderTheyClaimedIt() {
        var claims = MoAClaims()
        let first = claims.claim(Self.moa(1), by: Self.hoa(1))
        let second = claims.claim(Self.moa(1), by: Self.hoa(2))
        let third = claims.claim(Self.moa(1), by: Self.hoa(3))
        let again = claims.claim(Self.moa(1), by: Self.hoa(2))
        #expect(first && !second && !third)
        #expect(!again, "a second claim by the same HoA changes nothing")
        #expect(claims.claimants(of: Self.moa(1)) == [Self.hoa(1), Self.hoa(2), Self.hoa(3)])
        let middle = claims.release(Self.moa(1), by: Self.hoa(2))
        let stranger = claims.release(Self.moa(1), by: Self.hoa(9))
        #expect(!middle && !stranger, "not the last claim; not a claimant")
        #expect(claims.claimants(of: Self.moa(1)) == [Self.hoa(1), Self.hoa(3)])
        let oldest = claims.release(Self.moa(1), by: Self.hoa(1))
        let last = claims.release(Self.moa(1), by: Self.hoa(3))
        #expect(!oldest && last, "the last claim")
        #expect(claims.claimants(of: Self.moa(1)).isEmpty && claims.count == 0)
        let none = claims.release(Self.moa(1), by: Self.hoa(3))
        #expect(!none, "nothing left to release")
    }

    @Test func othersClaimingNamesEachClaimantOnceAndNeverTheProver() {
        var learned = LearnedPeers()
        learned[Self.hoa(1)] = Self.entry(Self.hoa(1), [Self.moa(1), Self.moa(2)])
        learned[Self.hoa(2)] = Self.entry(Self.hoa(2), [Self.moa(2)])
        learned[Self.hoa(3)] = Self.entry(Self.hoa(3), [Self.moa(3)])
        #expect(learned.claims.others(claiming: [Self.moa(1), Self.moa(2)], besides: Self.hoa(2)) == [Self.hoa(1)])
        #expect(learned.claims.others(claiming: [Self.moa(2), Self.moa(1)], besides: Self.hoa(9)) == [Self.hoa(1), Self.hoa(2)])
        #expect(learned.claims.others(claiming: [Self.moa(4)], besides: Self.hoa(9)).isEmpty)
        // A mapping that moves leaves its old MoA's claim and takes the new one's.
        learned[Self.hoa(1)] = Self.entry(Self.hoa(1), [Self.moa(3)])
        #expect(learned.claims.claimants(of: Self.moa(1)).isEmpty)
        #expect(learned.claims.claimants(of: Self.moa(2)) == [Self.hoa(2)])
        #expect(learned.claims.claimants(of: Self.moa(3)) == [Self.hoa(3), Self.hoa(1)])
        learned.removeValue(forKey: Self.hoa(3))
        #expect(learned.claims.claimants(of: Self.moa(3)) == [Self.hoa(1)])
    }

    /// Random changes of every kind the service makes (a new mapping, a move, a MoA
    /// shared or named twice, an expiry only, a removal), each followed by the index
    /// compared with the walk over every mapping for every MoA and some MoA lists.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func theIndexSaysWhatAWalkOverEveryMappingSays(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var learned = LearnedPeers()
        let hoas = (0..<40).map(Self.hoa), moas = (0..<12).map(Self.moa)
        for step in 0..<600 {
            let hoa = hoas[random.below(hoas.count)]
            switch random.below(6) {
            case 0, 1, 2:
                let named = (0..<(1 + random.below(3))).map { _ in moas[random.below(moas.count)] }
                learned[hoa] = Self.entry(hoa, named)
            case 3:
                learned[hoa]?.expiresAt = UInt64(step)
            case 4:
                learned[hoa] = nil
            default:
                learned.removeValue(forKey: hoa)
            }
            for moa in moas {
                let walk = Set(learned.filter { $0.value.mapping.moas.contains { $0.address == moa } }.map(\.key))
                let claimants = learned.claims.claimants(of: moa)
                #expect(Set(claimants) == walk && claimants.count == walk.count, "seed \(seed) step \(step) \(moa)")
            }
            let asked = (0..<(1 + random.below(3))).map { _ in moas[random.below(moas.count)] }
            let prover = hoas[random.below(hoas.count)]
            let others = learned.claims.others(claiming: asked, besides: prover)
            #expect(Set(others) == Self.bruteForce(learned, claiming: asked, besides: prover) && Set(others).count == others.count,
                    "seed \(seed) step \(step)")
            let walked = Set(learned.values.flatMap { $0.mapping.moas.map(\.address) })
            #expect(Set(learned.moas) == walked && learned.claims.count == walked.count, "seed \(seed) step \(step)")
        }
    }
}
