import MATPacket
import Testing
@testable import MATNode

/// The peers whose alerts wait for the IMS's "which address do you see" answer behind 1:1
/// NAT (``PublicAddressWaits``): each transition, the clock passed in.
@Suite struct PublicAddressWaitsTests {
    static let peer4 = (hoa: IPAddress("198.51.100.20")!, moa: IPAddress("192.0.2.130")!)
    static let other4 = (hoa: IPAddress("198.51.100.21")!, moa: IPAddress("192.0.2.131")!)
    static let peer6 = (hoa: IPAddress("2001:db8:100::20")!, moa: IPAddress("2001:db8:a::130")!)

    @Test func theAnswerAlertsEveryPeerOfItsFamilyAndNoOther() {
        var waits = PublicAddressWaits()
        waits.wait([Self.peer4, Self.peer6, Self.other4], now: 1_000)
        let alerted = waits.answered(.ipv4)
        #expect(alerted.map(\.hoa) == [Self.peer4.hoa, Self.other4.hoa])
        #expect(alerted.map(\.moa) == [Self.peer4.moa, Self.other4.moa])
        #expect((waits.waiting[.ipv4] ?? []).isEmpty)
        #expect((waits.waiting[.ipv6] ?? []).map(\.hoa) == [Self.peer6.hoa])
        let r1 = waits.answered(.ipv4)
        #expect(r1.isEmpty, "answered once: a second answer alerts nobody")
    }

    /// An IMS that never answers holds the traffic for ``PublicAddressWaits/timeout``, not
    /// a millisecond longer, and each hold ends once.
    @Test func aSilentIMSHoldsThePeersForTheTimeoutOnly() {
        var waits = PublicAddressWaits()
        #expect(PublicAddressWaits.timeout == 10_000)
        waits.wait([Self.peer4], now: 1_000)
        waits.wait([Self.peer6], now: 4_000)
        let r2 = waits.expire(now: 10_999)
        #expect(r2.isEmpty)
        let r3 = waits.expire(now: 11_000)
        #expect(r3 == [Self.peer4.hoa])
        let r4 = waits.expire(now: 13_999)
        #expect(r4.isEmpty, "released once; the IPv6 peer's hold runs from its own move")
        let r5 = waits.expire(now: 14_000)
        #expect(r5 == [Self.peer6.hoa])
        let r6 = waits.expire(now: 100_000)
        #expect(r6.isEmpty)
    }

    /// A released peer still waits for its alert: the IMS's late answer alerts it.
    @Test func aPeerReleasedAtTheTimeoutIsStillAlertedAtTheAnswer() {
        var waits = PublicAddressWaits()
        waits.wait([Self.peer4], now: 1_000)
        let r7 = waits.expire(now: 11_000)
        #expect(r7 == [Self.peer4.hoa])
        #expect((waits.waiting[.ipv4] ?? []) == [.init(hoa: Self.peer4.hoa, moa: Self.peer4.moa, since: 1_000, held: false)])
        let r8 = waits.answered(.ipv4)
        #expect(r8.map(\.hoa) == [Self.peer4.hoa])
    }

    /// A second move while the IMS is asked: the peer waits once, for the newer MoA, held
    /// from the second move.
    @Test func aSecondMoveWhileWaitingReplacesThePeersEntry() {
        var waits = PublicAddressWaits()
        waits.wait([Self.peer4], now: 1_000)
        let r9 = waits.expire(now: 11_000)
        #expect(r9 == [Self.peer4.hoa])
        let moved = (hoa: Self.peer4.hoa, moa: IPAddress("192.0.2.140")!)
        waits.wait([moved], now: 12_000)
        #expect((waits.waiting[.ipv4] ?? []) == [.init(hoa: moved.hoa, moa: moved.moa, since: 12_000, held: true)])
        let r10 = waits.expire(now: 21_999)
        #expect(r10.isEmpty)
        let r11 = waits.expire(now: 22_000)
        #expect(r11 == [Self.peer4.hoa])
        let r12 = waits.answered(.ipv4)
        #expect(r12.map(\.moa) == [moved.moa])
    }

    /// Peers keep the order they began waiting in; one that waits again keeps its place,
    /// a new one comes last.
    @Test func aSecondMoveKeepsEachPeersPlace() {
        var waits = PublicAddressWaits()
        waits.wait([Self.peer4, Self.other4], now: 1_000)
        let moved = (hoa: Self.peer4.hoa, moa: IPAddress("192.0.2.140")!)
        let third = (hoa: IPAddress("198.51.100.22")!, moa: IPAddress("192.0.2.132")!)
        waits.wait([third, moved], now: 2_000)
        #expect((waits.waiting[.ipv4] ?? []).map(\.hoa) == [Self.peer4.hoa, Self.other4.hoa, third.hoa])
        #expect((waits.waiting[.ipv4] ?? []).map(\.moa) == [moved.moa, Self.other4.moa, third.moa])
    }
}
