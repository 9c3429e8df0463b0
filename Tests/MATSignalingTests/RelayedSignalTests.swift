import Crypto
import MATPacket
@testable import MATSignaling
import Testing

/// A signaling message through a relay (encapsulation kind 7, ``RelayedSignal``).
@Suite struct RelayedSignalTests {
    func parse(_ bytes: [UInt8]) -> EncapWire.Frame? { bytes.withUnsafeBytes { EncapWire.parse($0) } }

    func signal(from sender: IPAddress, to receiver: IPAddress, padded: Int = 0) -> [UInt8] {
        SignalCodec.seal(SignalMessage(sequence: 7, sender: sender, receiver: receiver,
                                       body: .bindingUpdate(moas: [sender.family == .ipv4 ? Fixture.moa4 : Fixture.moa6],
                                                            lifetime: 600)),
                         with: Fixture.keyA, paddedTo: padded)
    }

    /// The framing, the two HoAs the relay routes by, the origin it stamps, and the message
    /// the receiver gets back, byte for byte, for both families.
    @Test func aWrappedMessageIsRoutedByItsHoAsAndStampedWithItsOrigin() throws {
        for (sender, receiver, origin) in [(Fixture.hoaA4, Fixture.hoaB4, Fixture.moa4b), (Fixture.hoaA6, Fixture.hoaB6, Fixture.moa6b)] {
            let message = signal(from: sender, to: receiver)
            var datagram = RelayedSignal.wrap(message)
            #expect(datagram.count == RelayedSignal.signalOffset + message.count)
            #expect(parse(datagram) == .relayedSignal)
            #expect(RelayedSignal.receiver(ofSignal: message) == receiver)
            let hoas = datagram.withUnsafeBytes { RelayedSignal.addresses($0) }
            #expect(hoas?.sender == sender && hoas?.receiver == receiver)
            // The sender leaves the origin and MAC zero: no origin until the relay writes one.
            #expect(datagram.withUnsafeBytes { RelayedSignal.origin($0) } == nil)
            #expect(datagram[RelayedSignal.originOffset..<RelayedSignal.signalOffset].allSatisfy { $0 == 0 })
            let secret = RelaySecret.random()
            #expect(!datagram.withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: secret) })
            datagram.withUnsafeMutableBytes { RelayedSignal.stamp(origin, for: secret, in: $0) }
            #expect(datagram.withUnsafeBytes { RelayedSignal.origin($0) } == origin)
            #expect(datagram.withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: secret) })
            #expect(Array(datagram[RelayedSignal.signalOffset...]) == message)
            #expect(parse(datagram) == .relayedSignal)
        }
    }

    /// A stamped signal: its MAC, HMAC-SHA256 over origin and message with the receiver's
    /// secret cut to 16 bytes, byte for byte; written in place over an origin stamped
    /// before (a relay stamps whatever the sender left there).
    @Test func theMACIsHMACSHA256OverOriginAndMessageCutTo16Bytes() throws {
        let secret = try #require(RelaySecret(Array(0..<32)))
        let message = signal(from: Fixture.hoaA4, to: Fixture.hoaB4)
        var datagram = RelayedSignal.wrap(message)
        datagram.withUnsafeMutableBytes { RelayedSignal.stamp(Fixture.moa6b, for: secret, in: $0) }
        datagram.withUnsafeMutableBytes { RelayedSignal.stamp(Fixture.moa4b, for: secret, in: $0) }
        let origin: [UInt8] = [4, 203, 0, 113, 20] + [UInt8](repeating: 0, count: 12)
        #expect(Array(datagram[RelayedSignal.originOffset..<RelayedSignal.macOffset]) == origin)
        let expected = HMAC<SHA256>.authenticationCode(for: origin + message, using: SymmetricKey(data: Array(0..<32) as [UInt8]))
        #expect(Array(datagram[RelayedSignal.macOffset..<RelayedSignal.signalOffset]) == Array(Array(expected).prefix(16)))
        #expect(RelaySecret(Array(repeating: 0, count: 31)) == nil && RelaySecret(Array(repeating: 0, count: 33)) == nil)
    }

    /// What a node refuses: a MAC from another secret (another binding's, or none), an
    /// origin or message changed after the relay stamped them (every bit), a truncated
    /// datagram. This is what keeps a datagram forged with the relay's address as its
    /// source from choosing its origin (docs/security.md, N4).
    @Test func aChangedOriginMessageMACOrSecretFailsTheMAC() {
        let secret = RelaySecret.random()
        var stamped = RelayedSignal.wrap(signal(from: Fixture.hoaA6, to: Fixture.hoaB6))
        stamped.withUnsafeMutableBytes { RelayedSignal.stamp(Fixture.moa6b, for: secret, in: $0) }
        func authentic(_ bytes: [UInt8], _ key: RelaySecret = secret) -> Bool {
            bytes.withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: key) }
        }
        #expect(authentic(stamped))
        #expect(!authentic(stamped, RelaySecret.random()))
        for bit in (RelayedSignal.originOffset * 8)..<(stamped.count * 8) {
            var changed = stamped
            changed[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(!authentic(changed), "authentic with bit \(bit) flipped")
        }
        // Another origin stamped by someone with a secret of their own.
        var forged = stamped
        forged.withUnsafeMutableBytes { RelayedSignal.stamp(Fixture.moa6, for: RelaySecret.random(), in: $0) }
        #expect(!authentic(forged))
        for length in 0..<stamped.count { #expect(!authentic(Array(stamped.prefix(length)))) }
    }

    /// A padded binding update (the longest message) fits; anything shorter than a
    /// message's framing, longer than the longest, or without the signaling magic is no
    /// relayed signal; a keepalive is no message to relay.
    @Test func onlyWhatCanBeAMessageIsARelayedSignal() {
        let longest = RelayedSignal.wrap(signal(from: Fixture.hoaA4, to: Fixture.hoaB4,
                                                padded: SignalCodec.maximumLength))
        #expect(longest.count == RelayedSignal.maximumLength && parse(longest) == .relayedSignal)
        #expect(parse(longest + [0]) == nil)
        let message = signal(from: Fixture.hoaA4, to: Fixture.hoaB4)
        let datagram = RelayedSignal.wrap(message)
        #expect(parse(Array(datagram.prefix(RelayedSignal.minimumLength - 1))) == nil)
        var notMATs = datagram
        notMATs[RelayedSignal.signalOffset + 3] = 0x75
        #expect(parse(notMATs) == nil)
        var badSender = datagram
        badSender[RelayedSignal.signalOffset + 16] = 5
        #expect(badSender.withUnsafeBytes { RelayedSignal.addresses($0) } == nil)
        #expect(RelayedSignal.receiver(ofSignal: EncapWire.control(.keepalive)) == nil)
        #expect(RelayedSignal.receiver(ofSignal: Array(message.prefix(60))) == nil)
    }
}
