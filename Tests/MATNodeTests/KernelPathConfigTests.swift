@testable import MATNode
import Testing

/// The `ipv6-forwarding` setting and the firewall check's reading of a chain listing; the
/// paths themselves are tested end to end in MATLabTests (KernelPathLabTests).
@Suite struct KernelPathConfigTests {
    static func config(_ extra: String) -> String {
        """
        [node]
        home-address = 198.51.100.10
        home-address = 2001:db8:100::a
        uplink = eth0
        domain-prefix = 198.51.100.0/24
        domain-prefix = 2001:db8:100::/64
        \(extra)
        """
    }

    @Test func ipv6ForwardingDefaultsToAutoAndTakesEachSetting() throws {
        #expect(try NodeConfig(parsing: Self.config("")).ipv6Forwarding == .auto)
        for setting in IPv6ForwardingSetting.allCases {
            #expect(try NodeConfig(parsing: Self.config("ipv6-forwarding = \(setting.rawValue)")).ipv6Forwarding == setting)
        }
    }

    @Test func ipv6ForwardingRefusesOtherValuesNamingTheLine() {
        do {
            _ = try NodeConfig(parsing: Self.config("ipv6-forwarding = kernel"))
            Issue.record("accepted ipv6-forwarding = kernel")
        } catch {
            #expect("\(error)".contains("line 7") && "\(error)".contains("ipv6-forwarding")
                    && "\(error)".contains("auto, sysctl or nftables"), "\(error)")
        }
    }

    @Test func reloadSaysTheSettingWaitsForARestart() throws {
        let old = try NodeConfig(parsing: Self.config(""))
        let next = try NodeConfig(parsing: Self.config("ipv6-forwarding = nftables"))
        let (merged, notes) = old.reloaded(from: next)
        #expect(merged.ipv6Forwarding == .auto)
        #expect(notes.contains { $0.contains("ipv6-forwarding") }, "\(notes)")
    }

    @Test func anAcceptForTheTunDeviceIsRecognisedWithOrWithoutCounters() {
        #expect(ForwardFirewall.acceptsTun("\t\tiifname \"mat0\" accept\n", tun: "mat0"))
        #expect(ForwardFirewall.acceptsTun("\t\tiifname \"mat0\" counter packets 12 bytes 3400 accept", tun: "mat0"))
        #expect(!ForwardFirewall.acceptsTun("\t\tiifname \"mat0\" tcp dport 22 accept", tun: "mat0"))
        #expect(!ForwardFirewall.acceptsTun("\t\tiifname \"mat1\" accept", tun: "mat0"))
        #expect(!ForwardFirewall.acceptsTun("\t\toifname \"mat0\" accept", tun: "mat0"))
    }
}
