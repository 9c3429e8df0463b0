@testable import MATNode
import MATPacket
import Testing

/// The kernel fast path's element deltas (docs/datapath.md, "Kernel fast path"): a change
/// costs elements in proportion to the HoAs it touched, not to the peers in the maps.
@Suite struct FastPathElementsTests {
    typealias Peer = FastPathRuleset.Peer
    typealias Element = FastPathElements.Element

    func address(_ text: String) -> IPAddress { IPAddress(text)! }

    func peer(_ hoa: String, _ moas: [String]) -> Peer {
        Peer(hoa: address(hoa), preferred: address(moas[0]), moas: moas.map(address))
    }

    func element(_ key: String, _ value: String) -> Element { Element(key: address(key), value: address(value)) }

    /// `elements` with IPv6 peers 2001:db8:4000::N -> 2001:db8:4001::N for N in `range`.
    func filled(_ range: Range<Int>, limit: Int = 1_000) -> FastPathElements {
        var elements = FastPathElements(limit: limit)
        var decisions: [IPAddress: Peer?] = [:]
        for index in range {
            decisions.updateValue(peer("2001:db8:4000::\(index)", ["2001:db8:4001::\(index)"]),
                                  forKey: address("2001:db8:4000::\(index)"))
        }
        _ = elements.apply(decisions)
        return elements
    }

    @Test func aNewPeerAddsItsElementsAndNothingElse() {
        var elements = filled(0..<100)
        let delta = elements.apply([address("198.51.100.20"): peer("198.51.100.20", ["192.0.2.130", "203.0.113.20"])])
        #expect(delta == FastPathElements.Delta(outAdded: [element("198.51.100.20", "192.0.2.130")],
                                                inAdded: [element("192.0.2.130", "198.51.100.20"),
                                                          element("203.0.113.20", "198.51.100.20")]))
        #expect(elements.count(.ipv4) == 1 && elements.count(.ipv6) == 100)
        #expect(elements.owner(ofMoA: address("203.0.113.20")) == address("198.51.100.20"))
        // The same decision again changes nothing.
        let again = elements.apply([address("198.51.100.20"): peer("198.51.100.20", ["192.0.2.130", "203.0.113.20"])])
        #expect(again.isEmpty)
    }

    /// A hold (nil) deletes the peer's elements, before anything else of the transaction.
    @Test func aPeerLeavingDeletesItsElements() {
        var elements = filled(0..<100)
        let delta = elements.apply([address("2001:db8:4000::7"): nil])
        #expect(delta == FastPathElements.Delta(outDeleted: [element("2001:db8:4000::7", "2001:db8:4001::7")],
                                                inDeleted: [element("2001:db8:4001::7", "2001:db8:4000::7")]))
        #expect(elements.peers[address("2001:db8:4000::7")] == nil && elements.count(.ipv6) == 99)
        #expect(elements.owner(ofMoA: address("2001:db8:4001::7")) == nil)
        let batch = FastPathRuleset.elements(delta, table: "matd_mat0_fast")
        #expect(batch == ["delete element inet matd_mat0_fast out6 { 2001:db8:4000::7 }",
                          "delete element inet matd_mat0_fast in6 { 2001:db8:4001::7 }"])
        // A HoA without a peer that stays without one costs nothing.
        let none = elements.apply([address("2001:db8:4000::7"): nil, address("2001:db8:4000::999"): nil])
        #expect(none.isEmpty)
    }

    /// A new preferred MoA replaces the `out` element; the MoAs that stay are not touched.
    @Test func aChangedPeerChangesOnlyWhatDiffers() {
        var elements = FastPathElements(limit: 10)
        _ = elements.apply([address("198.51.100.20"): peer("198.51.100.20", ["192.0.2.130", "203.0.113.20"])])
        let delta = elements.apply([address("198.51.100.20"): peer("198.51.100.20", ["203.0.113.20", "203.0.113.21"])])
        #expect(delta == FastPathElements.Delta(outDeleted: [element("198.51.100.20", "192.0.2.130")],
                                                inDeleted: [element("192.0.2.130", "198.51.100.20")],
                                                outAdded: [element("198.51.100.20", "203.0.113.20")],
                                                inAdded: [element("203.0.113.21", "198.51.100.20")]))
        let batch = FastPathRuleset.elements(delta, table: "t")
        #expect(batch == ["delete element inet t out4 { 198.51.100.20 }", "delete element inet t in4 { 192.0.2.130 }",
                          "add element inet t out4 { 198.51.100.20 : 203.0.113.20 }",
                          "add element inet t in4 { 203.0.113.21 : 198.51.100.20 }"])
    }

    /// A MoA that goes from one peer to another in one batch: deleted, then added with its
    /// new owner; a MoA another peer still owns keeps the newcomer off the fast path.
    @Test func aMoAHasOneOwner() {
        var elements = FastPathElements(limit: 10)
        _ = elements.apply([address("198.51.100.20"): peer("198.51.100.20", ["192.0.2.130"])])
        let taken = elements.apply([address("198.51.100.21"): peer("198.51.100.21", ["192.0.2.130"])])
        #expect(taken.refused == 1 && taken.outAdded.isEmpty && taken.inAdded.isEmpty)
        let moved = elements.apply([address("198.51.100.20"): nil,
                                    address("198.51.100.21"): peer("198.51.100.21", ["192.0.2.130"])])
        #expect(moved.inDeleted == [element("192.0.2.130", "198.51.100.20")], "\(moved)")
        #expect(moved.inAdded == [element("192.0.2.130", "198.51.100.21")], "\(moved)")
        #expect(moved.outDeleted == [element("198.51.100.20", "192.0.2.130")])
        #expect(elements.owner(ofMoA: address("192.0.2.130")) == address("198.51.100.21"))
    }

    /// A key that gets a new value is deleted before it is added again.
    @Test func aKeyWithANewValueIsDeletedThenAdded() {
        var elements = FastPathElements(limit: 10)
        _ = elements.apply([address("198.51.100.20"): peer("198.51.100.20", ["192.0.2.130"])])
        let moved = elements.apply([address("198.51.100.20"): nil,
                                    address("198.51.100.21"): peer("198.51.100.21", ["192.0.2.130"])])
        let batch = FastPathRuleset.elements(moved, table: "t")
        #expect(batch == ["delete element inet t out4 { 198.51.100.20 }", "delete element inet t in4 { 192.0.2.130 }",
                          "add element inet t out4 { 198.51.100.21 : 192.0.2.130 }",
                          "add element inet t in4 { 192.0.2.130 : 198.51.100.21 }"], "\(batch)")
    }

    @Test func atMostTheLimitInHoAOrder() {
        var elements = FastPathElements(limit: 2)
        var decisions: [IPAddress: Peer?] = [:]
        for index in (1...5).reversed() {
            decisions.updateValue(peer("198.51.100.\(20 + index)", ["192.0.2.\(130 + index)"]), forKey: address("198.51.100.\(20 + index)"))
        }
        let delta = elements.apply(decisions)
        #expect(Set(elements.peers.keys) == [address("198.51.100.21"), address("198.51.100.22")])
        #expect(delta.refused == 3)
        // Room again: a peer that leaves lets the next decided one in.
        _ = elements.apply([address("198.51.100.21"): nil])
        _ = elements.apply([address("198.51.100.25"): peer("198.51.100.25", ["192.0.2.135"])])
        #expect(Set(elements.peers.keys) == [address("198.51.100.22"), address("198.51.100.25")])
    }

    /// A move holds every active peer at once: more leave than stay, so the family's maps
    /// are flushed instead of 1,000 elements named, and the one that stays is added again.
    @Test func aMassDepartureFlushesTheMaps() {
        var elements = filled(0..<1_000, limit: 2_000)
        _ = elements.apply([address("198.51.100.20"): peer("198.51.100.20", ["192.0.2.130"])])
        var decisions: [IPAddress: Peer?] = [:]
        for index in 0..<999 { decisions.updateValue(nil, forKey: address("2001:db8:4000::\(index)")) }
        let delta = elements.apply(decisions)
        #expect(delta.flushed == [.ipv6])
        #expect(delta.outDeleted.isEmpty && delta.inDeleted.isEmpty)
        #expect(delta.outAdded == [element("2001:db8:4000::999", "2001:db8:4001::999")])
        #expect(delta.inAdded == [element("2001:db8:4001::999", "2001:db8:4000::999")])
        #expect(elements.count(.ipv6) == 1 && elements.count(.ipv4) == 1)
        let batch = FastPathRuleset.elements(delta, table: "t")
        #expect(batch.prefix(2) == ["flush map inet t out6", "flush map inet t in6"])
        #expect(batch.count == 4 && !batch.contains { $0.contains(" out4") || $0.contains(" in4") }, "IPv4 untouched: \(batch)")
        // A few leaving is element by element.
        let few = elements.apply([address("198.51.100.20"): nil])
        #expect(few.flushed.isEmpty && few.outDeleted.count == 1)
    }

    /// A write from scratch takes the table's HoAs a part at a time, in order, once; so do
    /// joining peers.
    @Test func theBacklogIsTakenInParts() {
        var elements = filled(0..<10)
        elements.restart(backlog: (0..<5).map { address("2001:db8:4000::\($0)") })
        #expect(elements.peers.isEmpty && elements.owner(ofMoA: address("2001:db8:4001::1")) == nil, "the maps start empty")
        #expect(elements.hasBacklog)
        let first = Array(elements.takeBacklog(2)), second = Array(elements.takeBacklog(2)), third = Array(elements.takeBacklog(2))
        #expect(first == [address("2001:db8:4000::0"), address("2001:db8:4000::1")])
        #expect(second == [address("2001:db8:4000::2"), address("2001:db8:4000::3")])
        #expect(third == [address("2001:db8:4000::4")])
        #expect(!elements.hasBacklog)
        let after = elements.takeBacklog(2)
        #expect(after.isEmpty)
        // Joining peers wait there too, in the order they came.
        elements.enqueue(address("198.51.100.20"))
        elements.enqueue(address("198.51.100.21"))
        #expect(elements.backlogCount == 2)
        let joining = Array(elements.takeBacklog(10))
        #expect(joining == [address("198.51.100.20"), address("198.51.100.21")] && elements.backlogCount == 0)
    }

    /// Large deltas go in commands of at most 4,096 elements.
    @Test func largeDeltasAreSplitIntoCommands() {
        var elements = FastPathElements(limit: 10_000)
        var decisions: [IPAddress: Peer?] = [:]
        for index in 0..<5_000 {
            decisions.updateValue(peer("2001:db8:4000::\(String(index, radix: 16))", ["2001:db8:4001::\(String(index, radix: 16))"]),
                                  forKey: address("2001:db8:4000::\(String(index, radix: 16))"))
        }
        let batch = FastPathRuleset.elements(elements.apply(decisions), table: "t")
        #expect(batch.count == 4, "two commands per map")
        #expect(batch.map { $0.split(separator: ",").count } == [4_096, 904, 4_096, 904])
    }
}
