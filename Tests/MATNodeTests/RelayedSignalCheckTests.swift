@testable import MATNode
import MATPacket
import MATSignaling
import Testing

/// The attack of docs/security.md N4 on signaling through the relay: a peer P registered at
/// the relay names a victim address V as its MoA, gets the challenge for V through the
/// relay, and answers it with a datagram whose UDP source is forged to be the relay's
/// address and `encap-port` and whose origin is V. The node must not take V as where the
/// answer came from: only what the relay stamped with a secret the node agreed on with it
/// is its word (``RelayedSignalCheck``, what the engine decides before anything else).
@Suite struct RelayedSignalCheckTests {
    let nodeKey = SigningKey.generate(), peerKey = SigningKey.generate()
    let nodeHoA = IPAddress("198.51.100.10")!, peerHoA = IPAddress("198.51.100.20")!
    let nodeNAT = RelayTable.Binding(address: IPAddress("203.0.113.50")!, port: 40_001)
    let peerNAT = RelayTable.Binding(address: IPAddress("203.0.113.51")!, port: 40_002)
    let relay = RelayTable.Binding(address: IPAddress("192.0.2.1")!, port: 4_500)
    let victim = IPAddress("192.0.2.99")!

    /// The peer's answer to a challenge, framed by the peer for the relay.
    var answer: [UInt8] {
        RelayedSignal.wrap(SignalCodec.seal(SignalMessage(sequence: 3, sender: peerHoA, receiver: nodeHoA,
                                                          body: .bindingUpdate(moas: [victim], lifetime: 600)),
                                            with: peerKey))
    }

    /// The node and the peer registered with a real forwarder, with the secrets each
    /// agreed on with it.
    func registered() -> (forwarder: RelayForwarder, node: RelayTestNode, peer: RelayTestNode) {
        var forwarder = RelayForwarder(pinnedKeys: [nodeHoA: nodeKey.publicKey, peerHoA: peerKey.publicKey])
        let node = RelayTestNode(key: nodeKey, hoas: [nodeHoA], binding: nodeNAT)
        let peer = RelayTestNode(key: peerKey, hoas: [peerHoA], binding: peerNAT)
        #expect(node.register(with: &forwarder, sequence: 1, now: 0) == .accepted)
        #expect(peer.register(with: &forwarder, sequence: 1, now: 0) == .accepted)
        return (forwarder, node, peer)
    }

    func origin(_ datagram: [UInt8], from source: RelayTable.Binding? = nil, secrets: RelaySecrets) -> IPAddress? {
        datagram.withUnsafeBytes {
            RelayedSignalCheck.origin($0, from: source ?? relay, relay: relay, secrets: secrets, now: 10)
        }
    }

    /// What the relay sends the node: the answer routed and stamped by a real forwarder
    /// with both nodes registered, and the node's secrets.
    func relayed() throws -> (datagram: [UInt8], secrets: RelaySecrets) {
        let parts = registered()
        var forwarder = parts.forwarder
        var datagram = answer
        let target = datagram.withUnsafeMutableBytes { forwarder.routeSignal($0, from: peerNAT, now: 10) }
        #expect(try #require(target) == nodeNAT)
        return (datagram, parts.node.secrets)
    }

    @Test func whatTheRelayStampedIsTakenFromItsOrigin() throws {
        let (datagram, secrets) = try relayed()
        #expect(origin(datagram, secrets: secrets) == peerNAT.address)
        // Only from the relay's address and port, and only with a relay configured.
        #expect(origin(datagram, from: RelayTable.Binding(address: relay.address, port: 4_501), secrets: secrets) == nil)
        #expect(origin(datagram, from: peerNAT, secrets: secrets) == nil)
        #expect(datagram.withUnsafeBytes { RelayedSignalCheck.origin($0, from: relay, relay: nil, secrets: secrets, now: 10) } == nil)
        // Nor with secrets agreed on with another relay.
        #expect(origin(datagram, secrets: registered().node.secrets) == nil)
    }

    @Test func aForgedOriginFromTheRelaysAddressIsRefused() throws {
        let (genuine, secrets) = try relayed()
        // As the peer sent it (zero origin and MAC), and with the origin forged and no
        // MAC: what the source-address check alone took before.
        #expect(origin(answer, secrets: secrets) == nil)
        let zeroMAC = stampedWithoutMAC(answer, origin: victim)
        #expect(zeroMAC.withUnsafeBytes { RelayedSignal.origin($0) } == victim)
        #expect(origin(zeroMAC, secrets: secrets) == nil)
        // The MAC the peer can compute: with its own secret, as the relay stamps for it
        // (the peer's secret, agreed on with the same relay in the same way).
        let (forwarder, _, peer) = registered()
        let peerSecret = try #require(forwarder.table.secret(of: peerNAT))
        var ownSecret = answer
        ownSecret.withUnsafeMutableBytes { RelayedSignal.stamp(victim, for: peerSecret, in: $0) }
        #expect(peer.authenticates(ownSecret, now: 10))
        #expect(origin(ownSecret, secrets: secrets) == nil)
        // A genuine stamp (the peer's own address) with the origin rewritten to the victim.
        var rewritten = genuine
        let genuineMAC = Array(rewritten[RelayedSignal.macOffset..<RelayedSignal.signalOffset])
        rewritten.withUnsafeMutableBytes { RelayedSignal.stamp(victim, for: RelaySecret.random(), in: $0) }
        rewritten.replaceSubrange(RelayedSignal.macOffset..<RelayedSignal.signalOffset, with: genuineMAC)
        #expect(rewritten.withUnsafeBytes { RelayedSignal.origin($0) } == victim)
        #expect(origin(rewritten, secrets: secrets) == nil)
    }

    /// `datagram` with `origin` written where the relay writes it and the MAC left zero.
    func stampedWithoutMAC(_ datagram: [UInt8], origin: IPAddress) -> [UInt8] {
        var bytes = datagram
        bytes.withUnsafeMutableBytes { RelayedSignal.stamp(origin, for: RelaySecret.random(), in: $0) }
        bytes.replaceSubrange(RelayedSignal.macOffset..<RelayedSignal.signalOffset,
                              with: [UInt8](repeating: 0, count: RelayedSignal.macLength))
        return bytes
    }
}
