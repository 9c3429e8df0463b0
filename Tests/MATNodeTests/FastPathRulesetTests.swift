@testable import MATNode
import MATPacket
import Testing

/// Which peers the kernel fast path takes and the nftables text it writes for them
/// (docs/datapath.md, "Kernel fast path"), without a kernel.
@Suite struct FastPathRulesetTests {
    let own = NodeAddresses(home4: IPv4Address("198.51.100.10"), mobile4: IPv4Address("192.0.2.10"),
                            home6: IPv6Address("2001:db8:100::10"), mobile6: IPv6Address("2001:db8:a::10"))
    let domain = [IPPrefix("198.51.100.0/24")!, IPPrefix("2001:db8:100::/64")!]

    func mapping(_ hoa: String, _ moas: [String], flags: MappingFlags = .static) -> PeerMapping {
        PeerMapping(hoa: IPAddress(hoa)!, moas: moas.enumerated().map {
            MoABinding(address: IPAddress($0.element)!, priority: UInt8($0.offset), flags: flags)
        })
    }

    func peer(_ mapping: PeerMapping, held: Set<IPAddress> = [], unvalidated: Set<IPAddress> = [],
              encapsulated: Set<IPAddress> = []) -> FastPathRuleset.Peer? {
        FastPathRuleset.peer(for: mapping, preferred: mapping.moas.first?.address, held: held, unvalidated: unvalidated,
                             encapsulated: encapsulated, domainPrefixes: domain)
    }

    @Test func settledPeersOfBothFamiliesAreTaken() {
        let first = peer(mapping("198.51.100.20", ["192.0.2.130", "203.0.113.20"]))
        #expect(first?.preferred == IPAddress("192.0.2.130")!)
        #expect(first?.moas == [IPAddress("192.0.2.130")!, IPAddress("203.0.113.20")!])
        #expect(peer(mapping("2001:db8:100::20", ["2001:db8:c::130"], flags: [.confirmed, .reachable]))?.hoa
                == IPAddress("2001:db8:100::20")!)
        #expect(peer(mapping("198.51.100.30", ["192.0.2.140"], flags: .confirmed)) != nil)
        #expect(FastPathRuleset(addresses: own, domainPrefixes: domain).families == [.ipv4, .ipv6])
    }

    /// Everything the engine must see stays with it.
    @Test func unsettledPeersStayWithTheEngine() {
        let settled = mapping("198.51.100.20", ["192.0.2.130"])
        #expect(peer(settled, held: [IPAddress("198.51.100.20")!]) == nil, "held")
        #expect(peer(settled, unvalidated: [IPAddress("192.0.2.130")!]) == nil, "MoA being checked")
        #expect(peer(settled, encapsulated: [IPAddress("192.0.2.130")!]) == nil, "in UDP")
        #expect(FastPathRuleset.peer(for: settled, preferred: nil, held: [], unvalidated: [], encapsulated: [],
                                     domainPrefixes: domain) == nil, "no preferred MoA")
        // A trial after an alert: the announced MoA is being checked, the old one stays as
        // a straggler; the whole peer stays with the engine until the check ends.
        let trialWithStraggler = PeerMapping(hoa: IPAddress("198.51.100.20")!, moas: [
            MoABinding(address: IPAddress("203.0.113.20")!, priority: 0),
            MoABinding(address: IPAddress("192.0.2.130")!, priority: .max, flags: .static),
        ])
        #expect(peer(trialWithStraggler, unvalidated: [IPAddress("203.0.113.20")!]) == nil, "trial")
        #expect(peer(mapping("198.51.100.20", ["203.0.113.20"], flags: [])) != nil,
                "adopted: its MoA was checked (the table may keep the trial's flags)")
        #expect(peer(mapping("198.51.100.20", ["198.51.100.20"])) == nil, "peer at home")
        #expect(peer(mapping("198.51.100.20", ["2001:db8:c::130"])) == nil, "a MoA of another family")
        var home = own
        home.mobile4 = home.home4
        #expect(FastPathRuleset(addresses: home, domainPrefixes: domain).families == [.ipv6], "this node at home in IPv4")
        var noMobile4 = own
        noMobile4.mobile4 = nil
        #expect(FastPathRuleset(addresses: noMobile4, domainPrefixes: domain).families == [.ipv6], "no IPv4 MoA")
        var noHome6 = own
        noHome6.home6 = nil
        #expect(FastPathRuleset(addresses: noHome6, domainPrefixes: domain).families == [.ipv4], "no IPv6 HoA")
    }

    /// The rules and, as a first write does, the elements of `mappings`.
    func firstWrite(_ mappings: [PeerMapping], addresses: NodeAddresses? = nil,
                    placement: FastPathRuleset.Placement? = nil) -> [String] {
        var elements = FastPathElements(limit: 100)
        var decisions: [IPAddress: FastPathRuleset.Peer?] = [:]
        for mapping in mappings { decisions.updateValue(peer(mapping), forKey: mapping.hoa) }
        let placement = placement ?? self.placement
        return FastPathRuleset(addresses: addresses ?? own, domainPrefixes: domain).batch(placement)
            + FastPathRuleset.flushMaps(table: placement.table)
            + FastPathRuleset.elements(elements.apply(decisions), table: placement.table)
    }

    let placement = FastPathRuleset.Placement(table: "matd_mat0_fast", uplinks: ["eth0", "wlan-1"],
                                              localPorts: [7540, 7541], markBit: 0x2000_0000)

    @Test func rendersTheRewritesOfBothDirections() {
        let batch = firstWrite([mapping("198.51.100.20", ["192.0.2.130", "203.0.113.20"]),
                                mapping("2001:db8:100::20", ["2001:db8:c::130"])])
        let expected = [
            "add chain inet matd_mat0_fast out { type route hook output priority 10; policy accept; }",
            "add rule inet matd_mat0_fast out ip saddr 198.51.100.10 ip frag-off & 0x3fff == 0 ip protocol { tcp, udp } "
                + "ip daddr set ip daddr map @out4 ip saddr set 192.0.2.10 counter name out4 accept",
            "add rule inet matd_mat0_fast out ip saddr 198.51.100.10 ip frag-off & 0x3fff == 0 icmp type { echo-request, echo-reply } "
                + "ip daddr set ip daddr map @out4 ip saddr set 192.0.2.10 counter name out4 accept",
            "add rule inet matd_mat0_fast in_eth0 ip daddr 192.0.2.10 ip frag-off & 0x3fff == 0 ip protocol tcp "
                + "ip saddr set ip saddr map @in4 ip daddr set 198.51.100.10 meta mark set meta mark | 0x10000000 counter name in4 accept",
            "add rule inet matd_mat0_fast in_eth0 ip daddr 192.0.2.10 ip frag-off & 0x3fff == 0 ip protocol udp udp dport != { 7540, 7541 } "
                + "ip saddr set ip saddr map @in4 ip daddr set 198.51.100.10 meta mark set meta mark | 0x10000000 counter name in4 accept",
            "add chain inet matd_mat0_fast in_wlan_1 { type filter hook ingress device \"wlan-1\" priority -505; policy accept; }",
            "add element inet matd_mat0_fast out4 { 198.51.100.20 : 192.0.2.130 }",
            "add element inet matd_mat0_fast in4 { 192.0.2.130 : 198.51.100.20, 203.0.113.20 : 198.51.100.20 }",
            "add rule inet matd_mat0_fast out ip6 saddr 2001:db8:100::10 ip6 nexthdr { tcp, udp } "
                + "ip6 daddr set ip6 daddr map @out6 ip6 saddr set 2001:db8:a::10 counter name out6 accept",
            "add rule inet matd_mat0_fast in_eth0 ip6 daddr 2001:db8:a::10 ip6 nexthdr ipv6-icmp icmpv6 type { echo-request, echo-reply } "
                + "ip6 saddr set ip6 saddr map @in6 ip6 daddr set 2001:db8:100::10 meta mark set meta mark | 0x10000000 counter name in6 accept",
            "add element inet matd_mat0_fast out6 { 2001:db8:100::20 : 2001:db8:c::130 }",
        ]
        for line in expected { #expect(batch.contains(line), "missing: \(line)\n\(batch.joined(separator: "\n"))") }
        // A rewritten packet leaves the chain at once: no later rule could match it.
        let rewrites = batch.filter { $0.hasPrefix("add rule") && $0.contains("addr set") }
        #expect(rewrites.count == 16 && rewrites.allSatisfy { $0.hasSuffix(" accept") }, "\(rewrites)")
        // Every chain is added (no-op if there), emptied, and starts with the MoA-to-MoA pass.
        for chain in ["in_eth0", "in_wlan_1"] {
            let flush = batch.firstIndex(of: "flush chain inet matd_mat0_fast \(chain)")
            #expect(flush != nil)
            if let flush {
                #expect(batch[flush + 1] == "add rule inet matd_mat0_fast \(chain) meta mark & 0x20000000 == 0x20000000 accept")
            }
        }
        // Counters are added, never deleted, so they keep counting across rewrites.
        #expect(batch.contains("add counter inet matd_mat0_fast out4"))
        #expect(batch.first == "add table inet matd_mat0_fast { flags owner; }", "dies with matd's socket")
        #expect(!batch.contains { $0.hasPrefix("delete") })
        // The rules keep the maps' elements; only a write from scratch flushes them.
        let rules = FastPathRuleset(addresses: own, domainPrefixes: domain).batch(placement)
        #expect(!rules.contains { $0.contains("flush map") || $0.contains("element") }, "\(rules)")
        // ICMP errors are never rewritten by the kernel: nothing matches their types.
        #expect(!batch.contains { $0.contains("destination-unreachable") || $0.contains("packet-too-big") })
    }

    @Test func strictReversePathUplinksKeepIPv4InboundWithTheEngine() {
        var strict = placement
        strict.strictReversePath = ["eth0"]
        let batch = firstWrite([mapping("198.51.100.20", ["192.0.2.130"]), mapping("2001:db8:100::20", ["2001:db8:c::130"])],
                               placement: strict)
        #expect(!batch.contains { $0.contains(" in_eth0 ip daddr ") })
        #expect(batch.contains { $0.contains(" in_eth0 ip6 daddr ") })
        #expect(batch.contains { $0.contains(" in_wlan_1 ip daddr ") })
        #expect(batch.contains { $0.contains(" out ip saddr ") }, "outbound is not affected by rp_filter")
    }

    @Test func everyInboundRewriteMarksItsPacketForTheHostFirewall() {
        let batch = firstWrite([mapping("198.51.100.20", ["192.0.2.130"]), mapping("2001:db8:100::20", ["2001:db8:c::130"])])
        let inbound = batch.filter { $0.contains(" in_eth0 ip daddr ") || $0.contains(" in_eth0 ip6 daddr ") }
        #expect(inbound.count == 6, "\(inbound)")
        #expect(inbound.allSatisfy { $0.contains("meta mark set meta mark | 0x10000000 counter name in") }, "\(inbound)")
        #expect(!batch.contains { $0.contains(" out ") && $0.contains("meta mark set") }, "outbound is not marked")
        #expect(FastPathRuleset.translatedMark & placement.markBit == 0, "distinct from the MoA-to-MoA bit")
    }

    @Test func familiesTheInputChainWouldDropKeepTheirInboundWithTheEngine() {
        var fenced = placement
        fenced.engineInbound = [.ipv4]
        let batch = firstWrite([mapping("198.51.100.20", ["192.0.2.130"]), mapping("2001:db8:100::20", ["2001:db8:c::130"])],
                               placement: fenced)
        #expect(!batch.contains { $0.contains(" ip daddr 192.0.2.10") }, "no IPv4 inbound rewrite on any uplink")
        #expect(batch.contains { $0.contains(" in_eth0 ip6 daddr ") } && batch.contains { $0.contains(" in_wlan_1 ip6 daddr ") })
        #expect(batch.contains { $0.contains(" out ip saddr ") }, "outbound is not affected")
        fenced.engineInbound = [.ipv4, .ipv6]
        let none = firstWrite([mapping("198.51.100.20", ["192.0.2.130"])], placement: fenced)
        #expect(!none.contains { $0.contains("counter name in") })
        #expect(none.contains("add element inet matd_mat0_fast in4 { 192.0.2.130 : 198.51.100.20 }"))
    }

    /// With no family for nftables to translate (the BPF datapath carries both: the
    /// engine takes them out of the ruleset; or this node is at home) the table keeps its
    /// maps and sets but no chain: each one an earlier write left is emptied and deleted,
    /// so no packet walks a chain that could do nothing to it; a chain without a hook
    /// stays, by which matd tells the table is there (`Nftables.hasTable`).
    @Test func withoutAFamilyToTranslateTheTableHasNoChain() {
        var ruleset = FastPathRuleset(addresses: own, domainPrefixes: domain)
        ruleset.families = []
        let batch = ruleset.batch(placement)
        #expect(!batch.contains { $0.hasPrefix("add rule") }, "\(batch)")
        // One chain stays, without a hook (no packet walks it), by which matd tells the table is there.
        #expect(batch.last == "add chain inet matd_mat0_fast idle", "\(batch)")
        for chain in ["out", "in_eth0", "in_wlan_1"] {
            let added = batch.firstIndex { $0.hasPrefix("add chain inet matd_mat0_fast \(chain) {") }
            let deleted = batch.firstIndex(of: "delete chain inet matd_mat0_fast \(chain)")
            #expect(added != nil && deleted != nil && added! < deleted!, "\(chain): \(batch)")
            #expect(batch.firstIndex(of: "flush chain inet matd_mat0_fast \(chain)").map { $0 < deleted ?? 0 } == true)
        }
        #expect(batch.contains("add map inet matd_mat0_fast out4 { type ipv4_addr : ipv4_addr; }"))
        #expect(batch.contains("add counter inet matd_mat0_fast in6"))
    }

    /// The rules do not depend on the peers: written once, with the maps empty (a lookup
    /// that finds nothing stops the rule, and the packet goes on to the engine), they stay
    /// while peers come and go as elements.
    @Test func theRulesDoNotNameThePeers() {
        let none = firstWrite([])
        #expect(none.contains { $0.contains(" out ip saddr ") } && none.contains { $0.contains(" in_eth0 ip6 daddr ") })
        #expect(!none.contains { $0.hasPrefix("add element") })
        #expect(none.contains("flush map inet matd_mat0_fast out4") && none.contains("flush map inet matd_mat0_fast in6"))
        let some = firstWrite([mapping("198.51.100.20", ["192.0.2.130"])])
        #expect(none.filter { !$0.hasPrefix("add element") } == some.filter { !$0.hasPrefix("add element") })
        // At home in IPv4: no IPv4 rewrite at all, IPv6 still.
        var home = own
        home.mobile4 = home.home4
        let atHome = firstWrite([mapping("198.51.100.20", ["192.0.2.130"])], addresses: home)
        #expect(!atHome.contains { $0.contains(" ip saddr ") || $0.contains(" ip daddr ") }, "\(atHome)")
        #expect(atHome.contains { $0.contains(" ip6 saddr ") })
    }

    @Test func theEnvironmentOverridesTheSetting() {
        #expect(KernelFastPath.enabled(setting: false, environment: ["MATD_KERNEL_FAST_PATH": "on"]))
        #expect(!KernelFastPath.enabled(setting: true, environment: ["MATD_KERNEL_FAST_PATH": "off"]))
        #expect(KernelFastPath.enabled(setting: true, environment: [:]))
        #expect(!KernelFastPath.enabled(setting: false, environment: ["MATD_KERNEL_FAST_PATH": "maybe"]))
    }
}
