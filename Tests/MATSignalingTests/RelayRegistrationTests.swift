import MATPacket
import MATSignaling
import Testing

/// The relay kinds of the UDP encapsulation (docs/signaling.md, "Relay").
@Suite struct RelayRegistrationTests {
    let key = SigningKey.generate()
    let hoa4 = IPAddress("198.51.100.10")!
    let hoa6 = IPAddress("2001:db8:1::10")!

    func open(_ bytes: [UInt8]) -> RelayRegistration? { bytes.withUnsafeBytes { RelayRegistration($0) } }
    func parse(_ bytes: [UInt8]) -> EncapWire.Frame? { bytes.withUnsafeBytes { EncapWire.parse($0) } }

    @Test func aSealedRegistrationOpensAndVerifiesWithTheNodeKeyOnly() throws {
        let nodeKey = RelayExchangeKey().publicKey, relayKey = RelayExchangeKey().publicKey
        let bytes = RelayRegistration.seal(hoas: [hoa4, hoa6], sequence: 0x0102_0304_0506_0708, nodeKey: nodeKey,
                                           relayKey: relayKey, with: key)
        #expect(bytes.count == 8 + 9 + 2 * 17 + 64 + 64)
        #expect(Array(bytes[51..<83]) == nodeKey && Array(bytes[83..<115]) == relayKey)
        #expect(Array(bytes.prefix(17)) == [0x4D, 0x41, 0x54, 0x75, 1, 5, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 2])
        #expect(Array(bytes[17..<22]) == [4, 198, 51, 100, 10] && bytes[22..<34].allSatisfy { $0 == 0 })
        #expect(bytes[34] == 6)
        #expect(parse(bytes) == .registration)
        let registration = try #require(open(bytes))
        #expect(registration.sequence == 0x0102_0304_0506_0708 && registration.hoas == [hoa4, hoa6])
        #expect(registration.nodeKey == nodeKey && registration.relayKey == relayKey)
        #expect(registration.verify(with: key.publicKey))
        #expect(!registration.verify(with: SigningKey.generate().publicKey))
        // No relay key yet: zero on the wire, nil when read.
        let first = RelayRegistration.seal(hoas: [hoa4], sequence: 1, nodeKey: nodeKey, relayKey: nil, with: key)
        #expect(first[66..<98].allSatisfy { $0 == 0 })
        #expect(try #require(open(first)).relayKey == nil)
    }

    /// A relay's answer (kind 8): the start of the node's key, the relay's two keys in
    /// order, its signature; exactly 152 bytes, shorter than the shortest registration it
    /// answers.
    @Test func anAnswerCarriesTheRelaysKeysAndIsShorterThanAnyRegistration() throws {
        let keys = (0..<3).map { _ in RelayExchangeKey().publicKey }
        let relay = SigningKey.generate()
        let bytes = RelayAnswer.seal(nodeKey: keys[0], agreedKey: keys[1], currentKey: keys[2], with: relay)
        #expect(bytes.count == 152 && Array(bytes.prefix(8)) == [0x4D, 0x41, 0x54, 0x75, 1, 8, 0, 0])
        #expect(parse(bytes) == .registrationAnswer)
        let answer = try #require(bytes.withUnsafeBytes { RelayAnswer($0) })
        #expect(answer.nodeKeyTag == Array(keys[0].prefix(16)) && answer.agreedKey == keys[1] && answer.currentKey == keys[2])
        #expect(answer.answers(keys[0]) && !answer.answers(keys[1]))
        #expect(parse(Array(bytes.dropLast())) == nil && parse(bytes + [0]) == nil)
        let shortest = RelayRegistration.seal(hoas: [hoa4], sequence: 1, nodeKey: keys[0], relayKey: nil, with: key)
        #expect(shortest.count == 162 && bytes.count < shortest.count)
    }

    /// The relay's signature covers the header, the node's whole exchange key (of which
    /// only 16 bytes travel) and both relay keys: it verifies with the relay's key for the
    /// node key answered, and with no other key, for no other node key (even one that
    /// starts alike), and after no changed bit.
    @Test func anAnswerVerifiesOnlyWithTheRelaysKeyForTheNodeKeyItAnswers() throws {
        let keys = (0..<3).map { _ in RelayExchangeKey().publicKey }
        let relay = SigningKey.generate()
        let bytes = RelayAnswer.seal(nodeKey: keys[0], agreedKey: keys[1], currentKey: keys[2], with: relay)
        let answer = try #require(bytes.withUnsafeBytes { RelayAnswer($0) })
        #expect(answer.verify(nodeKey: keys[0], with: relay.publicKey))
        #expect(!answer.verify(nodeKey: keys[0], with: SigningKey.generate().publicKey))
        var alike = keys[0]
        alike[31] ^= 1
        #expect(answer.answers(alike) && !answer.verify(nodeKey: alike, with: relay.publicKey))
        // An attacker's own answer, signed with its own key, fails the relay's.
        let forged = RelayAnswer.seal(nodeKey: keys[0], agreedKey: keys[2], currentKey: keys[2], with: SigningKey.generate())
        #expect(forged.withUnsafeBytes { RelayAnswer($0) }?.verify(nodeKey: keys[0], with: relay.publicKey) == false)
        for bit in 0..<(bytes.count * 8) {
            var changed = bytes
            changed[bit / 8] ^= 1 << (bit % 8)
            let verified = changed.withUnsafeBytes { RelayAnswer($0) }?.verify(nodeKey: keys[0], with: relay.publicKey) ?? false
            #expect(!verified, "bit \(bit)")
        }
    }

    /// Node and relay agree on one secret from each other's public half (and the secret is
    /// none of the bytes they send); another key agrees on another.
    @Test func nodeAndRelayAgreeOnTheSecretFromEachOthersPublicHalf() throws {
        let node = RelayExchangeKey(), relay = RelayExchangeKey()
        let atNode = try #require(node.nodeSecret(relay: relay.publicKey))
        let atRelay = try #require(relay.relaySecret(node: node.publicKey))
        #expect(atNode.bytes == atRelay.bytes)
        #expect(atNode.bytes != node.publicKey && atNode.bytes != relay.publicKey)
        #expect(try #require(RelayExchangeKey().nodeSecret(relay: relay.publicKey)).bytes != atNode.bytes)
        // The roles are part of the derivation: the relay's secret for the node's key is
        // not the node's for the relay's, were their halves swapped.
        #expect(try #require(relay.nodeSecret(relay: node.publicKey)).bytes != atNode.bytes)
        #expect(node.nodeSecret(relay: [UInt8](repeating: 0, count: 32)) == nil)
        #expect(node.nodeSecret(relay: Array(relay.publicKey.dropLast())) == nil)
    }

    @Test func everyChangedBitFailsTheSignatureOrTheFraming() throws {
        let bytes = RelayRegistration.seal(hoas: [hoa4], sequence: 7, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: key)
        var opened = 0
        for bit in 0..<(bytes.count * 8) {
            var mutated = bytes
            mutated[bit / 8] ^= 1 << UInt8(bit % 8)
            if let registration = open(mutated) {
                opened += 1
                #expect(!registration.verify(with: key.publicKey), "verifies with bit \(bit) flipped")
            }
        }
        // At least the sequence number's, the exchange keys' and the signature's bits leave
        // a registration that opens: the signature covers the exchange keys.
        #expect(opened >= 64 + 512 + 512)
    }

    @Test func malformedRegistrationsAreRefused() {
        let good = RelayRegistration.seal(hoas: [hoa4], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: key)
        #expect(open(Array(good.dropLast())) == nil && parse(Array(good.dropLast())) == nil)
        #expect(open(good + [0]) == nil)
        var noHoAs = good
        noHoAs[16] = 0
        #expect(parse(noHoAs) == nil)
        var fiveHoAs = good
        fiveHoAs[16] = 5
        #expect(parse(fiveHoAs) == nil)
        var badFamily = good
        badFamily[17] = 5
        #expect(parse(badFamily) == .registration && open(badFamily) == nil)
        var dirtyPadding = good
        dirtyPadding[30] = 1
        #expect(open(dirtyPadding) == nil)
        // A HoA listed twice is not a registration of two.
        let twice = RelayRegistration.seal(hoas: [hoa4, hoa4], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: key)
        #expect(parse(twice) == .registration && open(twice) == nil)
        // Every truncation is refused without trapping.
        for length in 0..<good.count { #expect(open(Array(good.prefix(length))) == nil) }
    }

    @Test func aRelayedPacketIsLaidOutAsAPacketAndNamesItsInnerAddresses() throws {
        var v4 = [UInt8](repeating: 0, count: 20)
        v4[0] = 0x45
        v4.replaceSubrange(12..<16, with: [198, 51, 100, 10])
        v4.replaceSubrange(16..<20, with: [203, 0, 113, 20])
        let header: [UInt8] = [0x4D, 0x41, 0x54, 0x75, 1, 6, 0, 0]
        let virtio = [UInt8](repeating: 0, count: 10)
        #expect(parse(header + virtio + v4) == .relayed)
        let inner = try #require((header + virtio + v4).withUnsafeBytes { EncapWire.innerAddresses($0) })
        #expect(inner.source == hoa4 && inner.destination == IPAddress("203.0.113.20")!)
        var v6 = [UInt8](repeating: 0, count: 40)
        v6[0] = 0x60
        v6.replaceSubrange(8..<24, with: IPv6Address("2001:db8:1::10")!.bytes)
        v6.replaceSubrange(24..<40, with: IPv6Address("2001:db8:2::20")!.bytes)
        let inner6 = try #require((header + virtio + v6).withUnsafeBytes { EncapWire.innerAddresses($0) })
        #expect(inner6.source == hoa6 && inner6.destination == IPAddress("2001:db8:2::20")!)
        // An IPv6 packet shorter than its header parses as a frame but names no addresses.
        let short6 = header + virtio + Array(v6.prefix(30))
        #expect(parse(short6) == .relayed && short6.withUnsafeBytes { EncapWire.innerAddresses($0) } == nil)
        #expect(parse(header + virtio + Array(v4.prefix(19))) == nil)
    }
}
