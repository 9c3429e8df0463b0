import MATConfig
import MATNode
import MATPacket
import Testing

@Suite struct ListenAddressTests {
    @Test func addressAndPortOfEitherFamily() {
        #expect(ListenAddress("127.0.0.1:9474") == ListenAddress(address: IPAddress("127.0.0.1")!, port: 9474))
        #expect(ListenAddress("[::1]:9474") == ListenAddress(address: IPAddress("::1")!, port: 9474))
        #expect(ListenAddress("[2001:db8::1]:80")?.description == "[2001:db8::1]:80")
        #expect(ListenAddress("192.0.2.1:1")?.description == "192.0.2.1:1")
        for bad in ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:9474", "[192.0.2.1]:80", "localhost:9474",
                    ":9474", "[::1]", "127.0.0.1:x", ""] {
            #expect(ListenAddress(bad) == nil, "\(bad)")
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
        #expect(config.metricsListen == ListenAddress(address: IPAddress("::1")!, port: 9474))
        #expect(try NodeConfig(parsing: text.replacingOccurrences(of: "metrics-listen = [::1]:9474\n", with: "")).metricsListen == nil)
        #expect(throws: ConfigError.self) {
            try NodeConfig(parsing: text.replacingOccurrences(of: "[::1]:9474", with: "::1:9474"))
        }
    }
}
