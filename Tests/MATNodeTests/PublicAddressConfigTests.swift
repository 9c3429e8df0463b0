import MATConfig
import MATNode
import MATPacket
import Testing

/// `public-address` (docs/config.md): what stands for a private MoA behind 1:1 NAT.
@Suite struct PublicAddressConfigTests {
    static func config(_ lines: String, ims: Bool = true) -> String {
        """
        [node]
        home-address = 198.51.100.10
        home-address = 2001:db8:100::10
        uplink = eth0
        uplink = wl*
        domain-prefix = 198.51.100.0/24
        domain-prefix = 2001:db8:100::/64
        \(lines)
        \(ims ? "[ims]\nserver = 192.0.2.132\nzone = mat.example." : "")
        """
    }

    func address(_ text: String) -> IPAddress { IPAddress(text)! }

    @Test func perUplinkEntriesWinOverGlobalOnesPerFamily() throws {
        let config = try NodeConfig(parsing: Self.config("""
            public-address = 203.0.113.60
            public-address = eth0=203.0.113.61
            public-address = wlan3=auto
            """))
        let table = config.publicAddresses
        #expect(table.resolve(address("192.0.2.70"), interface: "eth0") == .fixed(address("203.0.113.61")))
        #expect(table.resolve(address("192.0.2.70"), interface: nil) == .fixed(address("203.0.113.60")))
        #expect(table.resolve(address("192.0.2.70"), interface: "eth1") == .fixed(address("203.0.113.60")))
        #expect(table.resolve(address("192.0.2.71"), interface: "wlan3") == .ask)
        // No IPv6 entry outside wlan3: an IPv6 MoA is public as it is (clouds route IPv6).
        #expect(table.resolve(address("2001:db8:d::70"), interface: "eth0") == .unchanged)
        #expect(table.resolve(address("2001:db8:d::70"), interface: "wlan3") == .ask)
        #expect(table.asksIMS)
    }

    @Test func autoAppliesToBothFamiliesAndNothingConfiguredChangesNothing() throws {
        let auto = try NodeConfig(parsing: Self.config("public-address = auto")).publicAddresses
        #expect(auto.resolve(address("192.0.2.70"), interface: "eth0") == .ask)
        #expect(auto.resolve(address("2001:db8:d::70"), interface: nil) == .ask)
        let none = try NodeConfig(parsing: Self.config("")).publicAddresses
        #expect(none.resolve(address("192.0.2.70"), interface: "eth0") == .unchanged && !none.asksIMS)
    }

    @Test func anUplinkEntryMayComeBeforeItsUplinkLine() throws {
        let text = Self.config("").replacingOccurrences(of: "[node]\n", with: "[node]\npublic-address = eth0=203.0.113.60\n")
        #expect(try NodeConfig(parsing: text).publicAddresses.entries.first?.uplink == "eth0")
    }

    static let broken: [(String, Bool, String)] = [
        ("public-address = 203.0.113.600", true,
         "public-address: 203.0.113.600 is not an address or auto (forms: ADDRESS, auto, UPLINK=ADDRESS, UPLINK=auto)"),
        ("public-address = eth9=203.0.113.60", true,
         "public-address: eth9 is not an uplink of this node (uplinks: eth0, wl*)"),
        ("public-address = 198.51.100.77", true,
         "public-address: 198.51.100.77 cannot be a public address: it lies in a domain-prefix (home addresses are not mobile addresses)"),
        ("public-address = 127.0.0.1", true, "public-address: 127.0.0.1 cannot be a public address: loopback"),
        ("public-address = fe80::1", true, "public-address: fe80::1 cannot be a public address: link-local"),
        ("public-address = 224.0.0.5", true, "public-address: 224.0.0.5 cannot be a public address: multicast or reserved"),
        ("public-address = 0.0.0.0", true, "public-address: 0.0.0.0 cannot be a public address: unspecified"),
        ("public-address = 203.0.113.60\npublic-address = 203.0.113.61", true,
         "public-address: a second IPv4 public address for every uplink (line 8 has 203.0.113.60; one per family)"),
        ("public-address = eth0=auto\npublic-address = eth0=203.0.113.61", true,
         "public-address: both auto and a fixed address for eth0 (line 8): use one or the other"),
        ("public-address = auto", false,
         "public-address: auto asks the IMS, but there is no [ims] section: give the address instead"),
        ("public-address = =auto", true,
         "public-address:  is not an interface name (forms: ADDRESS, auto, UPLINK=ADDRESS, UPLINK=auto)"),
    ]

    @Test(arguments: broken)
    func refusesWithLineAndKey(_ lines: String, _ ims: Bool, _ expected: String) {
        do {
            _ = try NodeConfig(parsing: Self.config(lines, ims: ims))
            Issue.record("accepted: \(lines)")
        } catch {
            // The first public-address line is line 8.
            #expect(error.description.hasSuffix(expected), "\(error)")
            #expect(error.description.hasPrefix("line "), "\(error)")
        }
    }
}
