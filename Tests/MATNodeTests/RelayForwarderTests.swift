@testable import MATNode
import MATPacket
import MATSignaling
import Testing

/// `forwarder`'s outcome for the registration `bytes` from `sender` at `now` (for the relay's tests).
func register(_ forwarder: inout RelayForwarder, _ bytes: [UInt8], from sender: RelayTable.Binding,
              now: UInt64 = 0) -> RelayForwarder.RegistrationOutcome {
    bytes.withUnsafeBytes { forwarder.register($0, from: sender, now: now) }
}

/// A relay's handling of registrations and relayed packets (docs/signaling.md, "Relay"),
/// with real signatures and the clock in the test's hands.
@Suite struct RelayForwarderTests {
    let vmKey = SigningKey.generate(), cnKey = SigningKey.generate()
    let vmHoA = IPAddress("198.51.100.10")!, cnHoA = IPAddress("198.51.100.20")!
    let vmNAT = RelayTable.Binding(address: IPAddress("203.0.113.50")!, port: 40_001)
    let cnNAT = RelayTable.Binding(address: IPAddress("203.0.113.51")!, port: 40_002)

    func route(_ forwarder: inout RelayForwarder, from source: IPAddress, to destination: IPAddress,
               sender: RelayTable.Binding, now: UInt64 = 10) -> RelayTable.Binding? {
        var packet = [UInt8](repeating: 0, count: 20)
        packet[0] = 0x45
        guard case .v4(let s) = source, case .v4(let d) = destination else { return nil }
        packet.replaceSubrange(12..<16, with: s.bytes)
        packet.replaceSubrange(16..<20, with: d.bytes)
        let datagram: [UInt8] = [0x4D, 0x41, 0x54, 0x75, 1, 6, 0, 0] + [UInt8](repeating: 0, count: 10) + packet
        return datagram.withUnsafeBytes { forwarder.route($0, from: sender, now: now) }
    }

    @Test func signedRegistrationsLetTwoNodesReachEachOtherAndNothingElse() {
        var forwarder = RelayForwarder(pinnedKeys: [vmHoA: vmKey.publicKey, cnHoA: cnKey.publicKey])
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: vmKey), from: vmNAT) == .accepted)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [cnHoA], sequence: 5, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: cnKey), from: cnNAT) == .accepted)
        #expect(route(&forwarder, from: vmHoA, to: cnHoA, sender: vmNAT) == cnNAT)
        #expect(route(&forwarder, from: cnHoA, to: vmHoA, sender: cnNAT) == vmNAT)
        // The CN's NAT cannot send as the VM's HoA.
        #expect(route(&forwarder, from: vmHoA, to: cnHoA, sender: cnNAT) == nil)
        #expect(forwarder.counters.forwarded == 2 && forwarder.counters.unregisteredSource == 1)
        #expect(forwarder.counters.registrations == 2 && forwarder.counters.registrationsRefused == 0)
    }

    /// A signaling message through the relay (``RelayedSignal``) goes to the binding that
    /// registered its receiver HoA, only from the binding that registered its sender HoA,
    /// stamped with the sender binding's address (the relay's word on where it came from);
    /// the message itself is unchanged.
    @Test func aRelayedSignalGoesToItsReceiverStampedWithItsSendersAddress() {
        var forwarder = RelayForwarder(pinnedKeys: [vmHoA: vmKey.publicKey, cnHoA: cnKey.publicKey])
        let vm = RelayTestNode(key: vmKey, hoas: [vmHoA], binding: vmNAT)
        let cn = RelayTestNode(key: cnKey, hoas: [cnHoA], binding: cnNAT)
        #expect(vm.register(with: &forwarder, sequence: 1, now: 0) == .accepted)
        #expect(cn.register(with: &forwarder, sequence: 1, now: 0) == .accepted)
        let message = SignalCodec.seal(SignalMessage(sequence: 0, sender: vmHoA, receiver: cnHoA,
                                                     body: .challenge(nonce: Nonce(high: 1, low: 2), sequence: 0)),
                                       with: vmKey)
        func routeSignal(_ bytes: [UInt8], from sender: RelayTable.Binding) -> (RelayTable.Binding?, [UInt8]) {
            var datagram = bytes
            let target = datagram.withUnsafeMutableBytes { forwarder.routeSignal($0, from: sender, now: 10) }
            return (target, datagram)
        }
        let (target, sent) = routeSignal(RelayedSignal.wrap(message), from: vmNAT)
        #expect(target == cnNAT)
        #expect(sent.withUnsafeBytes { RelayedSignal.origin($0) } == vmNAT.address)
        #expect(Array(sent[RelayedSignal.signalOffset...]) == message)
        // Stamped for the receiver: the secret the CN agreed on authenticates it, the
        // sender's does not.
        #expect(cn.authenticates(sent, now: 10))
        #expect(!vm.authenticates(sent, now: 10))
        // The CN's binding cannot speak as the VM's HoA; nobody registered 198.51.100.40.
        #expect(routeSignal(RelayedSignal.wrap(message), from: cnNAT).0 == nil)
        let stranger = SignalCodec.seal(SignalMessage(sequence: 0, sender: vmHoA, receiver: IPAddress("198.51.100.40")!,
                                                      body: .challenge(nonce: Nonce(high: 1, low: 2), sequence: 0)),
                                        with: vmKey)
        #expect(routeSignal(RelayedSignal.wrap(stranger), from: vmNAT).0 == nil)
        #expect(forwarder.counters.signalsForwarded == 1 && forwarder.counters.forwarded == 0
                && forwarder.counters.unregisteredSource == 1 && forwarder.counters.unknownDestination == 1)
    }

    /// The relay keeps the secret it agreed on with each binding's latest accepted
    /// registration, for the signals it passes to that binding, and answers with its half
    /// of the agreement: the node derives the same secret. One a registration was refused
    /// with is not taken, and it gets no answer.
    @Test func theRelayKeepsTheSecretItAgreedOnWithABinding() throws {
        var forwarder = RelayForwarder(pinnedKeys: [vmHoA: vmKey.publicKey])
        let node = RelayExchangeKey()
        #expect(forwarder.table.secret(of: vmNAT) == nil)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 1, nodeKey: node.publicKey, relayKey: nil,
                                                            with: vmKey), from: vmNAT) == .accepted)
        let answer = try #require(forwarder.answer.flatMap { bytes in bytes.withUnsafeBytes { RelayAnswer($0) } })
        #expect(answer.answers(node.publicKey) && answer.agreedKey == answer.currentKey)
        let first = try #require(node.nodeSecret(relay: answer.agreedKey))
        #expect(try #require(forwarder.table.secret(of: vmNAT)).bytes == first.bytes)
        // A new exchange key naming the relay's: the node knew the secret before sending.
        let next = RelayExchangeKey()
        let second = try #require(next.nodeSecret(relay: answer.currentKey))
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 2, nodeKey: next.publicKey,
                                                            relayKey: answer.currentKey, with: vmKey), from: vmNAT) == .accepted)
        #expect(try #require(forwarder.table.secret(of: vmNAT)).bytes == second.bytes && second.bytes != first.bytes)
        // Signed by another key (someone putting their exchange key in the VM's registration).
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 3, nodeKey: RelayExchangeKey().publicKey,
                                                            relayKey: nil, with: cnKey), from: vmNAT) == .badSignature)
        #expect(forwarder.answer == nil)
        #expect(try #require(forwarder.table.secret(of: vmNAT)).bytes == second.bytes)
        // A node exchange key of small order agrees on a secret anyone knows: refused.
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 4, nodeKey: [UInt8](repeating: 0, count: 32),
                                                            relayKey: nil, with: vmKey), from: vmNAT) == .malformed)
        #expect(try #require(forwarder.table.secret(of: vmNAT)).bytes == second.bytes)
    }

    /// A HoA without a pinned key registers once the key the IMS binds to it is learned;
    /// after the node rotates its key, the learned one fails (reported, to be looked up
    /// again) until the new one is learned. A pinned key is never replaced.
    @Test func aKeyFromTheIMSLetsAHoARegisterAndIsReplacedWhenTheNodeRotatesIt() {
        var forwarder = RelayForwarder(pinnedKeys: [cnHoA: cnKey.publicKey])
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: vmKey), from: vmNAT)
                == .noKey([vmHoA]))
        let learned = forwarder.learn(vmKey.publicKey, for: vmHoA)
        #expect(learned)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 2, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: vmKey), from: vmNAT) == .accepted)
        let rotated = SigningKey.generate()
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 3, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: rotated), from: vmNAT)
                == .learnedKeyFailed([vmHoA]))
        let relearned = forwarder.learn(rotated.publicKey, for: vmHoA)
        #expect(relearned)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 4, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: rotated), from: vmNAT) == .accepted)
        // The pinned key stays, whatever is learned for its HoA.
        let overPinned = forwarder.learn(rotated.publicKey, for: cnHoA)
        #expect(!overPinned)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [cnHoA], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: rotated), from: cnNAT)
                == .badSignature)
        #expect(forwarder.counters.keysLearned == 2 && forwarder.counters.keysRefused == 1
                && forwarder.counters.badSignatures == 2 && forwarder.counters.registrations == 2)
    }

    @Test func aWrongKeyAnUnknownHoAAndAReplayAreRefusedAndCounted() {
        var forwarder = RelayForwarder(pinnedKeys: [vmHoA: vmKey.publicKey])
        // The CN's key signing for the VM's HoA: a forged takeover.
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 9, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: cnKey), from: cnNAT)
                == .badSignature)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [cnHoA], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: cnKey), from: cnNAT)
                == .noKey([cnHoA]))
        let first = RelayRegistration.seal(hoas: [vmHoA], sequence: 3, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: vmKey)
        #expect(register(&forwarder, first, from: vmNAT) == .accepted)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 2, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: vmKey), from: cnNAT)
                == .replayed)
        #expect(register(&forwarder, Array(first.dropLast()), from: vmNAT) == .malformed)
        #expect(forwarder.counters.badSignatures == 1 && forwarder.counters.registrationsRefused == 4)
        #expect(forwarder.table.hoas(of: vmNAT) == [vmHoA] && forwarder.table.hoas(of: cnNAT).isEmpty)
        // Nothing relayed from a binding that never registered, nor to a HoA nobody holds.
        #expect(route(&forwarder, from: cnHoA, to: vmHoA, sender: cnNAT) == nil)
        #expect(route(&forwarder, from: vmHoA, to: cnHoA, sender: vmNAT) == nil)
        #expect(forwarder.counters.unknownSender == 1 && forwarder.counters.unknownDestination == 1)
    }

    /// A dual-stack node registers two HoAs without a key: both are reported at its first
    /// registration (so both are looked up together), and its next one is taken; after it
    /// rotates its key, both learned keys are reported failing at once, and again the next
    /// registration is taken. A pinned key that fails is a bad signature, whatever else.
    @Test func everyHoAWithoutAWorkingKeyIsReportedAtOnce() {
        let vm6 = IPAddress("2001:db8:100::10")!
        var forwarder = RelayForwarder(pinnedKeys: [cnHoA: cnKey.publicKey])
        let exchange = RelayExchangeKey().publicKey
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA, vm6], sequence: 1, nodeKey: exchange, relayKey: nil, with: vmKey),
                         from: vmNAT) == .noKey([vmHoA, vm6]))
        for hoa in [vmHoA, vm6] { forwarder.learn(vmKey.publicKey, for: hoa) }
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA, vm6], sequence: 2, nodeKey: exchange, relayKey: nil, with: vmKey),
                         from: vmNAT) == .accepted)
        let rotated = SigningKey.generate()
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA, vm6], sequence: 3, nodeKey: exchange, relayKey: nil, with: rotated),
                         from: vmNAT) == .learnedKeyFailed([vmHoA, vm6]))
        for hoa in [vmHoA, vm6] { forwarder.learn(rotated.publicKey, for: hoa) }
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA, vm6], sequence: 4, nodeKey: exchange, relayKey: nil, with: rotated),
                         from: vmNAT) == .accepted)
        // With a pinned HoA that fails too: refused as a forgery, nothing to look up.
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA, cnHoA], sequence: 5, nodeKey: exchange, relayKey: nil, with: vmKey),
                         from: vmNAT) == .badSignature)
        #expect(forwarder.table.hoas(of: vmNAT) == [vmHoA, vm6])
    }

    /// The learned keys are bounded, and the keys of HoAs no binding holds (anyone can make
    /// the relay learn them by naming them in a registration) are dropped to make room:
    /// a node that registers keeps its key, and a new node's key is taken. Only when every
    /// learned HoA is held is a new key refused.
    @Test func learnedKeysOfHoAsNoBindingHoldsMakeRoomForNewOnes() {
        let strangers = [IPAddress("198.51.100.30")!, IPAddress("198.51.100.31")!]
        var forwarder = RelayForwarder(learnedCapacity: 3)
        let exchange = RelayExchangeKey().publicKey
        forwarder.learn(vmKey.publicKey, for: vmHoA)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 1, nodeKey: exchange, relayKey: nil, with: vmKey),
                         from: vmNAT) == .accepted)
        for hoa in strangers { forwarder.learn(SigningKey.generate().publicKey, for: hoa) }
        // Full: the strangers' keys go, the VM's stays.
        let taken = forwarder.learn(cnKey.publicKey, for: cnHoA)
        #expect(taken && forwarder.counters.keysEvicted == 2 && forwarder.counters.keysRefused == 0)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [cnHoA], sequence: 1, nodeKey: exchange, relayKey: nil, with: cnKey),
                         from: cnNAT) == .accepted)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [vmHoA], sequence: 2, nodeKey: exchange, relayKey: nil, with: vmKey),
                         from: vmNAT) == .accepted)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [strangers[0]], sequence: 1, nodeKey: exchange, relayKey: nil, with: vmKey),
                         from: vmNAT) == .noKey([strangers[0]]))
        // Room for one more, then every learned HoA but that one is held.
        forwarder.learn(SigningKey.generate().publicKey, for: strangers[0])
        let other = SigningKey.generate()
        let third = IPAddress("198.51.100.32")!
        let thirdTaken = forwarder.learn(other.publicKey, for: third)
        #expect(thirdTaken && forwarder.counters.keysEvicted == 3)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [third], sequence: 1, nodeKey: exchange, relayKey: nil, with: other),
                         from: RelayTable.Binding(address: IPAddress("203.0.113.52")!, port: 40_003)) == .accepted)
        let refused = forwarder.learn(SigningKey.generate().publicKey, for: strangers[1])
        #expect(!refused && forwarder.counters.keysRefused == 1 && forwarder.counters.keysLearned == 6)
    }
}
