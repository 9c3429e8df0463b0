import MATConfig
import MATNode
import MATPacket
import Testing

/// When a peer's traffic goes in UDP and when it comes back (docs/datapath.md, "Behind NAT"),
/// with the clock in the test's hands.
@Suite struct EncapPolicyTests {
    let peer = IPAddress("192.0.2.130")!
    let other = IPAddress("192.0.2.140")!

    /// Nonces 1, 2, 3... in the first byte, so each request's nonce is known.
    static func policy(_ setting: EncapSetting = .auto) -> EncapPolicy {
        let counter = Counter()
        return EncapPolicy(setting: setting, makeNonce: { [counter] in counter.next() })
    }

    final class Counter: @unchecked Sendable {
        private var value: UInt8 = 0
        func next() -> [UInt8] { value += 1; return [value] + [UInt8](repeating: 0, count: 15) }
    }

    static func nonce(_ n: UInt8) -> [UInt8] { [n] + [UInt8](repeating: 0, count: 15) }

    @Test func notBehindNATStaysDirectWithoutProbing() {
        var policy = Self.policy()
        #expect(policy.track([peer], behindNAT: false, now: 0).isEmpty)
        #expect(policy.mode(of: peer) == .direct)
        #expect(policy.tick(now: 100_000).isEmpty && policy.nextDeadline == nil)
    }

    @Test func anAnsweredProbeKeepsTheZeroOverheadPath() {
        var policy = Self.policy()
        #expect(policy.track([peer], behindNAT: true, now: 0) == [.sendProbe(peer, nonce: Self.nonce(1))])
        #expect(policy.mode(of: peer) == .probing && policy.nextDeadline == 1_000)
        // A forged or stale answer (another nonce) changes nothing.
        #expect(policy.probeAnswered(from: peer, nonce: Self.nonce(9), now: 200).isEmpty)
        #expect(policy.mode(of: peer) == .probing)
        #expect(policy.probeAnswered(from: peer, nonce: Self.nonce(1), now: 300).isEmpty)
        #expect(policy.mode(of: peer) == .direct)
        #expect(policy.tick(now: 60_000).isEmpty)
    }

    @Test func silenceFallsBackToUDPWithKeepalivesAndAReprobeGoesBack() {
        var policy = Self.policy()
        _ = policy.track([peer], behindNAT: true, now: 0)
        #expect(policy.tick(now: 999).isEmpty)
        #expect(policy.tick(now: 1_000) == [.sendProbe(peer, nonce: Self.nonce(2))])
        #expect(policy.tick(now: 2_000) == [.sendProbe(peer, nonce: Self.nonce(3))])
        #expect(policy.tick(now: 3_000) == [.startEncap(peer), .keepalive(peer)])
        #expect(policy.mode(of: peer) == .encapsulated)
        #expect(policy.tick(now: 17_999).isEmpty)
        #expect(policy.tick(now: 18_000) == [.keepalive(peer)])
        #expect(policy.tick(now: 33_000) == [.keepalive(peer)])
        // The answer to a request of the first round is too late to count.
        #expect(policy.probeAnswered(from: peer, nonce: Self.nonce(3), now: 40_000).isEmpty)
        #expect(policy.mode(of: peer) == .encapsulated)
        #expect(policy.tick(now: 63_000) == [.keepalive(peer), .sendProbe(peer, nonce: Self.nonce(4))])
        #expect(policy.probeAnswered(from: peer, nonce: Self.nonce(4), now: 63_050) == [.stopEncap(peer)])
        #expect(policy.mode(of: peer) == .direct && policy.nextDeadline == nil)
    }

    @Test func leavingTheNATOrThePeerGoingStopsTheEncapsulation() {
        var policy = Self.policy()
        _ = policy.track([peer, other], behindNAT: true, now: 0)
        for now in stride(from: UInt64(1_000), through: 3_000, by: 1_000) { _ = policy.tick(now: now) }
        #expect(policy.mode(of: peer) == .encapsulated && policy.mode(of: other) == .encapsulated)
        #expect(policy.track([peer], behindNAT: true, now: 4_000) == [.stopEncap(other)])
        #expect(policy.mode(of: other) == nil)
        // A move to a public address: direct at once, nothing probed.
        #expect(policy.track([peer], behindNAT: false, now: 5_000) == [.stopEncap(peer)])
        #expect(policy.mode(of: peer) == .direct)
        // Behind NAT again: probing starts over (nonces 1-6 went to the two peers' probes).
        #expect(policy.track([peer], behindNAT: true, now: 6_000) == [.sendProbe(peer, nonce: Self.nonce(7))])
    }

    @Test func offNeverAndAlwaysAtOnce() {
        var off = Self.policy(.off)
        #expect(off.track([peer], behindNAT: true, now: 0).isEmpty && off.tick(now: 10_000).isEmpty)
        #expect(off.mode(of: peer) == .direct)
        var always = Self.policy(.always)
        #expect(always.track([peer], behindNAT: false, now: 0) == [.startEncap(peer), .keepalive(peer)])
        #expect(always.tick(now: 15_000) == [.keepalive(peer)])
        #expect(always.tick(now: 100_000) == [.keepalive(peer)])   // never probes, never goes back
        #expect(always.track([peer], behindNAT: true, now: 100_001).isEmpty)
        #expect(always.mode(of: peer) == .encapsulated)
    }

    /// `encap-keepalive = 1` and `encap-reprobe = 3` (as the lab runs them): keepalives,
    /// which hold both the encapsulation's and the signaling's NAT bindings, every second
    /// while in UDP and none once direct; a probe every three seconds.
    @Test func configuredIntervalsPaceKeepalivesAndReprobes() throws {
        let config = try NodeConfig(parsing: KernelPathConfigTests.config("encap-keepalive = 1\nencap-reprobe = 3"))
        let counter = Counter()
        var policy = EncapPolicy(setting: .auto, keepaliveInterval: config.encapKeepalive * 1_000,
                                 reprobeInterval: config.encapReprobe * 1_000, makeNonce: { [counter] in counter.next() })
        _ = policy.track([peer], behindNAT: true, now: 0)
        for now in stride(from: UInt64(1_000), through: 2_000, by: 1_000) { _ = policy.tick(now: now) }
        #expect(policy.tick(now: 3_000) == [.startEncap(peer), .keepalive(peer)])
        #expect(policy.tick(now: 3_999).isEmpty && policy.nextDeadline == 4_000)
        #expect(policy.tick(now: 4_000) == [.keepalive(peer)])
        #expect(policy.tick(now: 5_000) == [.keepalive(peer)])
        #expect(policy.tick(now: 6_000) == [.keepalive(peer), .sendProbe(peer, nonce: Self.nonce(4))])
        // Silence (the NAT still drops what it has not seen): in UDP, probed again 3 s on.
        #expect(policy.tick(now: 9_000) == [.keepalive(peer), .sendProbe(peer, nonce: Self.nonce(5))])
        #expect(policy.probeAnswered(from: peer, nonce: Self.nonce(5), now: 9_020) == [.stopEncap(peer)])
        #expect(policy.tick(now: 60_000).isEmpty && policy.nextDeadline == nil)
    }

    @Test func encapIntervalsDefaultAndAreBounded() throws {
        let defaults = try NodeConfig(parsing: KernelPathConfigTests.config(""))
        #expect(defaults.encapKeepalive == 15 && defaults.encapReprobe == 60)
        for bad in ["encap-keepalive = 0", "encap-keepalive = 301", "encap-reprobe = 0", "encap-reprobe = 1m"] {
            #expect(throws: ConfigError.self, "\(bad)") { try NodeConfig(parsing: KernelPathConfigTests.config(bad)) }
        }
    }

    @Test func learnedEndpointsLapseButCommandedOnesStay() {
        var endpoints = EncapEndpoints(lifetime: 60_000)
        #expect(endpoints.isEmpty && endpoints.port(for: peer) == nil)
        endpoints.heard(peer, port: 40_001, now: 0)
        endpoints.start(other, port: 7541, now: 0)
        #expect(endpoints.port(for: peer) == 40_001 && endpoints.port(for: other) == 7541)
        endpoints.heard(peer, port: 40_002, now: 30_000)        // the NAT chose another port
        #expect(endpoints.port(for: peer) == 40_002)
        #expect(endpoints.expire(now: 89_999).isEmpty)
        #expect(endpoints.expire(now: 90_000) == [peer])
        #expect(endpoints.port(for: other) == 7541 && endpoints.expire(now: 1_000_000).isEmpty)
        endpoints.stop(other)
        #expect(endpoints.isEmpty)
    }
}
