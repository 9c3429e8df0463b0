import MATPacket
import Testing
@testable import MATNode

@Suite struct PeerMoASetsTests {
    let a = IPAddress("192.0.2.10")!, b = IPAddress("192.0.2.11")!, c = IPAddress("2001:db8::c")!

    /// A peer that comes or goes is one element in each set, not a rewrite.
    @Test func aChangeOfPeersIsOnlyTheElementsThatChanged() {
        let before = PeerMoASets(addresses: [a, c])
        let after = PeerMoASets(addresses: [a, b])
        #expect(before.changes(to: after, tableFamily: "netdev", table: "t", quoted: true) == [
            "delete element netdev t peers6 { 2001:db8::c }",
            "delete element netdev t quoted_peers6 { 0x20010db800000000000000000000000c }",
            "add element netdev t peers4 { 192.0.2.11 }",
            "add element netdev t quoted_peers4 { 0xc000020b }",
        ])
        #expect(before.changes(to: before, tableFamily: "inet", table: "t", quoted: false).isEmpty)
    }

    /// Filling flushes first, so a table kept from a dead matd loses what it had.
    @Test func fillingFlushesThenAddsInBoundedCommands() {
        let many = Set((0..<5_000).map { IPAddress.v6(IPv6Address(high: 0x2001_0db8_0000_0000, low: UInt64($0))) })
        let batch = PeerMoASets(addresses: many).fill(tableFamily: "inet", table: "t", quoted: false)
        #expect(batch.prefix(2) == ["flush set inet t peers4", "flush set inet t peers6"])
        let adds = batch.dropFirst(2)
        #expect(adds.count == 2, "5,000 elements in commands of at most \(PeerMoASets.elementsPerCommand)")
        #expect(adds.map { $0.split(separator: ",").count }.reduce(0, +) == 5_000)
    }
}
