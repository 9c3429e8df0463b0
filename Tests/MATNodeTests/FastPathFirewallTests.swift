import Foundation
@testable import MATNode
import Testing

/// The reading of a host firewall's chains (``HostFirewall``) and what counts as accepting
/// the kernel fast path's packets (``FastPathFirewall``); the lab test
/// `KernelFastPathFirewallLabTests` runs both against real chains.
struct FastPathFirewallTests {
    static let listing = """
        table inet filter {
        \tchain input {
        \t\ttype filter hook input priority filter; policy drop;
        \t\tct state established,related accept
        \t\tiifname "lo" accept
        \t\tudp dport 7540 counter packets 3 bytes 120 accept comment "MAT signaling"
        \t\tmeta mark & 0x10000000 == 0x10000000 counter packets 12 bytes 3400 accept
        \t\tcounter packets 7 bytes 700 drop
        \t}
        }
        """

    @Test func rulesAreWordsWithoutCountersCommentsOrTheChainsDeclaration() {
        let rules = HostFirewall.rules(Self.listing)
        #expect(rules == [["ct", "state", "established,related", "accept"], ["iifname", "\"lo\"", "accept"],
                          ["udp", "dport", "accept"],
                          ["meta", "mark", "&", "0x10000000", "==", "0x10000000", "accept"], ["drop"]], "\(rules)")
        #expect(HostFirewall.dropsEverything(["drop"]) && HostFirewall.dropsEverything(["reject", "with", "icmpx", "type", "admin-prohibited"]))
        #expect(!HostFirewall.dropsEverything(["ip", "saddr", "192.0.2.1", "drop"]))
    }

    @Test func theMarkAcceptEveryUplinkOrEverythingAccepts() {
        #expect(FastPathFirewall.mark == "0x10000000")
        #expect(FastPathFirewall.acceptRule == "meta mark & 0x10000000 == 0x10000000 accept")
        let uplinks = ["eth0"]
        for rule in [["meta", "mark", "&", "0x10000000", "==", "0x10000000", "accept"],
                     ["meta", "mark", "&", "0x10000000", "!=", "0x00000000", "accept"],
                     ["iifname", "\"eth0\"", "accept"], ["iif", "\"eth0\"", "accept"], ["accept"]] {
            #expect(FastPathFirewall.accepts(rule, uplinks: uplinks), "\(rule)")
        }
        for rule in [["iifname", "\"mat0\"", "accept"], ["ct", "state", "established,related", "accept"],
                     ["meta", "mark", "&", "0x20000000", "==", "0x20000000", "accept"], ["iifname", "\"eth1\"", "accept"],
                     ["meta", "mark", "&", "0x10000000", "==", "0x10000000", "tcp", "dport", "accept"],
                     ["meta", "mark", "&", "0x10000000", "==", "0x10000000", "drop"]] {
            #expect(!FastPathFirewall.accepts(rule, uplinks: uplinks), "\(rule)")
        }
        // The documented rule, as the listing above has it, is found.
        #expect(HostFirewall.rules(Self.listing).contains { FastPathFirewall.accepts($0, uplinks: uplinks) })
    }
}
