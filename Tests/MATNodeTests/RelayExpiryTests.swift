#if canImport(Glibc)
import Glibc
#endif
@testable import MATNode
import MATPacket
import Testing

/// A relay's bindings lapse from a queue ordered by deadline (``RelayTable/expire(now:)``),
/// not from a scan of every binding on each registration: the order they lapse in, the
/// entries a re-registration or a takeover leaves behind, the queue's bound, and the cost
/// at 100,000 bindings (docs/benchmarks.md, "Relay").
@Suite struct RelayExpiryTests {
    func binding(_ n: Int) -> RelayTable.Binding {
        RelayTable.Binding(address: .v4(IPv4Address(UInt32(0xCB00_7100) &+ UInt32(n >> 16))), port: UInt16(n & 0xFFFF))
    }

    func hoa(_ n: Int) -> IPAddress { .v4(IPv4Address(UInt32(0xC633_0000) &+ UInt32(n))) }

    @Test func bindingsLapseInDeadlineOrderAndARegistrationAgainPostponesOnlyItsOwn() {
        var table = RelayTable(lifetime: 60_000)
        #expect(table.register([hoa(1)], sequence: 1, from: binding(1), now: 0) == .accepted)
        #expect(table.register([hoa(2)], sequence: 1, from: binding(2), now: 10_000) == .accepted)
        #expect(table.register([hoa(1)], sequence: 2, from: binding(1), now: 30_000) == .accepted)
        #expect(table.register([hoa(3)], sequence: 1, from: binding(3), now: 40_000) == .accepted)
        // Binding 1's first deadline (60,000) is stale: it registered again at 30,000.
        #expect(table.expire(now: 60_000).isEmpty && table.count == 3)
        #expect(table.expire(now: 70_000) == [binding(2)])
        #expect(table.expire(now: 89_999).isEmpty)
        #expect(table.expire(now: 90_000) == [binding(1)])
        #expect(table.expire(now: 100_000) == [binding(3)] && table.count == 0)
        #expect(table.queuedDeadlines == 0)
        // Their sequence numbers went with them: a node back after that starts again anywhere.
        #expect(table.register([hoa(1)], sequence: 1, from: binding(9), now: 100_001) == .accepted)
    }

    @Test func aBindingTakenOverLeavesAStaleEntryThatForgetsNothing() {
        var table = RelayTable(lifetime: 60_000)
        #expect(table.register([hoa(1)], sequence: 1, from: binding(1), now: 0) == .accepted)
        // The NAT chose another port at 1,000; binding 1, left with no HoA, is forgotten.
        #expect(table.register([hoa(1)], sequence: 2, from: binding(2), now: 1_000) == .accepted)
        #expect(table.count == 1)
        // Binding 1 comes back at 2,000 with another HoA: its old deadline (60,000) is not its own.
        #expect(table.register([hoa(5)], sequence: 1, from: binding(1), now: 2_000) == .accepted)
        #expect(table.expire(now: 60_000).isEmpty && table.count == 2)
        #expect(table.expire(now: 61_000) == [binding(2)])
        #expect(table.expire(now: 62_000) == [binding(1)] && table.count == 0)
    }

    @Test func theQueueHoldsAboutOneEntryPerBinding() {
        var table = RelayTable(lifetime: 60_000)
        for n in 0..<100 { _ = table.register([hoa(n)], sequence: 1, from: binding(n), now: 0) }
        // Each binding registers again every 15 s (as a node does, once a keepalive interval)
        // for ten minutes: 4,000 registrations, but never more than 2 n + 64 entries queued.
        var most = 0
        for round in 1...40 {
            for n in 0..<100 {
                #expect(table.register([hoa(n)], sequence: UInt64(round + 1), from: binding(n),
                                       now: UInt64(round) * 15_000) == .accepted)
                most = max(most, table.queuedDeadlines)
            }
        }
        #expect(table.count == 100 && most <= 2 * 100 + 64)
        #expect(table.expire(now: 40 * 15_000 + 60_000).count == 100 && table.queuedDeadlines == 0)
    }

    /// The cost of a registration with 100,000 bindings held (each registration expires
    /// what lapsed first) and of 100,000 lapsing at once. Prints the figures; asserts the
    /// work, not the time: a registration looks at O(1) queue entries, amortised.
    /// `MAT_RELAY_BENCH_BINDINGS` sets another number of bindings (docs/benchmarks.md).
    @Test func aHundredThousandBindings() {
        let bindings = getenv("MAT_RELAY_BENCH_BINDINGS").flatMap { Int(String(cString: $0)) } ?? 100_000
        let registrations = 2_000
        var table = RelayTable(lifetime: 60_000, capacity: bindings)
        for n in 0..<bindings { _ = table.register([hoa(n)], sequence: 1, from: binding(n), now: 0) }
        #expect(table.count == bindings)
        let start = Self.nanoseconds()
        for n in 0..<registrations {
            #expect(table.register([hoa(n % bindings)], sequence: UInt64(2 + n / bindings), from: binding(n % bindings),
                                   now: 1_000 + UInt64(n)) == .accepted)
        }
        let perRegistration = Double(Self.nanoseconds() - start) / Double(registrations)
        #expect(table.queuedDeadlines <= 2 * bindings + 64)
        let lapse = Self.nanoseconds()
        let gone = table.expire(now: 60_000 + 1_000 + UInt64(registrations))
        let expireAll = Double(Self.nanoseconds() - lapse) / 1e6
        #expect(gone.count == bindings && table.count == 0)
        print(String(format: "bench: relay-register bindings=%d ns_per_registration=%.0f expire_all_ms=%.1f",
                     bindings, perRegistration, expireAll))
    }

    static func nanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
