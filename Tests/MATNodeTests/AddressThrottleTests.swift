import MATPacket
import Testing
@testable import MATNode

/// At most one per address per interval (``AddressThrottle``): the engine's reports of
/// HoAs without a mapping, the service's lookups of unknown keys.
@Suite struct AddressThrottleTests {
    static let hoa = IPAddress("198.51.100.40")!, other = IPAddress("198.51.100.41")!

    /// `take` bound outside `#expect`, which cannot call a mutating member.
    func take(_ throttle: inout AddressThrottle, _ address: IPAddress, now: UInt64) -> Bool {
        throttle.take(address, now: now)
    }

    @Test func aFlowToAnUnknownHoAAsksOnceASecond() {
        var reports = AddressThrottle(interval: 1_000)
        #expect(take(&reports, Self.hoa, now: 10_000))
        #expect(!take(&reports, Self.hoa, now: 10_001))
        #expect(!take(&reports, Self.hoa, now: 10_999))
        #expect(take(&reports, Self.other, now: 10_999), "each address has its own interval")
        #expect(take(&reports, Self.hoa, now: 11_000))
    }

    /// A key lookup checks first and records only once it is sure to go (the signaling's
    /// global budget may still refuse it): a refused one leaves the next free to go.
    @Test func aCheckAloneRecordsNothing() {
        var lookups = AddressThrottle(interval: 5_000)
        #expect(lookups.allows(Self.hoa, now: 0))
        #expect(lookups.allows(Self.hoa, now: 1), "not recorded: still allowed")
        lookups.record(Self.hoa, now: 1)
        #expect(!lookups.allows(Self.hoa, now: 5_000))
        #expect(lookups.allows(Self.hoa, now: 5_001))
    }

    @Test func aFloodOfAddressesStartsTheMemoryAfresh() {
        var reports = AddressThrottle(interval: 1_000, limit: 16)
        for index in 0...16 { #expect(take(&reports, .v4(IPv4Address(198, 51, 0, UInt8(index))), now: 0)) }
        #expect(!take(&reports, .v4(IPv4Address(198, 51, 0, 0)), now: 0))
        #expect(take(&reports, Self.hoa, now: 0))
        #expect(take(&reports, .v4(IPv4Address(198, 51, 0, 0)), now: 0), "forgotten when the memory started afresh")
    }
}
