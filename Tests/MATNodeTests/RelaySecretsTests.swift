@testable import MATNode
import MATPacket
import MATSignaling
import Testing

/// A node of the relay's tests: its secrets (``RelaySecrets``), registering with a real
/// ``RelayForwarder`` and taking its answers, as matd's service and engine threads do. A
/// class, so that `#expect` can call what changes it.
final class RelayTestNode {
    let key: SigningKey
    let hoas: [IPAddress]
    let binding: RelayTable.Binding
    var secrets: RelaySecrets
    /// Every registration and answer sent between this node and the relay, as an observer
    /// of the path between them records them.
    var observed: [[UInt8]] = []

    /// `relayKey`: the relay's key pinned (`[relay] public-key`); nil: none.
    init(key: SigningKey = .generate(), hoas: [IPAddress], binding: RelayTable.Binding, relayKey: VerifyingKey? = nil) {
        secrets = RelaySecrets(retention: 65_000, relaySigningKey: relayKey)
        self.key = key
        self.hoas = hoas
        self.binding = binding
    }

    /// Registers with `forwarder` at `now`, and takes its answer (unless `loseAnswer`).
    @discardableResult
    func register(with forwarder: inout RelayForwarder, sequence: UInt64, now: UInt64,
                           loseAnswer: Bool = false) -> RelayForwarder.RegistrationOutcome {
        let keys = secrets.registration(now: now)
        let bytes = RelayRegistration.seal(hoas: hoas, sequence: sequence, nodeKey: keys.nodeKey, relayKey: keys.relayKey,
                                           with: key)
        observed.append(bytes)
        let outcome = bytes.withUnsafeBytes { forwarder.register($0, from: binding, now: now) }
        if let answer = forwarder.answer {
            observed.append(answer)
            if !loseAnswer, let parsed = answer.withUnsafeBytes({ RelayAnswer($0) }) { secrets.take(parsed, now: now) }
        }
        return outcome
    }

    /// Whether this node takes `datagram`'s MAC at `now`.
    func authenticates(_ datagram: [UInt8], now: UInt64) -> Bool {
        datagram.withUnsafeBytes { secrets.authenticate($0, now: now) }
    }
}

/// The relay secret's key agreement (docs/signaling.md, "Relay secrets"; docs/security.md,
/// N4): what goes between node and relay does not give the secret away, and a rotation on
/// either side loses no relayed signal.
@Suite struct RelaySecretsTests {
    let nodeHoA = IPAddress("198.51.100.10")!, peerHoA = IPAddress("198.51.100.20")!
    let nodeNAT = RelayTable.Binding(address: IPAddress("203.0.113.50")!, port: 40_001)
    let peerNAT = RelayTable.Binding(address: IPAddress("203.0.113.51")!, port: 40_002)
    let peerKey = SigningKey.generate()

    /// A forwarder with both test nodes' keys pinned and relay keys rotated every `rotation` ms.
    func forwarder(_ node: RelayTestNode, rotation: UInt64 = 600_000, signingKey: SigningKey = .generate()) -> RelayForwarder {
        RelayForwarder(pinnedKeys: [nodeHoA: node.key.publicKey, peerHoA: peerKey.publicKey],
                       exchangeKeys: RelayExchangeKeys(rotationInterval: rotation), signingKey: signingKey)
    }

    /// An answer with these keys, signed with a key of its own (not the relay's).
    func answer(nodeKey: [UInt8], agreedKey: [UInt8], currentKey: [UInt8]) -> RelayAnswer {
        RelayAnswer.seal(nodeKey: nodeKey, agreedKey: agreedKey, currentKey: currentKey, with: .generate())
            .withUnsafeBytes { RelayAnswer($0)! }
    }

    /// A signal from the peer to the node, routed and stamped by `forwarder` at `now`.
    func relayed(_ forwarder: inout RelayForwarder, now: UInt64, sequence: UInt64 = 1) -> [UInt8] {
        var datagram = RelayedSignal.wrap(SignalCodec.seal(SignalMessage(sequence: sequence, sender: peerHoA, receiver: nodeHoA,
                                                                          body: .challenge(nonce: Nonce(high: 1, low: 2), sequence: 1)),
                                                            with: peerKey))
        let target = datagram.withUnsafeMutableBytes { forwarder.routeSignal($0, from: peerNAT, now: now) }
        #expect(target == nodeNAT)
        return datagram
    }

    func registerPeer(_ forwarder: inout RelayForwarder, now: UInt64) {
        let peer = RelayTestNode(key: peerKey, hoas: [peerHoA], binding: peerNAT)
        #expect(peer.register(with: &forwarder, sequence: now + 1, now: now) == .accepted)
    }

    /// The attack of N4 as it was: the secret read off the registration. Every 32 bytes of
    /// every registration and answer between node and relay, taken as the secret, stamp a
    /// signal the node refuses; the relay's own stamp it takes.
    @Test func noSecretCanBeReadOffWhatGoesBetweenNodeAndRelay() {
        let node = RelayTestNode(hoas: [nodeHoA], binding: nodeNAT)
        var relay = forwarder(node)
        registerPeer(&relay, now: 0)
        for step in 0..<3 { #expect(node.register(with: &relay, sequence: UInt64(step + 1), now: UInt64(step) * 1_000) == .accepted) }
        let genuine = relayed(&relay, now: 3_000)
        #expect(node.authenticates(genuine, now: 3_000))
        let stampedSecret = relay.table.secret(of: nodeNAT)!.bytes
        var tried = 0
        for bytes in node.observed {
            #expect(bytes.count >= 32)
            for start in 0...(bytes.count - 32) {
                let window = Array(bytes[start..<start + 32])
                #expect(window != stampedSecret)
                var forged = genuine
                forged.withUnsafeMutableBytes { RelayedSignal.stamp(IPAddress("192.0.2.99")!, for: RelaySecret(window)!, in: $0) }
                #expect(!node.authenticates(forged, now: 3_000))
                tried += 1
            }
        }
        // 3 registrations of 162 bytes and 3 answers of 152: (131 + 121) * 3 windows.
        #expect(node.observed.count == 6 && tried == 756)
    }

    /// The first registration names no relay key: the node learns the secret from the
    /// answer. From then on it names the relay's key and knows each secret before the
    /// relay uses it.
    @Test func theNodeKnowsTheSecretBeforeTheRelayUsesIt() {
        let node = RelayTestNode(hoas: [nodeHoA], binding: nodeNAT)
        var relay = forwarder(node)
        registerPeer(&relay, now: 0)
        #expect(node.register(with: &relay, sequence: 1, now: 0) == .accepted)
        #expect(node.secrets.relayKey != nil && node.secrets.count(now: 0) == 1)
        #expect(node.authenticates(relayed(&relay, now: 1), now: 1))
        // A registration every 15 s (here one before the rotation) names the secret in use.
        registerPeer(&relay, now: 290_000)
        #expect(node.register(with: &relay, sequence: 2, now: 290_000) == .accepted)
        // The node's exchange key rotates (every 5 minutes): the registration's answer is
        // lost, and still the new secret is taken, and the old one too while the relay
        // may not have the registration yet.
        let before = relayed(&relay, now: 300_000)
        #expect(node.register(with: &relay, sequence: 3, now: 300_000, loseAnswer: true) == .accepted)
        let after = relayed(&relay, now: 300_001)
        #expect(before != after)
        #expect(node.authenticates(after, now: 300_001) && node.authenticates(before, now: 300_001))
        #expect(node.secrets.count(now: 300_001) == 2)
        // The old secret lapses when no relay can use it any more (the binding's lifetime
        // and a margin after the last registration that named it); the new one stays.
        #expect(node.register(with: &relay, sequence: 4, now: 315_000) == .accepted)
        #expect(!node.authenticates(before, now: 365_001) && node.authenticates(after, now: 365_001))
        #expect(node.secrets.count(now: 365_001) == 1)
    }

    /// The relay's exchange key rotates (every 10 minutes; here every minute): a
    /// registration that names the previous one keeps its secret, the answer names the new
    /// key, and the node agrees on the next secret with it before its registration reaches
    /// the relay. No relayed signal is refused across it, with the node's rotation (every 5
    /// minutes) in between too, when one answer in each relay rotation interval arrives.
    @Test func noRelayedSignalIsLostAcrossEitherSidesRotation() {
        let node = RelayTestNode(hoas: [nodeHoA], binding: nodeNAT)
        var relay = forwarder(node, rotation: 60_000)
        registerPeer(&relay, now: 0)
        var refused = 0, secrets: Set<[UInt8]> = []
        for step in 0..<80 {
            let now = UInt64(step) * 15_000
            // Three answers of four lost: one a minute arrives.
            #expect(node.register(with: &relay, sequence: UInt64(step + 1), now: now, loseAnswer: step % 4 != 0) == .accepted)
            if step % 4 == 3 { registerPeer(&relay, now: now) }
            secrets.insert(relay.table.secret(of: nodeNAT)!.bytes)
            for offset: UInt64 in [0, 7_000, 14_999] where !node.authenticates(relayed(&relay, now: now + offset), now: now + offset) {
                refused += 1
            }
        }
        #expect(refused == 0)
        // 20 minutes: the relay's key rotated every minute and the node's every 5, and
        // the secret followed each.
        #expect(secrets.count >= 19)
    }

    /// A relay that lost its keys (a restart) agrees with its current key; the node takes
    /// the secret from its answer. An answer to no exchange key of the node's, or from a
    /// key of small order, changes nothing.
    @Test func aRestartedRelayIsFollowedAndStrayAnswersChangeNothing() {
        let node = RelayTestNode(hoas: [nodeHoA], binding: nodeNAT)
        var relay = forwarder(node)
        registerPeer(&relay, now: 0)
        node.register(with: &relay, sequence: 1, now: 0)
        var restarted = forwarder(node)
        registerPeer(&restarted, now: 1_000)
        #expect(node.register(with: &restarted, sequence: 2, now: 1_000) == .accepted)
        #expect(node.authenticates(relayed(&restarted, now: 1_001), now: 1_001))
        let other = RelayExchangeKey().publicKey
        let stray = answer(nodeKey: RelayExchangeKey().publicKey, agreedKey: other, currentKey: other)
        let tookStray = node.secrets.take(stray, now: 2_000)
        #expect(!tookStray)
        let nodeKey = node.secrets.registration(now: 2_000).nodeKey
        let smallOrder = answer(nodeKey: nodeKey, agreedKey: [UInt8](repeating: 0, count: 32), currentKey: other)
        let tookSmallOrder = node.secrets.take(smallOrder, now: 2_000)
        #expect(!tookSmallOrder)
        #expect(node.secrets.count(now: 2_000) == 2)
    }

    /// N4's remaining attack: someone who reads the node's registrations (its exchange key)
    /// and sends from the relay's address answers with an exchange key of its own, and
    /// stamps signals with the secret that gives. With the relay's key pinned the node
    /// refuses that answer and the signals; the relay's own answers it takes. Without the
    /// pin (as before) it takes both, which is what the pin is for.
    @Test func aPinnedRelayKeyRefusesAnAnswerTheRelayDidNotSign() throws {
        let relayKey = SigningKey.generate()
        for pinned in [true, false] {
            let node = RelayTestNode(hoas: [nodeHoA], binding: nodeNAT, relayKey: pinned ? relayKey.publicKey : nil)
            var relay = forwarder(node, signingKey: relayKey)
            registerPeer(&relay, now: 0)
            #expect(node.register(with: &relay, sequence: 1, now: 0) == .accepted)
            #expect(node.authenticates(relayed(&relay, now: 1), now: 1), "the relay's own answer is taken")
            // The attacker's answer, to the exchange key the node's registration carries.
            let registration = try #require(node.observed.first.flatMap { bytes in bytes.withUnsafeBytes { RelayRegistration($0) } })
            let exchange = RelayExchangeKey()
            let forged = RelayAnswer.seal(nodeKey: registration.nodeKey, agreedKey: exchange.publicKey,
                                          currentKey: exchange.publicKey, with: .generate())
            let took = node.secrets.take(try #require(forged.withUnsafeBytes { RelayAnswer($0) }), now: 2)
            var signal = relayed(&relay, now: 3)
            signal.withUnsafeMutableBytes {
                RelayedSignal.stamp(IPAddress("192.0.2.99")!, for: exchange.relaySecret(node: registration.nodeKey)!, in: $0)
            }
            #expect(took == !pinned && node.authenticates(signal, now: 3) == !pinned, "pinned: \(pinned)")
        }
    }

    /// A node whose answers are all lost while the relay rotates twice (its key the node
    /// names is gone) has no secret for the relay's stamps. When answers come through
    /// again, the first refused signal asks for a registration at once: one or two signals
    /// lost (one a second), not those of a whole registration interval (here 7: the next
    /// registration came 7 s after the loss ended). Refusals ask for at most one registration every 2 s, however
    /// many come (a forger's flood from the relay's address).
    @Test func aNodeThatMissedEveryAnswerRecoversAtTheFirstRefusedSignal() {
        func run(recovering: Bool) -> (lostAfter: Int, asked: Int, registrations: Int) {
            let node = RelayTestNode(hoas: [nodeHoA], binding: nodeNAT)
            var relay = forwarder(node)
            var schedule = RelayRegistrationSchedule(interval: 15_000, now: 0)
            let lossEnds: UInt64 = 1_300_000
            var lostAfter = 0, asked = 0, registrations = 0, sequence: UInt64 = 0
            for now in stride(from: UInt64(0), to: 1_500_000, by: 1_000) {
                if now % 15_000 == 0 { registerPeer(&relay, now: now) }
                if node.secrets.takeRecovery() { schedule.registerNow(now) }
                if schedule.isDue(now: now) {
                    sequence += 1
                    node.register(with: &relay, sequence: sequence, now: now, loseAnswer: now >= 15_000 && now < lossEnds)
                    schedule.sent(now: now)
                    registrations += 1
                }
                guard !node.authenticates(relayed(&relay, now: now, sequence: now + 1), now: now) else { continue }
                if now >= lossEnds { lostAfter += 1 }
                if recovering, node.secrets.refused(now: now) { asked += 1 }
            }
            return (lostAfter, asked, registrations)
        }
        let recovering = run(recovering: true), before = run(recovering: false)
        // One signal a second: the refusal that asks, and one more if the last ask was
        // less than 2 s before.
        #expect(recovering.lostAfter >= 1 && recovering.lostAfter <= 2 && before.lostAfter == 7,
                "recovering \(recovering), before \(before)")
        // Refused from the relay's second rotation (1,200 s) to the end of the loss: one
        // registration asked for every 2 s at most.
        #expect(recovering.asked >= 2 && recovering.asked <= 100_000 / 2_000 + 1, "\(recovering)")
        #expect(recovering.registrations <= before.registrations + recovering.asked)

        var secrets = RelaySecrets(retention: 65_000)
        var granted = 0
        for now in stride(from: UInt64(0), to: 10_000, by: 1) where secrets.refused(now: now) { granted += 1 }
        #expect(granted == 5, "10,000 refusals in 10 s ask for one registration every 2 s")
        let first = secrets.takeRecovery(), second = secrets.takeRecovery()
        #expect(first && !second, "asked once, taken once")
    }
}
