import MATPacket
import Testing
@testable import MATNode

/// The global bound on lookups for first packets (``FirstPacketLookups``, docs/security.md,
/// the local user): a local user sending to random HoAs in the domain costs the IMS at most
/// the bound, whatever the number of HoAs.
@Suite struct FirstPacketLookupsTests {
    static let domains = [IPPrefix("198.51.100.0/24")!, IPPrefix("2001:db8:100::/64")!]

    /// A random HoA inside the IPv6 domain prefix.
    static func randomHoA() -> IPAddress {
        .v6(IPv6Address(high: 0x2001_0db8_0100_0000, low: UInt64.random(in: 1...UInt64.max)))
    }

    func decide(_ lookups: inout FirstPacketLookups, _ hoa: IPAddress, asked: Bool = false,
                now: UInt64) -> FirstPacketLookups.Decision {
        lookups.decide(hoa, domains: Self.domains, alreadyAsked: asked, now: now)
    }

    /// 10,000 random HoAs in 10 s get the burst plus the rate for 10 s, not 10,000 lookups.
    @Test func tenThousandRandomHoAsGetTheBoundNotALookupEach() {
        var lookups = FirstPacketLookups()
        var granted = 0
        for index in 0..<10_000 {
            let now = 1_000_000 + UInt64(index)  // one a millisecond
            if decide(&lookups, Self.randomHoA(), now: now) == .lookUp { granted += 1 }
        }
        let bound = Int(FirstPacketLookups.burst + FirstPacketLookups.rate * 10)
        #expect(granted <= bound && granted >= bound - 1, "\(granted) lookups, bound \(bound)")
    }

    /// Once the flood stops, the bucket refills: a genuine HoA asked a second later gets
    /// its lookup (its packets make the engine report it again).
    @Test func aGenuineHoADeferredInAFloodIsAskedAtItsNextReport() {
        var lookups = FirstPacketLookups()
        for _ in 0..<100 { _ = decide(&lookups, Self.randomHoA(), now: 5_100) }
        let genuine = IPAddress("198.51.100.20")!
        #expect(decide(&lookups, genuine, now: 5_100) == .overBudget)
        #expect(decide(&lookups, genuine, now: 6_100) == .lookUp, "a second later the rate gave 20 tokens")
    }

    @Test func outsideTheDomainAndAlreadyAskedSpendNothing() {
        var lookups = FirstPacketLookups()
        for index in 0..<1_000 {
            #expect(decide(&lookups, .v4(IPv4Address(192, 0, 2, UInt8(index % 200))), now: 0) == .outsideDomain)
            #expect(decide(&lookups, IPAddress("198.51.100.7")!, asked: true, now: 0) == .alreadyAsked)
        }
        for index in 0..<Int(FirstPacketLookups.burst) {
            #expect(decide(&lookups, Self.randomHoA(), now: 0) == .lookUp, "token \(index) of a full burst")
        }
        #expect(decide(&lookups, Self.randomHoA(), now: 0) == .overBudget)
    }

    /// The clock going back (or standing) gives no tokens.
    @Test func aClockThatGoesBackGivesNothing() {
        var lookups = FirstPacketLookups()
        for _ in 0..<Int(FirstPacketLookups.burst) { _ = decide(&lookups, Self.randomHoA(), now: 50_000) }
        #expect(decide(&lookups, Self.randomHoA(), now: 10_000) == .overBudget)
        #expect(decide(&lookups, Self.randomHoA(), now: 50_000) == .overBudget)
        #expect(decide(&lookups, Self.randomHoA(), now: 50_050) == .lookUp, "50 ms at 20/s is one token")
    }
}
