#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket
import Testing

@Suite(.enabled(if: isRoot || mustRunRootTests, "needs root (runs in CI)"))
struct TunAndNetlinkTests {
    @Test func tunOpensWithOffloadsAndCarriesAddressesRoutesRules() throws {
        let lab = try LabNamespace()
        let report = try lab.enter { () -> String in
            let tun = try TunDevice(name: "mat0")
            #expect(tun.name == "mat0")
            #expect(tun.virtioHeaderSize == 10)
            #expect(tun.offloads.isSuperset(of: [.checksum, .tcp4, .tcp6]))
            let netlink = try RouteNetlink()
            try netlink.setUp("mat0", mtu: 1500)
            let index = try netlink.interfaceIndex("mat0")
            try netlink.addAddress(IPPrefix("198.51.100.10/32")!, interface: index)
            try netlink.addAddress(IPPrefix("2001:db8:100::a/128")!, interface: index)
            try netlink.addRoute(IPPrefix("198.51.100.0/24")!, interface: index, table: 254)
            try netlink.addRoute(IPPrefix("2001:db8:100::/64")!, interface: index, table: 254)
            let rule = RouteNetlink.Rule(family: .ipv4, priority: 100, source: IPPrefix("203.0.113.5/32"),
                                         destination: IPPrefix("192.0.2.77/32"), inputInterface: "lo", table: 100)
            try netlink.addRule(rule)
            // Adding the same address twice is refused, with the reason.
            #expect(throws: SystemError.self) { try netlink.addAddress(IPPrefix("198.51.100.10/32")!, interface: index) }
            let seen = try lab.ip("addr", "show", "dev", "mat0") + (try lab.ip("route", "show", "dev", "mat0"))
                + (try lab.ip("-6", "route", "show", "dev", "mat0")) + (try lab.ip("rule", "show"))
            try netlink.deleteRule(rule)
            try netlink.deleteRoute(IPPrefix("198.51.100.0/24")!, interface: index, table: 254)
            try netlink.deleteAddress(IPPrefix("198.51.100.10/32")!, interface: index)
            return seen
        }
        #expect(report.contains("inet 198.51.100.10/32"))
        #expect(report.contains("inet6 2001:db8:100::a/128"))
        #expect(report.contains("198.51.100.0/24"))
        #expect(report.contains("2001:db8:100::/64"))
        #expect(report.contains("100:\tfrom 203.0.113.5 to 192.0.2.77 iif lo lookup 100"))
        // The TUN device went away with its descriptor, taking addresses and routes with it.
        let after = try lab.ip("link", "show")
        #expect(!after.contains("mat0"))
        #expect(!(try lab.ip("rule", "show")).contains("lookup 100"))
    }

    @Test func badInterfaceNamesAreRefusedWithAReason() throws {
        #expect(throws: SystemError.self) { try TunDevice(name: "") }
        #expect(throws: SystemError.self) { try TunDevice(name: "a-name-longer-than-15") }
        let lab = try LabNamespace()
        let message = try lab.enter { () -> String in
            let netlink = try RouteNetlink()
            do {
                _ = try netlink.interfaceIndex("nosuchif0")
                return "found"
            } catch let error as SystemError {
                return error.description
            }
        }
        #expect(message.contains("find interface nosuchif0"))
    }
}

@Suite(.enabled(if: isRoot || mustRunRootTests, "needs root (runs in CI)"))
struct NftablesTests {
    @Test func appliesABatchAtomicallyAndReportsErrors() throws {
        let lab = try LabNamespace()
        let listing = try lab.enter { () -> String in
            let nft = try Nftables()
            try nft.run("""
                add table netdev mattest
                add chain netdev mattest in { type filter hook ingress device "lo" priority 0; policy accept; }
                add rule netdev mattest in ip saddr 203.0.113.5 ip daddr 192.0.2.10 counter
                """)
            // A batch with one bad line applies nothing.
            #expect(throws: SystemError.self) {
                try nft.run("add table netdev other\nadd rule netdev mattest nosuchchain counter")
            }
            let listing = try nft.run("list ruleset")
            try nft.run("delete table netdev mattest")
            return listing
        }
        #expect(listing.contains("table netdev mattest"))
        #expect(listing.contains("ip saddr 203.0.113.5 ip daddr 192.0.2.10 counter"))
        #expect(!listing.contains("table netdev other"))
        #expect(!(try lab.enter { try Nftables().run("list ruleset") }).contains("mattest"))
    }
}
