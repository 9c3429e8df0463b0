import MATLinux
import MATPacket

/// The nftables path's IPv6 next hops (docs/datapath.md, "IPv6 on older kernels"): in the
/// diversion's netdev table, one set of peer MoAs per next hop (`out6_h<n>`) and one rule
/// per next hop in chain `out6` that forwards the node's translated packets to it.
///
/// A peer that appears or vanishes costs one element added or deleted (and, for a next
/// hop no peer had before, one set and one rule): O(1) nftables work, where writing the
/// chain with every peer in its rules was O(IPv6 peers) per change. A set whose peers are
/// all gone stays, empty, until the chain is next written whole (a move).
struct NextHopSets6: Equatable {
    /// Each IPv6 peer MoA's next hop, as the sets hold them.
    private(set) var hops: [IPAddress: RouteLookup.Hop] = [:]
    /// The number of each next hop's set; every one has a set and a rule.
    private(set) var slots: [RouteLookup.Hop: Int] = [:]

    /// The name of set number `slot`.
    static func setName(_ slot: Int) -> String { "out6_h\(slot)" }

    /// The commands that write chain `out6` whole for `hops`, and the state they leave. The
    /// sets of `previous` (what the table holds now; empty when the table is created afresh)
    /// that are no longer used are deleted after the chain that referred to them is flushed.
    /// Without an IPv6 MoA (`mobile` nil) the chain has no rule: the engine translates no
    /// IPv6 packet then, so none comes from the TUN device to forward.
    static func whole(_ hops: [IPAddress: RouteLookup.Hop], replacing previous: NextHopSets6, table: String,
                      tun: String, mobile: IPv6Address?) -> (batch: [String], state: NextHopSets6) {
        var batch = ["add chain netdev \(table) out6 { type filter hook ingress device \"\(tun)\" priority -500; policy accept; }",
                     "flush chain netdev \(table) out6"]
        var state = NextHopSets6()
        if let mobile {
            state.hops = hops
            for (slot, hop) in Set(hops.values).sorted(by: { $0.description < $1.description }).enumerated() {
                state.slots[hop] = slot
            }
        }
        let kept = Set(state.slots.values)
        batch += previous.slots.values.sorted().filter { !kept.contains($0) }
            .map { "delete set netdev \(table) \(setName($0))" }
        var members: [Int: [IPAddress]] = [:]
        for (peer, hop) in state.hops { members[state.slots[hop]!, default: []].append(peer) }
        for (hop, slot) in state.slots.sorted(by: { $0.value < $1.value }) {
            batch.append("add set netdev \(table) \(setName(slot)) { type ipv6_addr; }")
            batch.append("flush set netdev \(table) \(setName(slot))")
            batch += elements("add", members[slot] ?? [], slot: slot, table: table)
            batch.append(rule(table: table, mobile: mobile!, hop: hop, slot: slot))
        }
        return (batch, state)
    }

    /// The commands that take the sets from what they hold to `next`, the rules staying
    /// (same MoA), and the state they leave: a peer whose next hop changed moves between
    /// sets; a next hop without a set gets one, and its rule.
    func changes(to next: [IPAddress: RouteLookup.Hop], table: String, mobile: IPv6Address) -> (batch: [String], state: NextHopSets6) {
        let gone = hops.filter { next[$0.key] != $0.value }.map(\.key)
        let new = next.filter { hops[$0.key] != $0.value }
        return changes(removing: gone, adding: new, table: table, mobile: mobile)
    }

    /// The commands that delete `removing` from their sets and add `adding` to the sets of
    /// their next hops (a peer already in a set is moved), and the state they leave: work
    /// in proportion to the change, not to the peers held.
    func changes(removing: some Sequence<IPAddress>, adding: [IPAddress: RouteLookup.Hop],
                 table: String, mobile: IPv6Address) -> (batch: [String], state: NextHopSets6) {
        var state = self
        var deleted: [Int: [IPAddress]] = [:]
        for peer in Set(removing).union(adding.keys) {
            guard let hop = state.hops.removeValue(forKey: peer), let slot = state.slots[hop] else { continue }
            deleted[slot, default: []].append(peer)
        }
        var batch: [String] = []
        for (slot, peers) in deleted.sorted(by: { $0.key < $1.key }) {
            batch += Self.elements("delete", peers, slot: slot, table: table)
        }
        var added: [Int: [IPAddress]] = [:]
        for (peer, hop) in adding.sorted(by: { $0.key.description < $1.key.description }) {
            let slot: Int
            if let known = state.slots[hop] {
                slot = known
            } else {
                slot = (state.slots.values.max() ?? -1) + 1
                state.slots[hop] = slot
                batch.append("add set netdev \(table) \(Self.setName(slot)) { type ipv6_addr; }")
                batch.append(Self.rule(table: table, mobile: mobile, hop: hop, slot: slot))
            }
            state.hops[peer] = hop
            added[slot, default: []].append(peer)
        }
        for (slot, peers) in added.sorted(by: { $0.key < $1.key }) {
            batch += Self.elements("add", peers, slot: slot, table: table)
        }
        return (batch, state)
    }

    private static func rule(table: String, mobile: IPv6Address, hop: RouteLookup.Hop, slot: Int) -> String {
        "add rule netdev \(table) out6 ip6 saddr \(mobile) ip6 daddr @\(setName(slot)) "
            + "fwd ip6 to \(hop.nextHop) device \"\(hop.device)\""
    }

    private static func elements(_ verb: String, _ peers: [IPAddress], slot: Int, table: String) -> [String] {
        let sorted = peers.map(\.description).sorted()
        return stride(from: 0, to: sorted.count, by: PeerMoASets.elementsPerCommand).map {
            let chunk = sorted[$0..<min($0 + PeerMoASets.elementsPerCommand, sorted.count)]
            return "\(verb) element netdev \(table) \(setName(slot)) { \(chunk.joined(separator: ", ")) }"
        }
    }
}
