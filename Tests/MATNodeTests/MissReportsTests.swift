import MATPacket
import Testing
@testable import MATNode

/// Which unknown HoAs the engine reports for a lookup (``MissReports``).
@Suite struct MissReportsTests {
    static let hoa = IPAddress("198.51.100.40")!, other = IPAddress("198.51.100.41")!

    /// `report` bound outside `#expect`, which cannot call a mutating member.
    func ask(_ reports: inout MissReports, _ hoa: IPAddress, now: UInt64) -> Bool {
        reports.report(hoa, now: now)
    }

    @Test func aFlowToAnUnknownHoAAsksOnceASecond() {
        var reports = MissReports()
        #expect(ask(&reports, Self.hoa, now: 10_000))
        #expect(!ask(&reports, Self.hoa, now: 10_001))
        #expect(!ask(&reports, Self.hoa, now: 10_999))
        #expect(ask(&reports, Self.other, now: 10_999), "each HoA has its own second")
        #expect(ask(&reports, Self.hoa, now: 11_000))
    }

    @Test func aFloodOfHoAsStartsTheMemoryAfresh() {
        var reports = MissReports()
        for index in 0...MissReports.limit {
            #expect(ask(&reports, .v4(IPv4Address(198, 51, UInt8(index >> 8), UInt8(index & 0xFF))), now: 0))
        }
        #expect(!ask(&reports, .v4(IPv4Address(198, 51, 0, 0)), now: 0))
        #expect(ask(&reports, Self.hoa, now: 0))
        #expect(ask(&reports, .v4(IPv4Address(198, 51, 0, 0)), now: 0), "forgotten when the memory started afresh")
    }
}
