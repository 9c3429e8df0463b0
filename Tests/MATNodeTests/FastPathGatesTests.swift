@testable import MATNode
import MATPacket
import Testing

/// A move's hold of a family on the kernel fast path (``FastPathGates``): the family's
/// outbound rules take only the peers released from the hold, each joining the family's
/// set at its own release, while the peers still held stay with the engine.
@Suite struct FastPathGatesTests {
    typealias Fixture = PacketProcessorTests
    static let peer = IPAddress.v4(Fixture.hoaPeer)
    static let dead = IPAddress.v4(IPv4Address(198, 51, 100, 30)), deadMoA = IPv4Address(192, 0, 2, 140)
    static let newcomer = IPAddress.v4(IPv4Address(198, 51, 100, 22)), newcomerMoA = IPv4Address(192, 0, 2, 132)
    static let peer6 = IPAddress("2001:db8:100::20")!

    func mapping(_ hoa: IPAddress, _ moa: IPv4Address) -> PeerMapping {
        PeerMapping(hoa: hoa, moas: [MoABinding(address: .v4(moa))])
    }

    /// A processor with two IPv4 peers: the one that will answer and the dead one.
    func processor() throws -> PacketProcessor {
        var processor = try Fixture().processor()
        #expect(processor.apply(.replaceMapping(mapping(Self.dead, Self.deadMoA))) == nil)
        return processor
    }

    /// Applies `commands` as the engine does, then derives the gates' changes from them.
    func applied(_ commands: [PacketProcessor.Command], to processor: inout PacketProcessor) -> FastPathGates.Changes {
        for command in commands { #expect(processor.apply(command) == nil) }
        return FastPathGates.changes(commands, holds: processor.familyHolds)
    }

    @Test func aReleasedPeerJoinsItsFamilysSetWhileTheOthersStayHeld() throws {
        var processor = try processor()
        var gates = FastPathGates()
        let move = applied([.holdFamily(.ipv4)], to: &processor)
        #expect(move == FastPathGates.Changes(emptied: [.ipv4], released: []))
        gates.apply(move)
        var ruleset = FastPathRuleset(addresses: processor.addresses, domainPrefixes: [])
        ruleset.gated = [.ipv4]
        #expect(!gates.admits(Self.peer, ruleset) && !gates.admits(Self.dead, ruleset))
        #expect(gates.admits(Self.peer6, ruleset), "the other family is not gated")

        let answer = applied([.release(Self.peer)], to: &processor)
        #expect(answer == FastPathGates.Changes(emptied: [], released: [Self.peer]))
        gates.apply(answer)
        #expect(gates.admits(Self.peer, ruleset), "back on the fast path at its own release")
        #expect(!gates.admits(Self.dead, ruleset), "the dead peer stays with the engine")
        #expect(gates.commands(answer, table: "t", whole: false) == ["add element inet t released4 { 198.51.100.20 }"])

        // The dead peer's retransmissions run out: its release, then the family's.
        let end = applied([.release(Self.dead), .releaseFamily(.ipv4)], to: &processor)
        #expect(end == FastPathGates.Changes(emptied: [.ipv4], released: []), "the hold is over: no element to add")
        gates.apply(end)
        #expect(gates.open.isEmpty)
        #expect(gates.commands(end, table: "t", whole: false) == ["flush set inet t released4"])
    }

    /// A release with no family held, or one a later move of the same batch holds again,
    /// opens nothing; a peer mapped after the move began (not alerted by it) is open.
    @Test func onlyPeersReleasedFromAHoldStillOnAreOpen() throws {
        var processor = try processor()
        #expect(applied([.release(Self.peer)], to: &processor).isEmpty)
        let again = applied([.holdFamily(.ipv4), .release(Self.peer), .holdFamily(.ipv4)], to: &processor)
        #expect(again == FastPathGates.Changes(emptied: [.ipv4], released: []))
        let later = applied([.replaceMapping(mapping(Self.newcomer, Self.newcomerMoA)), .release(Self.dead)], to: &processor)
        #expect(later == FastPathGates.Changes(emptied: [], released: [Self.newcomer, Self.dead]))
        // A mapping replaced in place for a peer still held does not open it.
        #expect(applied([.replaceMapping(mapping(Self.peer, IPv4Address(192, 0, 2, 141)))], to: &processor).isEmpty)
    }

    /// A write from scratch (after a failed one) writes every open HoA again; a new move
    /// empties its family's set but not the other family's.
    @Test func aWriteFromScratchHasEveryOpenPeerAndAMoveEmptiesItsFamilyOnly() throws {
        var gates = FastPathGates()
        gates.apply(FastPathGates.Changes(emptied: [.ipv4, .ipv6], released: [Self.peer, Self.dead, Self.peer6]))
        let whole = gates.commands(FastPathGates.Changes(), table: "t", whole: true)
        #expect(whole.prefix(2) == ["flush set inet t released4", "flush set inet t released6"])
        #expect(whole.contains("add element inet t released6 { 2001:db8:100::20 }"))
        let four = whole.first { $0.hasPrefix("add element inet t released4") } ?? ""
        #expect(four.contains("198.51.100.20") && four.contains("198.51.100.30"), "\(whole)")
        gates.apply(FastPathGates.Changes(emptied: [.ipv4], released: []))
        #expect(gates.open == [Self.peer6])
    }

    /// The gated family's outbound rules look the destination up in its set first; its
    /// inbound rules and the other family's rules are as without a hold; both sets exist
    /// in every write, so a gate never refers to a missing set.
    @Test func theGatedFamilysOutboundRulesLookItsSetUp() {
        let own = NodeAddresses(home4: IPv4Address("198.51.100.10"), mobile4: IPv4Address("192.0.2.10"),
                                home6: IPv6Address("2001:db8:100::10"), mobile6: IPv6Address("2001:db8:a::10"))
        var ruleset = FastPathRuleset(addresses: own, domainPrefixes: [])
        ruleset.gated = [.ipv4]
        let batch = ruleset.batch(FastPathRuleset.Placement(table: "t", uplinks: ["eth0"], localPorts: [7540], markBit: 0x2000_0000))
        #expect(batch.contains("add set inet t released4 { type ipv4_addr; }"))
        #expect(batch.contains("add set inet t released6 { type ipv6_addr; }"))
        let out = batch.filter { $0.hasPrefix("add rule inet t out ") }
        #expect(out.count == 4)
        #expect(out.filter { $0.contains("ip saddr 198.51.100.10 ") }.allSatisfy { $0.contains(" ip daddr @released4 ") }, "\(out)")
        #expect(out.filter { $0.contains("ip6 saddr") }.allSatisfy { !$0.contains("@released") }, "\(out)")
        #expect(batch.filter { $0.contains("in_eth0") }.allSatisfy { !$0.contains("@released") })
    }

    /// The BPF datapath's view of a hold (``FastPathGates/Changes/hold(_:wasHeld:gated:)``):
    /// it begins when the set is emptied with the family gated (again during a hold: a
    /// second move), ends only when the set is emptied with the family no longer gated,
    /// and a family out of the rules for a while (no MoA) keeps its hold.
    @Test func aHoldBeginsAndEndsForTheBPFDatapathWithTheSet() {
        let emptied = FastPathGates.Changes(emptied: [.ipv4])
        let none = FastPathGates.Changes()
        #expect(emptied.hold(.ipv4, wasHeld: false, gated: true) == .began)
        #expect(emptied.hold(.ipv4, wasHeld: true, gated: true) == .began)
        #expect(emptied.hold(.ipv4, wasHeld: true, gated: false) == .ended)
        #expect(emptied.hold(.ipv6, wasHeld: true, gated: false) == .unchanged)
        #expect(none.hold(.ipv4, wasHeld: true, gated: false) == .unchanged)
        #expect(none.hold(.ipv4, wasHeld: true, gated: true) == .unchanged)
        #expect(none.hold(.ipv4, wasHeld: false, gated: false) == .unchanged)
        #expect(FastPathGates.Changes(released: [Self.peer]).hold(.ipv4, wasHeld: true, gated: true) == .unchanged)
    }
}
