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

    /// 10,000 random HoAs in 10 s get the burst plus the rate for 10 s, not 10,000 lookups
    /// (all but the reserve: each is reported once, none is persistent).
    @Test func tenThousandRandomHoAsGetTheBoundNotALookupEach() {
        var lookups = FirstPacketLookups()
        var granted = 0
        for index in 0..<10_000 {
            let now = 1_000_000 + UInt64(index)  // one a millisecond
            if decide(&lookups, Self.randomHoA(), now: now) == .lookUp { granted += 1 }
        }
        let bound = Int(FirstPacketLookups.burst - FirstPacketLookups.reserve + FirstPacketLookups.rate * 10)
        #expect(granted <= bound && granted >= bound - 1, "\(granted) lookups, bound \(bound)")
    }

    /// The attack of docs/security.md (the local user) against a genuine first contact: a
    /// flood of 3,000 new random HoAs a second for 60 s, and a flow to a genuine HoA that
    /// starts 10 s in (the engine reports it once a second while its packets wait). The
    /// flood drains the bucket to the reserve, so the genuine HoA is deferred at its first
    /// report and looked up at its second, from the reserve; the flood got no more than
    /// the bound. Before the reserve, each token went to whichever report came first after
    /// it was earned: 150 of the flood's for each of the genuine HoA's.
    @Test func aFloodOfRandomHoAsDoesNotStarveAGenuineFlow() {
        var lookups = FirstPacketLookups()
        let genuine = IPAddress("198.51.100.20")!
        var floodGranted = 0
        var genuineReports: [UInt64] = []
        var genuineAsked: UInt64?
        for now in UInt64(0)..<60_000 {
            for _ in 0..<3 where decide(&lookups, Self.randomHoA(), now: now) == .lookUp { floodGranted += 1 }
            guard genuineAsked == nil, now >= 10_000, now % 1_000 == 0 else { continue }
            genuineReports.append(now)
            if decide(&lookups, genuine, now: now) == .lookUp { genuineAsked = now }
        }
        #expect(genuineAsked == 11_000, "reported at \(genuineReports), asked at \(String(describing: genuineAsked))")
        let bound = Int(FirstPacketLookups.burst + FirstPacketLookups.rate * 60)
        #expect(floodGranted + 1 <= bound && floodGranted >= bound - Int(FirstPacketLookups.reserve) - 2,
                "the flood got \(floodGranted) lookups, bound \(bound)")
    }

    /// A HoA looked up is not persistent for 30 to 60 s (an attacker repeating the same
    /// HoAs gets each one lookup from the reserve per 30 s at most); a HoA reported once
    /// is not persistent, nor one whose previous report is over 3 s old.
    @Test func onlyAHoAReportedAgainSoonAndNotLookedUpLatelyIsPersistent() {
        var lookups = FirstPacketLookups()
        let hoa = IPAddress("198.51.100.30")!, late = IPAddress("198.51.100.31")!
        /// New HoAs take every token above the reserve at `now`.
        func drain(at now: UInt64) {
            for _ in 0..<100 where decide(&lookups, Self.randomHoA(), now: now) == .lookUp {}
            #expect(decide(&lookups, Self.randomHoA(), now: now) == .overBudget)
        }
        drain(at: 0)
        #expect(decide(&lookups, hoa, now: 0) == .overBudget, "a first report")
        #expect(decide(&lookups, late, now: 0) == .overBudget)
        drain(at: 1_000)
        #expect(decide(&lookups, hoa, now: 1_000) == .lookUp, "reported again: from the reserve")
        drain(at: 3_100)
        #expect(decide(&lookups, late, now: 3_100) == .overBudget, "its report over 3 s ago is forgotten")
        // `hoa`, looked up at 1 s, reported every second while new HoAs drain the bucket.
        for now in stride(from: UInt64(3_500), to: 30_000, by: 1_000) {
            drain(at: now)
            #expect(decide(&lookups, hoa, now: now) == .overBudget, "looked up \((now - 1_000) / 1_000) s ago")
        }
    }

    /// ``RecentHoAs`` forgets nothing within a period, everything after two, and takes
    /// 18,000 HoAs in two periods with few false positives.
    @Test func recentHoAsRemembersForOneToTwoPeriods() {
        var recent = RecentHoAs(period: 1_000)
        let hoas = (0..<9_000).map { _ in Self.randomHoA() }
        for hoa in hoas { recent.insert(hoa, now: 0) }
        let within = hoas.filter { recent.contains($0, now: 999) }.count
        for _ in 0..<9_000 { recent.insert(Self.randomHoA(), now: 1_000) }
        let older = hoas.filter { recent.contains($0, now: 1_999) }.count
        #expect(within == hoas.count && older == hoas.count, "in the current generation, then the older one")
        let strangers = (0..<100_000).filter { _ in recent.contains(Self.randomHoA(), now: 1_999) }.count
        #expect(strangers < 100, "\(strangers) false positives in 100,000 (58 expected)")
        let after = hoas.filter { recent.contains($0, now: 2_000) }.count
        #expect(after < 10, "two periods on: forgotten (\(after) false positives, 2.6 expected)")
        recent.insert(hoas[0], now: 2_000)
        let silent = recent.contains(hoas[0], now: 4_000) || recent.contains(hoas[1], now: 4_000)
        #expect(!silent, "two periods of silence forget both generations")
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
        for index in 0..<Int(FirstPacketLookups.burst - FirstPacketLookups.reserve) {
            #expect(decide(&lookups, Self.randomHoA(), now: 0) == .lookUp, "token \(index) of a full burst")
        }
        #expect(decide(&lookups, Self.randomHoA(), now: 0) == .overBudget, "the reserve is for persistent HoAs")
    }

    /// The clock going back (or standing) gives no tokens.
    @Test func aClockThatGoesBackGivesNothing() {
        var lookups = FirstPacketLookups()
        for _ in 0..<Int(FirstPacketLookups.burst - FirstPacketLookups.reserve) { _ = decide(&lookups, Self.randomHoA(), now: 50_000) }
        #expect(decide(&lookups, Self.randomHoA(), now: 10_000) == .overBudget)
        #expect(decide(&lookups, Self.randomHoA(), now: 50_000) == .overBudget)
        #expect(decide(&lookups, Self.randomHoA(), now: 50_050) == .lookUp, "50 ms at 20/s is one token")
    }
}
