@testable import MATNode
import MATPacket
import Testing

/// The relay's bounded IMS lookups of its clients' keys (``RelayKeyLookups``), with the
/// clock in the test's hands.
@Suite struct RelayKeyLookupsTests {
    let domains = [IPPrefix("198.51.100.0/24")!]
    func hoa(_ n: Int) -> IPAddress { IPAddress("198.51.100.\(n)")! }

    /// Only HoAs in the domain; each once until answered and then once per 5 s.
    @Test func eachHoAInTheDomainIsLookedUpOncePerFiveSeconds() {
        var lookups = RelayKeyLookups()
        #expect(lookups.request(IPAddress("203.0.113.9")!, domains: domains, now: 0) == .outsideDomain)
        #expect(lookups.request(hoa(10), domains: domains, now: 0) == .lookUp)
        #expect(lookups.request(hoa(10), domains: domains, now: 100) == .tooSoon)
        let answers = [lookups.answered(hoa(10)), lookups.answered(hoa(10)), lookups.answered(hoa(11))]
        #expect(answers == [true, false, false])
        #expect(lookups.request(hoa(10), domains: domains, now: 4_999) == .tooSoon)
        #expect(lookups.request(hoa(10), domains: domains, now: 5_000) == .lookUp)
        // On its way for longer than 5 s: still one at a time.
        #expect(lookups.request(hoa(10), domains: domains, now: 20_000) == .tooSoon)
        #expect(lookups.started == 2 && lookups.overBudget == 0)
    }

    /// A flood of registrations naming random HoAs costs at most the burst at once and
    /// the rate a second after, and never more than 64 lookups on their way.
    @Test func aFloodOfUnknownHoAsIsBoundedByTheRateAndThePending() {
        var lookups = RelayKeyLookups(rate: 10, burst: 20)
        let first = (1...200).filter { lookups.request(hoa($0), domains: domains, now: 0) == .lookUp }
        #expect(first.count == 20 && lookups.overBudget == 180)
        for n in first { _ = lookups.answered(hoa(n)) }
        let second = (21...200).filter { lookups.request(hoa($0), domains: domains, now: 1_000) == .lookUp }
        #expect(second.count == 10)
        var pendingBound = RelayKeyLookups(rate: 1_000, burst: 1_000)
        let taken = (1...100).filter { pendingBound.request(hoa($0), domains: domains, now: 0) == .lookUp }
        #expect(taken.count == RelayKeyLookups.maximumPending && pendingBound.pending.count == RelayKeyLookups.maximumPending)
    }
}
