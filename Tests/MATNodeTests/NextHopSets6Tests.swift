import MATLinux
import MATPacket
import Testing
@testable import MATNode

/// The nftables IPv6 path's next-hop sets: a peer change is an element, not the chain.
@Suite struct NextHopSets6Tests {
    let moa = IPv6Address("2001:db8:a::10")!
    let gateway = RouteLookup.Hop(nextHop: IPAddress("2001:db8:a::1")!, device: "eth0")
    let other = RouteLookup.Hop(nextHop: IPAddress("2001:db8:a::2")!, device: "eth0")

    private func peer(_ n: Int) -> IPAddress { .v6(IPv6Address(high: 0x2001_0db8_0100_0000, low: UInt64(n))) }

    /// Written whole: one set and one rule per next hop, the peers as elements.
    @Test func wholeIsASetAndARulePerNextHop() {
        let written = NextHopSets6.whole([peer(1): gateway, peer(2): other, peer(3): gateway], replacing: NextHopSets6(),
                                         table: "t", tun: "mat0", mobile: moa)
        #expect(written.batch == [
            "add chain netdev t out6 { type filter hook ingress device \"mat0\" priority -500; policy accept; }",
            "flush chain netdev t out6",
            "add set netdev t out6_h0 { type ipv6_addr; }",
            "flush set netdev t out6_h0",
            "add element netdev t out6_h0 { 2001:db8:100::1, 2001:db8:100::3 }",
            "add rule netdev t out6 ip6 saddr 2001:db8:a::10 ip6 daddr @out6_h0 fwd ip6 to 2001:db8:a::1 device \"eth0\"",
            "add set netdev t out6_h1 { type ipv6_addr; }",
            "flush set netdev t out6_h1",
            "add element netdev t out6_h1 { 2001:db8:100::2 }",
            "add rule netdev t out6 ip6 saddr 2001:db8:a::10 ip6 daddr @out6_h1 fwd ip6 to 2001:db8:a::2 device \"eth0\"",
        ])
        let noMoA = NextHopSets6.whole([peer(1): gateway], replacing: written.state, table: "t", tun: "mat0", mobile: nil)
        #expect(noMoA.batch.suffix(2) == ["delete set netdev t out6_h0", "delete set netdev t out6_h1"])
        #expect(noMoA.state == NextHopSets6())
    }

    /// With 5,000 peers held, one that comes and one that goes are one element each; a
    /// next hop not seen before is one set and one rule more; nothing is flushed.
    @Test func aPeerChangeIsOneElementWhateverThePeersHeld() {
        let many = Dictionary(uniqueKeysWithValues: (0..<5_000).map { (peer($0), gateway) })
        let held = NextHopSets6.whole(many, replacing: NextHopSets6(), table: "t", tun: "mat0", mobile: moa).state
        let change = held.changes(removing: [peer(7)], adding: [peer(9_000): gateway], table: "t", mobile: moa)
        #expect(change.batch == ["delete element netdev t out6_h0 { 2001:db8:100::7 }",
                                 "add element netdev t out6_h0 { 2001:db8:100::2328 }"])
        #expect(change.state.hops.count == 5_000 && change.state.hops[peer(9_000)] == gateway && change.state.hops[peer(7)] == nil)

        let newHop = change.state.changes(removing: [], adding: [peer(9_001): other], table: "t", mobile: moa)
        #expect(newHop.batch == [
            "add set netdev t out6_h1 { type ipv6_addr; }",
            "add rule netdev t out6 ip6 saddr 2001:db8:a::10 ip6 daddr @out6_h1 fwd ip6 to 2001:db8:a::2 device \"eth0\"",
            "add element netdev t out6_h1 { 2001:db8:100::2329 }",
        ])
    }

    /// A peer whose route changed moves from one next hop's set to the other's.
    @Test func aNewNextHopForAPeerMovesItBetweenSets() {
        let held = NextHopSets6.whole([peer(1): gateway, peer(2): gateway], replacing: NextHopSets6(),
                                      table: "t", tun: "mat0", mobile: moa).state
        let moved = held.changes(to: [peer(1): gateway, peer(2): other], table: "t", mobile: moa)
        #expect(moved.batch == [
            "delete element netdev t out6_h0 { 2001:db8:100::2 }",
            "add set netdev t out6_h1 { type ipv6_addr; }",
            "add rule netdev t out6 ip6 saddr 2001:db8:a::10 ip6 daddr @out6_h1 fwd ip6 to 2001:db8:a::2 device \"eth0\"",
            "add element netdev t out6_h1 { 2001:db8:100::2 }",
        ])
        #expect(held.changes(to: held.hops, table: "t", mobile: moa).batch.isEmpty)
    }
}
