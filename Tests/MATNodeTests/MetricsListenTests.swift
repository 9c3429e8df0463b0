import MATConfig
import MATNode
import MATPacket
import Testing

@Suite struct MetricsListenTests {
    @Test func addressAndPortOfEitherFamily() {
        #expect(IPEndpoint("127.0.0.1:9474", defaultPort: nil) == IPEndpoint(address: IPAddress("127.0.0.1")!, port: 9474))
        #expect(IPEndpoint("[::1]:9474", defaultPort: nil) == IPEndpoint(address: IPAddress("::1")!, port: 9474))
        #expect(IPEndpoint("[2001:db8::1]:80", defaultPort: nil)?.description == "[2001:db8::1]:80")
        #expect(IPEndpoint("192.0.2.1:1", defaultPort: nil)?.description == "192.0.2.1:1")
        for bad in ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:9474", "[192.0.2.1]:80", "localhost:9474",
                    ":9474", "[::1]", "127.0.0.1:x", ""] {
            #expect(IPEndpoint(bad, defaultPort: nil) == nil || IPEndpoint(bad, defaultPort: nil)?.port == 0, "\(bad)")
        }
    }

    @Test func metricsListenInTheNodeSection() throws {
        let text = """
            [node]
            home-address = 198.51.100.10
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            metrics-listen = [::1]:9474

            """
        let config = try NodeConfig(parsing: text)
        #expect(config.metricsListen == IPEndpoint(address: IPAddress("::1")!, port: 9474))
        #expect(try NodeConfig(parsing: text.replacingOccurrences(of: "metrics-listen = [::1]:9474\n", with: "")).metricsListen == nil)
        for bad in ["::1:9474", "127.0.0.1:0", "127.0.0.1"] {
            #expect(throws: ConfigError.self, "\(bad)") {
                try NodeConfig(parsing: text.replacingOccurrences(of: "[::1]:9474", with: bad))
            }
        }
    }
}
