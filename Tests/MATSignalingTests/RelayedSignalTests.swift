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
            // The sender leaves the origin zero: no origin until the relay writes one.
            #expect(datagram.withUnsafeBytes { RelayedSignal.origin($0) } == nil)
            datagram.withUnsafeMutableBytes { RelayedSignal.stamp(origin, at: $0.baseAddress!) }
            #expect(datagram.withUnsafeBytes { RelayedSignal.origin($0) } == origin)
            #expect(Array(datagram[RelayedSignal.signalOffset...]) == message)
            #expect(parse(datagram) == .relayedSignal)
        }
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
