import MATConfig
import MATNode
import MATPacket
import MATSignaling
import Testing

/// The `[relay]` section (docs/config.md).
@Suite struct RelayConfigTests {
    static func config(_ relay: String, node: String = "") -> String {
        """
        [node]
        home-address = 198.51.100.10
        uplink = eth0
        domain-prefix = 198.51.100.0/24
        \(node)
        [relay]
        \(relay)
        """
    }

    func error(_ text: String) -> ConfigError? {
        do {
            _ = try NodeConfig(parsing: text)
            return nil
        } catch {
            return error
        }
    }

    @Test func aNodeNamesItsRelayAndARelayPinsClientKeys() throws {
        let node = try NodeConfig(parsing: Self.config("address = 203.0.113.5"))
        #expect(node.relay?.serves == false && node.relay?.address == IPAddress("203.0.113.5"))
        #expect(node.relay?.clientKeys.isEmpty == true && node.relay?.line == 6)
        let key = SigningKey.generate().publicKey
        let relay = try NodeConfig(parsing: Self.config("serve = on\nclient-key = 198.51.100.20 \(key.base64)"))
        #expect(relay.relay?.serves == true && relay.relay?.address == nil)
        #expect(relay.relay?.clientKeys == [IPAddress("198.51.100.20")!: key])
    }

    @Test func mistakesAreRefusedWithTheirLine() {
        #expect(error(Self.config("serve = yes"))?.line == 7)
        #expect(error(Self.config("address = relay.example"))?.key == "address")
        #expect(error(Self.config("address = 203.0.113.5\naddress = 203.0.113.6"))?.line == 8)
        #expect(error(Self.config(""))?.message.contains("neither") == true)
        #expect(error(Self.config("serve = on\naddress = 203.0.113.5"))?.key == "address")
        #expect(error(Self.config("serve = on\nclient-key = 198.51.100.20 notakey"))?.key == "client-key")
        #expect(error(Self.config("address = 203.0.113.5\nclient-key = 198.51.100.20 \(SigningKey.generate().publicKey.base64)"))?
            .key == "client-key")
        #expect(error(Self.config("address = 198.51.100.10"))?.message.contains("own home address") == true)
        #expect(error(Self.config("address = 2001:db8:b::5"))?.message.contains("no IPv6 home address") == true)
        #expect(error(Self.config("address = 203.0.113.5", node: "udp-encapsulation = off"))?.message
            .contains("udp-encapsulation") == true)
        #expect(error(Self.config("serve = on") + "\n[relay]\nserve = on")?.message.contains("twice") == true)
        #expect(error(Self.config("relay-port = 1"))?.message == "unknown key in [relay]")
    }

    /// `[peer] relay` names the relay a pinned peer registers with: only this node's own.
    @Test func aPinnedPeerNamesThisNodesRelay() throws {
        func withPeer(_ lines: String, relay: String? = "address = 203.0.113.5") -> String {
            """
            [node]
            home-address = 198.51.100.10
            uplink = eth0
            domain-prefix = 198.51.100.0/24

            [peer]
            home-address = 198.51.100.20
            mobile-address = 192.0.2.130
            \(lines)
            \(relay.map { "[relay]\n\($0)" } ?? "")
            """
        }
        let config = try NodeConfig(parsing: withPeer("relay = 203.0.113.5"))
        #expect(config.peers.first?.relay == IPAddress("203.0.113.5"))
        #expect(try NodeConfig(parsing: withPeer("")).peers.first?.relay == nil)
        let other = error(withPeer("relay = 203.0.113.6"))
        #expect(other?.key == "relay" && other?.line == 6 && other?.message.contains("203.0.113.5") == true, "\(String(describing: other))")
        #expect(error(withPeer("relay = 203.0.113.5", relay: nil))?.message.contains("no [relay] address") == true)
        #expect(error(withPeer("relay = 203.0.113.5", relay: "serve = on"))?.key == "relay")
        #expect(error(withPeer("relay = 203.0.113.5\nrelay = 203.0.113.5"))?.message.contains("twice") == true)
        #expect(error(withPeer("relay = a.relay.example"))?.key == "relay")
    }

    @Test func aChangedRelayWaitsForARestart() throws {
        let before = try NodeConfig(parsing: Self.config("address = 203.0.113.5"))
        let after = try NodeConfig(parsing: Self.config("address = 203.0.113.6"))
        let (merged, notes) = before.reloaded(from: after)
        #expect(merged.relay?.address == IPAddress("203.0.113.5"))
        #expect(notes == ["[relay] changed; it takes effect when matd is restarted"])
    }
}
