import MATLinux
import MATNode
import MATPacket
import Testing

/// The MoA choice as a pure function of the configured uplinks, the interfaces present and
/// the kernel's address dump (flags, scope, lifetimes), as docs/config.md documents it.
@Suite struct UplinkSelectionTests {
    typealias A = InterfaceAddress

    static func address(_ text: String, on index: Int32 = 2, flags: UInt32 = A.permanent, scope: UInt8 = 0,
                        preferred: UInt32 = .max, valid: UInt32 = .max) -> A {
        let length = text.contains(":") ? 64 : 24
        return A(interface: index, prefix: IPPrefix(IPAddress(text)!, length: length)!, flags: flags, scope: scope,
                 preferredLifetime: preferred, validLifetime: valid)
    }

    static func texts(_ list: [A]) -> [String] { list.map { $0.prefix.address.description } }

    static let homes = NodeAddresses(homes: [IPAddress("198.51.100.10")!, IPAddress("2001:db8:100::10")!])

    // MARK: what is never a MoA

    @Test func temporaryDeprecatedTentativeAndLinkLocalAreLeftOut() {
        // In the order a real dump gave them (`ip -6 addr` after use_tempaddr=2 and a
        // mngtmpaddr address): the temporary one first, the deprecated one before that.
        let dump = [
            Self.address("2001:db8:a::5", flags: A.deprecated | A.permanent, preferred: 0),
            Self.address("2001:db8:a:0:1142:489e:607a:9d59", flags: A.temporary, preferred: 85_896, valid: 604_797),
            Self.address("2001:db8:a::77", flags: A.tentative | A.permanent),
            Self.address("2001:db8:a::88", flags: A.dadFailed | A.tentative | A.permanent),
            Self.address("2001:db8:a::10", flags: A.permanent | A.manageTemporaryAddresses),
            Self.address("fe80::1", flags: A.permanent, scope: 253),
            Self.address("fe80::2", flags: A.permanent, scope: 0),   // link-local even if called global
            Self.address("169.254.3.4", flags: A.permanent),
            Self.address("2001:db8:a::99", flags: A.permanent, scope: 254),
        ]
        #expect(Self.texts(A.ranked(dump)) == ["2001:db8:a::10"])
        #expect(dump[0].unfitness == "deprecated")
        #expect(dump[1].unfitness == "temporary")
        #expect(dump[2].unfitness == "tentative")
        #expect(dump[3].unfitness == "duplicate address detection failed")
        #expect(dump[5].unfitness == "not global scope")
        #expect(dump[6].unfitness == "link-local")
        #expect(dump[7].unfitness == "link-local")
        // Without the filter the first IPv6 address of the dump, the deprecated one, was the MoA.
        #expect(Self.homes.withMobile(from: dump.map(\.prefix.address)).mobile6 == IPv6Address("2001:db8:a::5"))
        #expect(Self.homes.withMobile(from: A.ranked(dump).map(\.prefix.address)).mobile6 == IPv6Address("2001:db8:a::10"))
    }

    @Test func aPreferredLifetimeOfZeroIsDeprecatedEvenWithoutTheFlag() {
        #expect(Self.address("192.0.2.10", flags: 0, preferred: 0, valid: 100).unfitness == "deprecated")
        // No lifetimes at all (a dump without IFA_CACHEINFO) says nothing about deprecation.
        #expect(Self.address("192.0.2.10", flags: 0, preferred: 0, valid: 0).unfitness == nil)
    }

    @Test func theTemporaryBitIsSecondaryForIPv4AndKeepsTheAddress() {
        // IFA_F_SECONDARY and IFA_F_TEMPORARY are the same bit: an IPv4 secondary is fine,
        // it only comes after the primary.
        let dump = [Self.address("192.0.2.11", flags: A.secondary | A.permanent),
                    Self.address("192.0.2.10", flags: A.permanent)]
        #expect(Self.texts(A.ranked(dump)) == ["192.0.2.10", "192.0.2.11"])
    }

    // MARK: order within one uplink

    @Test func permanentBeforeDynamicThenNotEndingSoonThenKernelOrder() {
        let dump = [
            Self.address("2001:db8:a::1", flags: 0, preferred: 300, valid: 3_600),          // SLAAC, prefix going away
            Self.address("2001:db8:e::1", flags: 0, preferred: 3_000, valid: 86_400),       // SLAAC
            Self.address("2001:db8:b::1", flags: 0, preferred: 14_400, valid: 86_400),      // SLAAC
            Self.address("2001:db8:c::1", flags: A.permanent),
            Self.address("2001:db8:d::1", flags: A.permanent),
            Self.address("198.51.100.7", flags: 0, preferred: 50, valid: 100),             // DHCP, lease ending
            Self.address("192.0.2.20", flags: A.permanent),
        ]
        #expect(Self.texts(A.ranked(dump)) == ["2001:db8:c::1", "2001:db8:d::1", "192.0.2.20",
                                               "2001:db8:e::1", "2001:db8:b::1", "2001:db8:a::1", "198.51.100.7"])
    }

    @Test func refreshedLifetimesDoNotMoveTheMoA() {
        // Two prefixes advertised by two routers: each refresh makes one the longest-lived.
        // The choice stays with the kernel's order whichever was refreshed last.
        let first = [Self.address("2001:db8:a::1", flags: 0, preferred: 14_400, valid: 86_400),
                     Self.address("2001:db8:b::1", flags: 0, preferred: 14_200, valid: 86_200)]
        var refreshed = first
        refreshed[0].preferredLifetime = 14_100
        refreshed[1].preferredLifetime = 14_400
        #expect(Self.texts(A.ranked(first)) == ["2001:db8:a::1", "2001:db8:b::1"])
        #expect(Self.texts(A.ranked(refreshed)) == ["2001:db8:a::1", "2001:db8:b::1"])
        // Until the first is about to be deprecated.
        refreshed[0].preferredLifetime = A.endingSoon - 1
        #expect(Self.texts(A.ranked(refreshed)) == ["2001:db8:b::1", "2001:db8:a::1"])
    }

    // MARK: several uplinks

    static let present: [(index: Int32, name: String)] = [(1, "lo"), (2, "eth0"), (3, "eth1"), (7, "ens5"), (5, "ens4")]

    @Test func uplinksInConfigurationOrderPatternsByInterfaceIndex() {
        #expect(UplinkSelection.resolve(["eth1", "eth0"], present: Self.present) == ["eth1", "eth0"])
        #expect(UplinkSelection.resolve(["ens*", "eth0"], present: Self.present) == ["ens4", "ens5", "eth0"])
        // A name stands for itself even when absent; a pattern only for what is there.
        #expect(UplinkSelection.resolve(["wlan0", "wl*"], present: Self.present) == ["wlan0"])
        // Named twice (a name and a pattern): counted at the first.
        #expect(UplinkSelection.resolve(["eth1", "eth?"], present: Self.present) == ["eth1", "eth0"])
        #expect(UplinkSelection.resolve(["en[sx]*"], present: Self.present) == ["ens4", "ens5"])
        // A pattern never takes the TUN device (its HoAs are global) or lo; a name does.
        let withTun = Self.present + [(11, "mat0")]
        #expect(UplinkSelection.resolve(["*"], present: withTun, excluding: ["mat0", "lo"]) == ["eth0", "eth1", "ens4", "ens5"])
        #expect(UplinkSelection.resolve(["lo", "*"], present: withTun, excluding: ["mat0", "lo"]) == ["lo", "eth0", "eth1", "ens4", "ens5"])
        #expect(UplinkSelection.matches("eth*", "eth12"))
        #expect(!UplinkSelection.matches("eth*", "veth0"))
        #expect(!UplinkSelection.matches("eth0", "eth00"))
    }

    @Test func failoverToTheNextUplinkAndBack() {
        let entries = ["eth0", "eth1"]
        let eth0 = [Self.address("192.0.2.10", on: 2), Self.address("2001:db8:a::10", on: 2)]
        let eth1 = [Self.address("203.0.113.10", on: 3), Self.address("2001:db8:b::10", on: 3)]
        func moas(_ dump: [A]) -> [IPAddress] {
            Self.homes.withMobile(from: UplinkSelection.candidates(entries: entries, present: Self.present, dump: dump))
                .mobileAddresses
        }
        // eth1's addresses listed first in the dump: the configuration's order wins.
        #expect(moas(eth1 + eth0).map(\.description) == ["192.0.2.10", "2001:db8:a::10"])
        // eth0's addresses go: the next uplink's.
        #expect(moas(eth1).map(\.description) == ["203.0.113.10", "2001:db8:b::10"])
        // Only its IPv6 one deprecated: IPv6 fails over alone, per family.
        let deprecated6 = [eth0[0], Self.address("2001:db8:a::10", on: 2, flags: A.deprecated | A.permanent, preferred: 0)]
        #expect(moas(eth1 + deprecated6).map(\.description) == ["192.0.2.10", "2001:db8:b::10"])
        // They come back: the MoA moves back to the first uplink.
        #expect(moas(eth1 + eth0).map(\.description) == ["192.0.2.10", "2001:db8:a::10"])
        // Neither uplink has an address: no MoA.
        #expect(moas([]).isEmpty)
    }

    @Test func aHotPluggedInterfaceMatchingAPatternIsTaken() {
        let entries = ["hp*", "eth0"]
        let eth0 = [Self.address("192.0.2.10", on: 2)]
        let before = UplinkSelection.candidates(entries: entries, present: Self.present, dump: eth0)
        #expect(before.map(\.description) == ["192.0.2.10"])
        let plugged = Self.present + [(9, "hp1")]
        let after = UplinkSelection.candidates(entries: entries, present: plugged,
                                               dump: eth0 + [Self.address("203.0.113.10", on: 9)])
        #expect(after.map(\.description) == ["203.0.113.10", "192.0.2.10"])
    }

    // MARK: the configuration

    @Test func configKeepsEntriesAndMatchesPatterns() throws {
        let config = try NodeConfig(parsing: """
            [node]
            home-address = 198.51.100.10
            uplink = eth0
            uplink = mtnx*
            domain-prefix = 198.51.100.0/24
            """)
        #expect(config.uplinkEntries == ["eth0", "mtnx*"])
        // No interface matches the pattern here; the plain name stays.
        #expect(config.uplinks == ["eth0"])
        #expect(config.isUplink("mtnx7"))
        #expect(config.isUplink("eth0"))
        #expect(!config.isUplink("eth1"))
        let everything = try NodeConfig(parsing: """
            [node]
            home-address = 198.51.100.10
            uplink = *
            domain-prefix = 198.51.100.0/24
            """)
        #expect(!everything.uplinks.contains("lo"))
        #expect(!everything.isUplink("mat0"))
        #expect(everything.isUplink("eth7"))
    }
}
