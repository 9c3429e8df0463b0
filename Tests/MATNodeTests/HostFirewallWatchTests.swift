import MATLinux
@testable import MATNode
import MATPacket
import Testing

/// What matd does when the host's firewall changes under it (``HostFirewallWatch``); the
/// lab test `KernelFastPathFirewallLabTests.aFirewallLoadedAfterStartIsSeenAndItsFixToo`
/// runs it against real chains.
struct HostFirewallWatchTests {
    typealias Reading = HostFirewallWatch.Reading

    static let input = FastPathFirewall.Finding(
        family: "inet", table: "hostfw", chain: "input", families: [.ipv4, .ipv6],
        fix: "nft 'insert rule inet hostfw input meta mark & 0x10000000 == 0x10000000 accept'")
    static let input4 = FastPathFirewall.Finding(
        family: "ip", table: "filter", chain: "INPUT", families: [.ipv4],
        fix: "iptables -I INPUT -m mark --mark 0x10000000/0x10000000 -j ACCEPT")
    static let forward = ForwardFirewall.Finding(family: "ip", table: "filter", chain: "FORWARD",
                                                 fix: "iptables -I FORWARD -i mat0 -j ACCEPT")

    @Test func theFirstReadingReportsInputAndForwardChains() {
        var watch = HostFirewallWatch(fastPath: true)
        let notes = watch.observe(.success(Reading(input: [Self.input4], forward: [Self.forward])), took: 3, at: 1_000)
        #expect(notes == [.inputDrops(Self.input4), .forwardDrops(Self.forward)])
        #expect(watch.engineInbound == [.ipv4])
        #expect(watch.nextReading == 1_000 + HostFirewallWatch.interval)
        // The same reading again: nothing to say, nothing changes.
        #expect(watch.observe(.success(Reading(input: [Self.input4], forward: [Self.forward])), took: 3, at: 6_000).isEmpty)
        #expect(watch.engineInbound == [.ipv4])
    }

    @Test func aChainThatStartsDroppingFencesItsFamiliesAndItsFixLiftsTheFence() {
        var watch = HostFirewallWatch(fastPath: true)
        #expect(watch.observe(.success(Reading(input: [], forward: [])), took: 2, at: 0).isEmpty)
        #expect(watch.engineInbound.isEmpty)
        // ufw or an admin's nft -f: a dropping input chain and a dropping forward chain appear.
        let added = watch.observe(.success(Reading(input: [Self.input], forward: [Self.forward])), took: 2, at: 5_000)
        #expect(added == [.inputDrops(Self.input), .forwardDrops(Self.forward)])
        #expect(watch.engineInbound == [.ipv4, .ipv6])
        // The fix for the input chain: inbound goes back to the fast path.
        let fixed = watch.observe(.success(Reading(input: [], forward: [Self.forward])), took: 2, at: 10_000)
        #expect(fixed == [.inputAccepts(place: "inet hostfw input")])
        #expect(watch.engineInbound.isEmpty)
        let forwardFixed = watch.observe(.success(Reading(input: [], forward: [])), took: 2, at: 15_000)
        #expect(forwardFixed == [.forwardAccepts(place: "ip filter FORWARD")])
    }

    @Test func aFailedReadingKeepsTheFenceAndIsSaidOncePerError() {
        var watch = HostFirewallWatch(fastPath: true)
        _ = watch.observe(.success(Reading(input: [Self.input4], forward: [])), took: 2, at: 0)
        let failure = SystemError("nftables: list chains", detail: "Operation not permitted")
        #expect(watch.observe(.failure(failure), took: 1, at: 5_000) == [.readFailed("\(failure)")])
        #expect(watch.observe(.failure(failure), took: 1, at: 10_000).isEmpty)
        #expect(watch.engineInbound == [.ipv4], "a reading that failed changes no decision")
        let other = SystemError("nftables: list chains", detail: "Cannot allocate memory")
        #expect(watch.observe(.failure(other), took: 1, at: 15_000) == [.readFailed("\(other)")])
        #expect(watch.observe(.success(Reading(input: [Self.input4], forward: [])), took: 2, at: 20_000) == [.readWorks])
        #expect(watch.nextReading == 25_000)
    }

    @Test func aSlowReadingSpacesTheNextOut() {
        var watch = HostFirewallWatch(fastPath: true)
        _ = watch.observe(.success(Reading(input: [], forward: [])), took: 200, at: 0)
        #expect(watch.nextReading == 200 * HostFirewallWatch.share, "a reading takes at most 1% of the time")
        _ = watch.observe(.success(Reading(input: [], forward: [])), took: 10, at: 20_000)
        #expect(watch.nextReading == 20_000 + HostFirewallWatch.interval)
    }

    @Test func withoutTheFastPathInputChainsDoNotMatter() {
        var watch = HostFirewallWatch(fastPath: false)
        #expect(watch.observe(.success(Reading(input: [Self.input], forward: [])), took: 2, at: 0).isEmpty)
        #expect(watch.engineInbound.isEmpty)
        #expect(watch.observe(.success(Reading(input: [Self.input], forward: [Self.forward])), took: 2, at: 5_000)
                == [.forwardDrops(Self.forward)])
    }

    /// A legacy iptables chain is a finding of its own beside iptables-nft's chain of the
    /// same name (both can be loaded at once), with its own fix.
    @Test func aLegacyChainIsToldApartFromTheNftablesOneOfTheSameName() {
        var watch = HostFirewallWatch(fastPath: true)
        var legacy = Self.forward
        legacy.legacy = true
        legacy.fix = "iptables-legacy -I FORWARD -i mat0 -j ACCEPT"
        _ = watch.observe(.success(Reading(input: [], forward: [Self.forward])), took: 1, at: 0)
        #expect(watch.observe(.success(Reading(input: [], forward: [Self.forward, legacy])), took: 1, at: 5_000)
                == [.forwardDrops(legacy)])
        #expect(watch.observe(.success(Reading(input: [], forward: [legacy])), took: 1, at: 10_000)
                == [.forwardAccepts(place: "ip filter FORWARD")])
        let text = HostFirewallWatch.message(.forwardDrops(legacy), tun: "mat0").1
        #expect(text.contains("forward chain ip filter FORWARD (legacy iptables) drops by default"), "\(text)")
        #expect(text.contains("Allow it with: iptables-legacy -I FORWARD -i mat0 -j ACCEPT"), "\(text)")
    }

    @Test func anUnreadableLegacyIptablesTableIsSaidWhenItAppears() {
        var watch = HostFirewallWatch(fastPath: true)
        let denied = "read legacy iptables table filter: Operation not permitted (errno 1)"
        #expect(watch.observe(.success(Reading(input: [], forward: [], legacy: ["ip": denied])), took: 1, at: 0)
                == [.legacyUnreadable(family: "ip", error: denied)])
        #expect(watch.observe(.success(Reading(input: [], forward: [], legacy: ["ip": denied])), took: 1, at: 5_000).isEmpty)
        #expect(watch.observe(.success(Reading(input: [], forward: [], legacy: ["ip": denied, "ip6": denied])), took: 1, at: 10_000)
                == [.legacyUnreadable(family: "ip6", error: denied)])
        #expect(watch.engineInbound.isEmpty, "its policy is unknown: nothing is fenced")
        let text = HostFirewallWatch.message(.legacyUnreadable(family: "ip", error: denied), tun: "mat0").1
        #expect(text.contains(denied), "\(text)")
        #expect(text.contains("iptables-legacy -I INPUT -m mark --mark 0x10000000/0x10000000 -j ACCEPT"), "\(text)")
        #expect(text.contains("iptables-legacy -I FORWARD -i mat0 -j ACCEPT"), "\(text)")
    }

    @Test func theLogLinesNameTheChainTheFamiliesAndTheFix() {
        let (level, text) = HostFirewallWatch.message(.inputDrops(Self.input4), tun: "mat0")
        #expect(level == .warning)
        #expect(text.contains("input chain ip filter INPUT drops by default"), "\(text)")
        #expect(text.contains("inbound IPv4 HoA traffic goes through the engine (mat0)"), "\(text)")
        #expect(text.contains("Allow it with: \(Self.input4.fix) (matd reads the firewall every 5 s)"), "\(text)")
        let forward = HostFirewallWatch.message(.forwardDrops(Self.forward), tun: "mat0").1
        #expect(forward.contains("forward chain ip filter FORWARD drops by default") && forward.contains(Self.forward.fix))
        #expect(HostFirewallWatch.names([.ipv6, .ipv4]) == "IPv4 and IPv6")
    }
}
