import MATNode
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

    func eligible(_ mappings: [PeerMapping], addresses: NodeAddresses? = nil, held: Set<IPAddress> = [],
                  unvalidated: Set<IPAddress> = [], encapsulated: Set<IPAddress> = [], limit: Int = 100) -> FastPathRuleset {
        FastPathRuleset.eligible(mappings: mappings, preferred: { hoa in mappings.first { $0.hoa == hoa }?.moas.first?.address },
                                 addresses: addresses ?? own, held: held, unvalidated: unvalidated,
                                 encapsulated: encapsulated, domainPrefixes: domain, limit: limit)
    }

    @Test func settledPeersOfBothFamiliesAreTaken() {
        let ruleset = eligible([mapping("198.51.100.20", ["192.0.2.130", "203.0.113.20"]),
                                mapping("2001:db8:100::20", ["2001:db8:c::130"], flags: [.confirmed, .reachable]),
                                mapping("198.51.100.30", ["192.0.2.140"], flags: .confirmed)])
        #expect(ruleset.hoas == [IPAddress("198.51.100.20")!, IPAddress("2001:db8:100::20")!, IPAddress("198.51.100.30")!])
        let first = ruleset.peers.first { $0.hoa == IPAddress("198.51.100.20")! }
        #expect(first?.preferred == IPAddress("192.0.2.130")!)
        #expect(first?.moas == [IPAddress("192.0.2.130")!, IPAddress("203.0.113.20")!])
    }

    /// Everything the engine must see stays with it.
    @Test func unsettledPeersStayWithTheEngine() {
        let peer = mapping("198.51.100.20", ["192.0.2.130"])
        #expect(eligible([peer], held: [IPAddress("198.51.100.20")!]).peers.isEmpty, "held")
        #expect(eligible([peer], unvalidated: [IPAddress("192.0.2.130")!]).peers.isEmpty, "MoA being checked")
        #expect(eligible([peer], encapsulated: [IPAddress("192.0.2.130")!]).peers.isEmpty, "in UDP")
        // A trial after an alert: the announced MoA is being checked, the old one stays as
        // a straggler; the whole peer stays with the engine until the check ends.
        let trialWithStraggler = PeerMapping(hoa: IPAddress("198.51.100.20")!, moas: [
            MoABinding(address: IPAddress("203.0.113.20")!, priority: 0),
            MoABinding(address: IPAddress("192.0.2.130")!, priority: .max, flags: .static),
        ])
        #expect(eligible([trialWithStraggler], unvalidated: [IPAddress("203.0.113.20")!]).peers.isEmpty, "trial")
        #expect(eligible([mapping("198.51.100.20", ["203.0.113.20"], flags: [])]).hoas == [IPAddress("198.51.100.20")!],
                "adopted: its MoA was checked (the table may keep the trial's flags)")
        #expect(eligible([mapping("198.51.100.20", ["198.51.100.20"])]).peers.isEmpty, "peer at home")
        var home = own
        home.mobile4 = home.home4
        #expect(eligible([peer], addresses: home).peers.isEmpty, "this node at home")
        var noMobile4 = own
        noMobile4.mobile4 = nil
        #expect(eligible([peer, mapping("2001:db8:100::20", ["2001:db8:c::130"])], addresses: noMobile4).hoas
                == [IPAddress("2001:db8:100::20")!], "no IPv4 MoA: only IPv6 peers")
    }

    @Test func atMostTheLimitInHoAOrder() {
        let peers = (1...5).map { mapping("198.51.100.\(20 + $0)", ["192.0.2.\(130 + $0)"]) }
        #expect(eligible(peers.reversed(), limit: 2).hoas == [IPAddress("198.51.100.21")!, IPAddress("198.51.100.22")!])
    }

    let placement = FastPathRuleset.Placement(table: "matd_mat0_fast", uplinks: ["eth0", "wlan-1"],
                                              localPorts: [7540, 7541], markBit: 0x2000_0000)

    @Test func rendersTheRewritesOfBothDirections() {
        let batch = eligible([mapping("198.51.100.20", ["192.0.2.130", "203.0.113.20"]),
                              mapping("2001:db8:100::20", ["2001:db8:c::130"])]).batch(placement)
        let expected = [
            "add chain inet matd_mat0_fast out { type route hook output priority 10; policy accept; }",
            "add rule inet matd_mat0_fast out ip saddr 198.51.100.10 ip frag-off & 0x3fff == 0 ip protocol { tcp, udp } "
                + "ip daddr set ip daddr map @out4 ip saddr set 192.0.2.10 counter name out4",
            "add rule inet matd_mat0_fast out ip saddr 198.51.100.10 ip frag-off & 0x3fff == 0 icmp type { echo-request, echo-reply } "
                + "ip daddr set ip daddr map @out4 ip saddr set 192.0.2.10 counter name out4",
            "add rule inet matd_mat0_fast in_eth0 ip daddr 192.0.2.10 ip frag-off & 0x3fff == 0 ip protocol tcp "
                + "ip saddr set ip saddr map @in4 ip daddr set 198.51.100.10 meta mark set meta mark | 0x10000000 counter name in4",
            "add rule inet matd_mat0_fast in_eth0 ip daddr 192.0.2.10 ip frag-off & 0x3fff == 0 ip protocol udp udp dport != { 7540, 7541 } "
                + "ip saddr set ip saddr map @in4 ip daddr set 198.51.100.10 meta mark set meta mark | 0x10000000 counter name in4",
            "add chain inet matd_mat0_fast in_wlan_1 { type filter hook ingress device \"wlan-1\" priority -505; policy accept; }",
            "add element inet matd_mat0_fast out4 { 198.51.100.20 : 192.0.2.130 }",
            "add element inet matd_mat0_fast in4 { 192.0.2.130 : 198.51.100.20, 203.0.113.20 : 198.51.100.20 }",
            "add rule inet matd_mat0_fast out ip6 saddr 2001:db8:100::10 ip6 nexthdr { tcp, udp } "
                + "ip6 daddr set ip6 daddr map @out6 ip6 saddr set 2001:db8:a::10 counter name out6",
            "add rule inet matd_mat0_fast in_eth0 ip6 daddr 2001:db8:a::10 ip6 nexthdr ipv6-icmp icmpv6 type { echo-request, echo-reply } "
                + "ip6 saddr set ip6 saddr map @in6 ip6 daddr set 2001:db8:100::10 meta mark set meta mark | 0x10000000 counter name in6",
            "add element inet matd_mat0_fast out6 { 2001:db8:100::20 : 2001:db8:c::130 }",
        ]
        for line in expected { #expect(batch.contains(line), "missing: \(line)\n\(batch.joined(separator: "\n"))") }
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
        // ICMP errors are never rewritten by the kernel: nothing matches their types.
        #expect(!batch.contains { $0.contains("destination-unreachable") || $0.contains("packet-too-big") })
    }

    @Test func strictReversePathUplinksKeepIPv4InboundWithTheEngine() {
        var strict = placement
        strict.strictReversePath = ["eth0"]
        let batch = eligible([mapping("198.51.100.20", ["192.0.2.130"]), mapping("2001:db8:100::20", ["2001:db8:c::130"])])
            .batch(strict)
        #expect(!batch.contains { $0.contains(" in_eth0 ip daddr ") })
        #expect(batch.contains { $0.contains(" in_eth0 ip6 daddr ") })
        #expect(batch.contains { $0.contains(" in_wlan_1 ip daddr ") })
        #expect(batch.contains { $0.contains(" out ip saddr ") }, "outbound is not affected by rp_filter")
    }

    @Test func everyInboundRewriteMarksItsPacketForTheHostFirewall() {
        let batch = eligible([mapping("198.51.100.20", ["192.0.2.130"]), mapping("2001:db8:100::20", ["2001:db8:c::130"])])
            .batch(placement)
        let inbound = batch.filter { $0.contains(" in_eth0 ip daddr ") || $0.contains(" in_eth0 ip6 daddr ") }
        #expect(inbound.count == 6, "\(inbound)")
        #expect(inbound.allSatisfy { $0.contains("meta mark set meta mark | 0x10000000 counter name in") }, "\(inbound)")
        #expect(!batch.contains { $0.contains(" out ") && $0.contains("meta mark set") }, "outbound is not marked")
        #expect(FastPathRuleset.translatedMark & placement.markBit == 0, "distinct from the MoA-to-MoA bit")
    }

    @Test func familiesTheInputChainWouldDropKeepTheirInboundWithTheEngine() {
        var fenced = placement
        fenced.engineInbound = [.ipv4]
        let batch = eligible([mapping("198.51.100.20", ["192.0.2.130"]), mapping("2001:db8:100::20", ["2001:db8:c::130"])])
            .batch(fenced)
        #expect(!batch.contains { $0.contains(" ip daddr 192.0.2.10") }, "no IPv4 inbound rewrite on any uplink")
        #expect(batch.contains { $0.contains(" in_eth0 ip6 daddr ") } && batch.contains { $0.contains(" in_wlan_1 ip6 daddr ") })
        #expect(batch.contains { $0.contains(" out ip saddr ") }, "outbound is not affected")
        fenced.engineInbound = [.ipv4, .ipv6]
        let none = eligible([mapping("198.51.100.20", ["192.0.2.130"])]).batch(fenced)
        #expect(!none.contains { $0.contains("counter name in") })
        #expect(none.contains("add element inet matd_mat0_fast in4 { 192.0.2.130 : 198.51.100.20 }"))
    }

    @Test func noPeersLeavesEmptyMapsAndChains() {
        let batch = eligible([]).batch(placement)
        #expect(!batch.contains { $0.hasPrefix("add rule") && !$0.contains("meta mark") })
        #expect(!batch.contains { $0.hasPrefix("add element") })
        #expect(batch.contains("flush map inet matd_mat0_fast out4") && batch.contains("flush map inet matd_mat0_fast in6"))
    }

    @Test func theEnvironmentOverridesTheSetting() {
        #expect(KernelFastPath.enabled(setting: false, environment: ["MATD_KERNEL_FAST_PATH": "on"]))
        #expect(!KernelFastPath.enabled(setting: true, environment: ["MATD_KERNEL_FAST_PATH": "off"]))
        #expect(KernelFastPath.enabled(setting: true, environment: [:]))
        #expect(!KernelFastPath.enabled(setting: false, environment: ["MATD_KERNEL_FAST_PATH": "maybe"]))
    }
}
