import MATNode
import MATPacket
import Testing

@Suite struct NodeConfigTests {
    static let valid = """
        # a VM node
        [node]
        home-address = 198.51.100.10
        home-address = 2001:db8:100::a   # both families
        uplink = eth0
        domain-prefix = 198.51.100.0/24
        domain-prefix = 2001:db8:100::/64
        signaling-port = 7600
        routing-table = 100
        rule-priority = 90

        [peer]
        home-address = 198.51.100.20
        mobile-address = 203.0.113.5

        [ims]
        server = 192.0.2.132:5353
        server = [2001:db8:c::132]
        zone = mat.example.
        key-file = /etc/mat/node.key

        [peer]
        home-address = 2001:db8:100::14
        mobile-address = 2001:db8:b::5
        mobile-address = 2001:db8:c::5
        """

    @Test func readsAValidFile() throws {
        let config = try NodeConfig(parsing: Self.valid)
        #expect(config.homeAddresses == [IPAddress("198.51.100.10")!, IPAddress("2001:db8:100::a")!])
        #expect(config.uplinks == ["eth0"])
        #expect(config.domainPrefixes.map(\.description) == ["198.51.100.0/24", "2001:db8:100::/64"])
        #expect(config.signalingPort == 7600)
        #expect(config.tunName == "mat0")
        #expect(config.routingTable == 100 && config.rulePriority == 90)
        #expect(config.controlSocket == "/run/matd/control.sock")
        #expect(config.peers.count == 2)
        #expect(config.peers[1].mobileAddresses.count == 2)
        let ims = try #require(config.ims)
        #expect(ims.servers.map(\.description) == ["192.0.2.132:5353", "[2001:db8:c::132]:53"])
        #expect(ims.zone.description == "mat.example.")
        #expect(ims.keyFiles == ["/etc/mat/node.key"])
        #expect(ims.recordTTL == 10 && ims.lifetime == 300)
    }

    static let broken: [(String, String)] = [
        ("uplink = eth0", "line 1: uplink: appears before any [section]"),
        ("[node]\nhome-address = 198.51.100.300", "line 2: home-address: 198.51.100.300 is not an IPv4 or IPv6 address"),
        ("[node]\ncolour = blue", "line 2: colour: unknown key in [node]"),
        ("[nodes]", "line 1: unknown section [nodes] (known: [node], [peer], [ims], [relay])"),
        ("[node]\n[ims]\nzone = mat.example.", "line 2: server: missing in [ims]"),
        ("[node]\n[ims]\nserver = 192.0.2.132:99999", "line 3: server: 192.0.2.132:99999 is not ADDRESS[:PORT] (IPv6 as [ADDRESS]:PORT)"),
        ("[node]\n[ims]\nserver = 192.0.2.132\nzone = a..b", "line 4: zone: a..b is not a DNS zone name"),
        ("[node]\n[ims]\nserver = 192.0.2.132\nzone = mat.example.\nrecord-ttl = 0", "line 5: record-ttl: 0 is not 1-86400 seconds"),
        ("[node\n", "line 1: malformed section header [node"),
        ("[node]\njust words", "line 2: expected key = value, found just words"),
        ("[node]\nuplink =", "line 2: uplink: has no value"),
        ("[node]\nsignaling-port = 70000", "line 2: signaling-port: 70000 is not a port (1-65535)"),
        ("[node]\ncontrol-socket = run/x", "line 2: control-socket: run/x is not an absolute path"),
        ("[node]\nrouting-table = 254", "line 2: routing-table: 254 is not a table number (1-4294967295 except 253-255)"),
        ("[node]\nrouting-table = 0", "line 2: routing-table: 0 is not a table number (1-4294967295 except 253-255)"),
        ("[node]\nrule-priority = 32766", "line 2: rule-priority: 32766 is not 1-32765"),
        ("[node]\nhome-address = 198.51.100.1\nhome-address = 198.51.100.2",
         "line 3: home-address: a second IPv4 home address (one per family)"),
        ("[node]\nhome-address = 198.51.100.1\nuplink = eth0", "line 1: domain-prefix: missing in [node]"),
        ("[node]\nhome-address = 192.0.2.1\nuplink = eth0\ndomain-prefix = 198.51.100.0/24",
         "line 1: home-address: 192.0.2.1 lies outside every domain-prefix"),
        ("[node]\nhome-address = 198.51.100.1\nuplink = eth0\ndomain-prefix = 198.51.100.0/24\n[peer]\nhome-address = 198.51.100.2\nmobile-address = 2001:db8::1",
         "line 5: mobile-address: 2001:db8::1 is IPv6 but home address 198.51.100.2 is IPv4: translation between address families is not supported"),
        ("[node]\nhome-address = 198.51.100.1\nuplink = eth0\ndomain-prefix = 198.51.100.0/24\n[peer]\nhome-address = 198.51.100.1\nmobile-address = 192.0.2.1",
         "line 5: home-address: 198.51.100.1 is already this node's or another peer's"),
        ("", "missing [node] section"),
        ("[node]\nuplink = a/b", "line 2: uplink: a/b is not an interface name (1-15 bytes, no / or spaces)"),
    ]

    @Test(arguments: broken)
    func reportsLineAndKey(_ text: String, _ expected: String) {
        #expect(throws: (any Error).self) { try NodeConfig(parsing: text) }
        do {
            _ = try NodeConfig(parsing: text)
        } catch {
            #expect(error.description == expected)
        }
    }

    @Test func prefixContainment() {
        #expect(IPPrefix("198.51.100.0/24")!.contains(IPAddress("198.51.100.200")!))
        #expect(!IPPrefix("198.51.100.0/24")!.contains(IPAddress("198.51.101.1")!))
        #expect(IPPrefix("2001:db8::/32")!.contains(IPAddress("2001:db8:ffff::1")!))
        #expect(!IPPrefix("2001:db8:1::/48")!.contains(IPAddress("2001:db8:2::1")!))
        #expect(IPPrefix("2001:db8::1/128")!.contains(IPAddress("2001:db8::1")!))
        #expect(!IPPrefix("2001:db8::/32")!.contains(IPAddress("198.51.100.1")!))
        #expect(IPPrefix("0.0.0.0/0")!.contains(IPAddress("203.0.113.9")!))
    }
}
