import MATConfig
import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import Testing

@Suite("Configuration file")
struct ConfigTests {
    let keyText = node1Key.keyFileText + adminKey.keyFileText

    func parse(_ text: String) throws(ConfigError) -> IMSConfiguration {
        let keys = keyText
        return try IMSConfiguration.parse(text, baseDirectory: "/etc/mat") { (path: String) throws(ConfigError) -> String in
            guard path == "/etc/mat/keys.conf" else { throw ConfigError(line: 0, key: nil, message: "cannot read \(path)") }
            return keys
        }
    }

    @Test func aFullFileParses() throws {
        let config = try parse("""
            # the mapping server
            [server]
            listen = 127.0.0.1:53535
            listen = [::1]:53535
            state-directory = /var/lib/mat-ims
            journal-sync = write
            key-file = keys.conf
            max-tcp-connections = 8

            [zone]
            name = mat.example.
            ns = ns1.mat.example.
            ns = ns2.mat.example.
            glue = ns1.mat.example. 192.0.2.53
            admin-key = admin.mat.example.
            node-types = A AAAA TXT
            notify = 127.0.0.2:5354
            allow-transfer = 127.0.0.0/8
            allow-transfer = key admin.mat.example.
            default-ttl = 15
            """)
        #expect(config.listen.map(\.description) == ["127.0.0.1:53535", "[::1]:53535"])
        #expect(config.journalSync == .write)
        #expect(config.keys.count == 2)
        #expect(config.maxTCPConnections == 8)
        let zone = try #require(config.zones.first)
        #expect(zone.name == zoneName)
        #expect(zone.nameServers.count == 2)
        #expect(zone.adminKeys.contains(adminKey.name))
        #expect(zone.nodeTypes == [.a, .aaaa, .txt])
        #expect(zone.notify.map(\.description) == ["127.0.0.2:5354"])
        #expect(zone.allowTransfer.count == 2)
        #expect(zone.defaultTTL == 15)
    }

    @Test func errorsNameTheLineAndKey() {
        func error(_ text: String) -> ConfigError? {
            do {
                _ = try parse(text)
                return nil
            } catch {
                return error
            }
        }
        let base = "[server]\nlisten = 127.0.0.1:53\nkey-file = keys.conf\n[zone]\nname = mat.example.\n"
        #expect(error(base) == nil)
        #expect(error(base + "ns = a..b\n") == ConfigError(line: 6, key: "ns", message: "not a domain name: a..b"))
        #expect(error(base + "admin-key = nobody.example.\n")?.line == 6)
        #expect(error(base + "frobnicate = 1\n") == ConfigError(line: 6, key: "frobnicate", message: "unknown key in [zone]"))
        #expect(error(base + "node-types = A SOA\n")?.key == "node-types")
        #expect(error(base + "notify = somewhere\n")?.key == "notify")
        #expect(error(base + "allow-transfer = nonsense\n")?.key == "allow-transfer")
        #expect(error(base + "ixfr-history = -1\n")?.key == "ixfr-history")
        #expect(error("[server]\nlisten = 127.0.0.1:99999\n")?.key == "listen")
        #expect(error("[server]\nkey-file = missing.conf\n") == ConfigError(line: 2, key: "key-file",
                                                                             message: "cannot read /etc/mat/missing.conf"))
        #expect(error("listen = 1.2.3.4\n")?.line == 1)
        #expect(error("[server]\nlisten = 127.0.0.1\n")?.message == "no [zone] configured")
        #expect(error(base + "[zone]\nname = hoa.mat.example.\n")?.message.contains("overlap") == true)
        #expect(error(base + "[bogus]\n")?.line == 6)
    }

    @Test func endpointsAndPrefixesParse() {
        #expect(IPEndpoint("192.0.2.1", defaultPort: 53)?.port == 53)
        #expect(IPEndpoint("[2001:db8::1]:5353", defaultPort: 53)?.port == 5353)
        #expect(IPEndpoint("2001:db8::1", defaultPort: 53)?.port == 53)
        #expect(IPEndpoint("[2001:db8::1", defaultPort: 53) == nil)
        let v4 = IMSPrefix("198.51.100.0/24")!
        #expect(v4.contains(IPAddressLiteral.v4("198.51.100.7")) && !v4.contains(IPAddressLiteral.v4("198.51.101.7")))
        let v6 = IMSPrefix("2001:db8::/32")!
        #expect(v6.contains(IPAddressLiteral.v6("2001:db8:ffff::1")) && !v6.contains(IPAddressLiteral.v6("2001:db9::1")))
        #expect(!v6.contains(IPAddressLiteral.v4("198.51.100.7")))
        #expect(IMSPrefix("10.0.0.0/33") == nil)
    }
}

enum IPAddressLiteral {
    static func v4(_ text: String) -> IPAddress { IPAddress(text)! }
    static func v6(_ text: String) -> IPAddress { IPAddress(text)! }
}
