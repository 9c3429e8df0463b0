import MATPacket

/// What the kernel fast path translates (docs/datapath.md, "Kernel fast path"): which
/// peers may be on it, and the nftables text that makes the kernel rewrite their packets
/// statelessly.
///
/// The engine's table stays the source of truth. The rules depend only on the node's
/// addresses (this value), the uplinks and the families whose inbound stays with the
/// engine (``Placement``), and are rewritten only when those change; each peer is an
/// element of the named maps the rules look up, decided one HoA at a time
/// (``peer(for:preferred:held:unvalidated:encapsulated:domainPrefixes:)``) and written as
/// element deltas (``FastPathElements``). Only the packets that a stateless rewrite of the
/// two addresses gets right are taken: TCP, UDP (not to matd's own ports) and ICMP echo,
/// unfragmented (IPv6: no extension header). ICMP errors (their quoted header must be
/// translated too), fragments and everything else still reach the engine through the TUN
/// device.
public struct FastPathRuleset: Equatable, Sendable {
    /// One peer the kernel translates for.
    public struct Peer: Hashable, Sendable, Comparable {
        public var hoa: IPAddress
        /// Where its packets go (the engine's preferred MoA).
        public var preferred: IPAddress
        /// Every MoA its packets may come from (the receive rule).
        public var moas: [IPAddress]

        public init(hoa: IPAddress, preferred: IPAddress, moas: [IPAddress]) {
            self.hoa = hoa
            self.preferred = preferred
            self.moas = moas
        }

        public static func < (a: Peer, b: Peer) -> Bool { FastPathElements.precedes(a.hoa, b.hoa) }
    }

    /// The node's own addresses the rules rewrite from and to.
    public var addresses: NodeAddresses
    /// The families the rules translate: this node has a HoA and a MoA of the family, and
    /// is not at home (a MoA inside a domain prefix: the host's routing would send the
    /// rewritten packet back into the TUN device).
    public var families: Set<AddressFamily>
    /// Families a move holds (``FamilyHolds``): their outbound rules translate only the
    /// packets to a HoA in the family's `released` set, the peers released from the hold
    /// (``FastPathGates``); the packets to the others go on to the engine, which holds
    /// them. Their inbound is translated as any family's.
    public var gated: Set<AddressFamily> = []

    public init(addresses: NodeAddresses, domainPrefixes: [IPPrefix]) {
        self.addresses = addresses
        var families: Set<AddressFamily> = []
        if addresses.home4 != nil, let mobile = addresses.mobile4, !domainPrefixes.contains(where: { $0.contains(.v4(mobile)) }) {
            families.insert(.ipv4)
        }
        if addresses.home6 != nil, let mobile = addresses.mobile6, !domainPrefixes.contains(where: { $0.contains(.v6(mobile)) }) {
            families.insert(.ipv6)
        }
        self.families = families
    }

    /// The peer the kernel may translate for, from its mapping and its preferred MoA; nil
    /// when it is left to the engine:
    /// - it is held (the engine must see its packets to hold them) or any of its MoAs is
    ///   still being checked (`unvalidated`: the engine limits what goes there, and must
    ///   count what comes from there; a peer's trial after an alert has its announced MoAs
    ///   there until the challenge is answered or fails);
    /// - its traffic goes in UDP (`encapsulated`);
    /// - it is at home (a MoA inside a domain prefix), or has no MoA or a MoA of another
    ///   family than its HoA.
    /// Whether this node can translate the peer's family is the rules' part (``families``).
    public static func peer(for mapping: PeerMapping, preferred: IPAddress?, held: Set<IPAddress>,
                            unvalidated: Set<IPAddress>, encapsulated: Set<IPAddress>, domainPrefixes: [IPPrefix]) -> Peer? {
        let family = mapping.hoa.family
        guard !held.contains(mapping.hoa), let preferred, !mapping.moas.isEmpty else { return nil }
        let moas = mapping.moas.map(\.address)
        guard moas.allSatisfy({ moa in moa.family == family && !domainPrefixes.contains { $0.contains(moa) }
                                    && !unvalidated.contains(moa) && !encapsulated.contains(moa) }) else { return nil }
        return Peer(hoa: mapping.hoa, preferred: preferred, moas: moas)
    }

    /// Where the rules go and what they must leave alone.
    public struct Placement: Sendable, Equatable {
        /// The nftables table (family `inet`), matd's alone.
        public var table: String
        /// The uplinks that exist now: one ingress chain each.
        public var uplinks: [String]
        /// Uplinks whose effective IPv4 `rp_filter` is strict: a packet rewritten to come
        /// from a peer's HoA would fail the reverse-path check there (the HoA is routed into
        /// the TUN device), so their IPv4 inbound stays with the engine.
        public var strictReversePath: Set<String>
        /// matd's own UDP ports (signaling, encapsulation), never rewritten.
        public var localPorts: [UInt16]
        /// The bit PeerMoATraffic sets on MoA-to-MoA traffic that is not HoA traffic.
        public var markBit: UInt32
        /// Families whose inbound stays with the engine on every uplink: the host's input
        /// chain would drop what the fast path delivers (``FastPathFirewall``).
        public var engineInbound: Set<AddressFamily>
        /// The timeout (seconds) of the sets that note which peers' packets the inbound
        /// rules translated (``FastPathHeard``); nil: no sets, nothing noted.
        public var heardTimeout: UInt32?

        public init(table: String, uplinks: [String], strictReversePath: Set<String> = [],
                    localPorts: [UInt16], markBit: UInt32, engineInbound: Set<AddressFamily> = [],
                    heardTimeout: UInt32? = nil) {
            self.table = table
            self.uplinks = uplinks
            self.strictReversePath = strictReversePath
            self.localPorts = localPorts
            self.markBit = markBit
            self.engineInbound = engineInbound
            self.heardTimeout = heardTimeout
        }
    }

    /// Priority of the output chain: after filter (0), so PeerMoATraffic's output chain
    /// sees the application's HoA packet, not the rewritten MoA one (which it would take
    /// for MoA-to-MoA traffic), and after conntrack (-200), which keys the flow by HoAs as
    /// on the engine's path.
    public static let outputPriority = 10
    /// Priority of the ingress chains: after PeerMoATraffic's marking (-510), before the
    /// diversion into the TUN device (-500), which a rewritten packet no longer matches.
    public static let ingressPriority = -505

    /// The bit every inbound packet the fast path translates carries in its mark (`meta
    /// mark`), so a host firewall's input chain can accept exactly those: they arrive on the
    /// uplink, not on the TUN device (docs/datapath.md, "Differences for a host firewall").
    /// Set on the packet, not on its connection: at the ingress hook conntrack has not seen
    /// it yet, and the firewall needs it only for a flow's first packet (the rest match
    /// `ct state established`). Distinct from PeerMoATraffic's bit (`0x20000000`).
    public static let translatedMark: UInt32 = 0x1000_0000

    /// Named counters (packets, bytes) the rules count into.
    public static let counterNames = ["out4", "in4", "out6", "in6"]

    /// The chain the table keeps while it has no other (no family for nftables): it has
    /// no hook, so no packet walks it.
    static let hooklessChain = "idle"

    /// The chain name for an uplink.
    public static func ingressChain(_ uplink: String) -> String {
        "in_" + String(uplink.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// The commands that make the table's rules say exactly this: the table, counters and
    /// maps are added if missing (counters keep their values, maps their elements), the
    /// chains emptied and filled again. Part of one transaction, applied whole or not at
    /// all; the maps' elements are ``elements(_:table:)``'s.
    ///
    /// The table is owned by the netlink socket that writes it (`flags owner`, Linux
    /// 5.12): the kernel removes it when that socket closes, so the rules never outlive
    /// matd (a crash, a hand-over): its peers' packets then wait in the TUN device, as
    /// without the fast path, instead of being translated by mappings no one maintains.
    public func batch(_ placement: Placement) -> [String] {
        let table = "inet \(placement.table)"
        var batch = ["add table \(table) { flags owner; }"]
        batch += Self.counterNames.map { "add counter \(table) \($0)" }
        for (suffix, type) in [("4", "ipv4_addr"), ("6", "ipv6_addr")] {
            for direction in ["out", "in"] {
                batch.append("add map \(table) \(direction)\(suffix) { type \(type) : \(type); }")
            }
        }
        batch += [AddressFamily.ipv4, .ipv6].map {
            "add set \(table) \(FastPathGates.set($0)) { type \($0 == .ipv4 ? "ipv4_addr" : "ipv6_addr"); }"
        }
        if let timeout = placement.heardTimeout { batch += FastPathHeard.sets(table: placement.table, timeoutSeconds: timeout) }
        let outHook = "type route hook output priority \(Self.outputPriority)"
        func ingressHook(_ uplink: String) -> String { "type filter hook ingress device \"\(uplink)\" priority \(Self.ingressPriority)" }
        // No family for nftables to translate (the BPF datapath carries both, or this node
        // is at home): the chains would only cost every packet of the hook their walk (the
        // empty route chain 37 ns, an ingress chain's one rule most of a second inet
        // chain's cost a datagram: docs/benchmarks.md, "Where the BPF datapath's time
        // goes"), so they go, from a rewrite of earlier chains too (added first: deleting
        // a chain that is not there fails the transaction). One chain without a hook,
        // which no packet walks, stays: matd tells its tables by their chains
        // (`Nftables.hasTable`, cheap where listing the table is not), and removes this one
        // by that.
        guard !families.isEmpty else {
            for (chain, hook) in [("out", outHook)] + placement.uplinks.map({ (Self.ingressChain($0), ingressHook($0)) }) {
                batch += ["add chain \(table) \(chain) { \(hook); policy accept; }", "flush chain \(table) \(chain)",
                          "delete chain \(table) \(chain)"]
            }
            return batch + ["add chain \(table) \(Self.hooklessChain)"]
        }
        batch.append("add chain \(table) out { \(outHook); policy accept; }")
        batch.append("flush chain \(table) out")
        let mark = "0x" + String(placement.markBit, radix: 16)
        for uplink in placement.uplinks {
            let chain = Self.ingressChain(uplink)
            batch.append("add chain \(table) \(chain) { \(ingressHook(uplink)); policy accept; }")
            batch.append("flush chain \(table) \(chain)")
            // MoA-to-MoA traffic that is not HoA traffic (PeerMoATraffic marked it) is left
            // alone: first in every ingress chain.
            batch.append("add rule \(table) \(chain) meta mark & \(mark) == \(mark) accept")
        }
        let translated = "0x" + String(Self.translatedMark, radix: 16)
        let ports = "{ " + placement.localPorts.map(String.init).joined(separator: ", ") + " }"
        for family in [AddressFamily.ipv4, .ipv6] where families.contains(family) {
            let suffix = family == .ipv4 ? "4" : "6"
            let (home, mobile): (String, String)
            let ip: String, unfragmented: String, icmp: String
            switch family {
            case .ipv4:
                guard let h = addresses.home4, let m = addresses.mobile4 else { continue }
                (home, mobile) = (h.description, m.description)
                ip = "ip"
                unfragmented = "ip frag-off & 0x3fff == 0"
                icmp = "icmp type { echo-request, echo-reply }"
            case .ipv6:
                guard let h = addresses.home6, let m = addresses.mobile6 else { continue }
                (home, mobile) = (h.description, m.description)
                ip = "ip6"
                // The first next header: packets with extension headers (a fragment
                // header among them) are not matched.
                unfragmented = ""
                icmp = "ip6 nexthdr ipv6-icmp icmpv6 type { echo-request, echo-reply }"
            }
            // A destination (source) that is no peer's is not in the map: the lookup fails,
            // the rule stops there, and the packet goes on to the engine untouched.
            let transport = family == .ipv4 ? "ip protocol" : "ip6 nexthdr"
            let out = "add rule \(table) out \(ip) saddr \(home)" + (unfragmented.isEmpty ? "" : " \(unfragmented)")
                + (gated.contains(family) ? " \(ip) daddr @\(FastPathGates.set(family))" : "")
            // Every rewriting rule ends with `accept`: the rules after it cannot match the
            // rewritten packet, and evaluating them cost about 2% of a 64-byte UDP
            // packet's whole path (docs/benchmarks.md, "udp64 on the fast path"). It ends
            // this chain only; later chains of the hook still see the packet.
            let rewriteOut = "\(ip) daddr set \(ip) daddr map @out\(suffix) \(ip) saddr set \(mobile) counter name out\(suffix) accept"
            batch.append("\(out) \(transport) { tcp, udp } \(rewriteOut)")
            batch.append("\(out) \(icmp) \(rewriteOut)")
            for uplink in placement.uplinks where !placement.engineInbound.contains(family)
                && (family == .ipv6 || !placement.strictReversePath.contains(uplink)) {
                let chain = Self.ingressChain(uplink)
                let into = "add rule \(table) \(chain) \(ip) daddr \(mobile)" + (unfragmented.isEmpty ? "" : " \(unfragmented)")
                let rewriteIn = "\(ip) saddr set \(ip) saddr map @in\(suffix) \(ip) daddr set \(home) "
                    + "meta mark set meta mark | \(translated) counter name in\(suffix)"
                    + (placement.heardTimeout == nil ? "" : " " + FastPathHeard.statement(family)) + " accept"
                batch.append("\(into) \(transport) tcp \(rewriteIn)")
                batch.append("\(into) \(transport) udp udp dport != \(ports) \(rewriteIn)")
                batch.append("\(into) \(icmp) \(rewriteIn)")
            }
        }
        return batch
    }

    /// The names of the maps of `family`: HoA -> preferred MoA, MoA -> HoA.
    static func maps(_ family: AddressFamily) -> (out: String, in: String) { family == .ipv4 ? ("out4", "in4") : ("out6", "in6") }

    /// The commands that empty every map of `table` (a write from scratch).
    static func flushMaps(table: String) -> [String] {
        ["out4", "in4", "out6", "in6"].map { "flush map inet \(table) \($0)" }
    }

    /// Elements per `add element` / `delete element` command: one transaction still, in
    /// lines nft parses without trouble.
    static let elementsPerCommand = 4_096

    /// The commands that make `delta`'s changes to the maps of `table`: flushes, then
    /// deletions, then additions (a key deleted and added with another value is replaced).
    static func elements(_ delta: FastPathElements.Delta, table: String) -> [String] {
        var batch: [String] = []
        for family in [AddressFamily.ipv4, .ipv6] where delta.flushed.contains(family) {
            let (out, into) = maps(family)
            batch += ["flush map inet \(table) \(out)", "flush map inet \(table) \(into)"]
        }
        func commands(_ verb: String, _ map: (AddressFamily) -> String, _ elements: [FastPathElements.Element], values: Bool) {
            for family in [AddressFamily.ipv4, .ipv6] {
                let members = elements.filter { $0.key.family == family }
                var start = 0
                while start < members.count {
                    let chunk = members[start..<min(start + elementsPerCommand, members.count)]
                    batch.append("\(verb) element inet \(table) \(map(family)) { "
                                 + chunk.map { values ? "\($0.key) : \($0.value)" : "\($0.key)" }.joined(separator: ", ") + " }")
                    start += elementsPerCommand
                }
            }
        }
        commands("delete", { maps($0).out }, delta.outDeleted, values: false)
        commands("delete", { maps($0).in }, delta.inDeleted, values: false)
        commands("add", { maps($0).out }, delta.outAdded, values: true)
        commands("add", { maps($0).in }, delta.inAdded, values: true)
        return batch
    }
}
