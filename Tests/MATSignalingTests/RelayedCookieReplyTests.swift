import MATPacket
@testable import MATSignaling
import Testing

/// A cookie reply to a message that came through the relay (``RelayedCookieReply``): framed
/// so that the relay routes it by its HoAs, read back by the peer as the plain reply.
@Suite struct RelayedCookieReplyTests {
    let reply = CookieReply(echo: Cookie(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10),
                            cookie: Cookie(high: 0xA1A2_A3A4_A5A6_A7A8, low: 0xB1B2_B3B4_B5B6_B7B8))

    /// Both families: 116 bytes, what the relay takes as a relayed signal and routes by its
    /// HoAs (the node's, then the peer's), and what the peer reads back whole.
    @Test func theRelayRoutesItByItsHoAsAndThePeerReadsTheReplyBack() throws {
        for (node, peer) in [(Fixture.hoaA4, Fixture.hoaB4), (Fixture.hoaA6, Fixture.hoaB6)] {
            let bytes = RelayedCookieReply.seal(reply, from: node, to: peer)
            #expect(bytes.count == 116 && bytes.count == RelayedCookieReply.length)
            let datagram = RelayedSignal.wrap(bytes)
            #expect(datagram.withUnsafeBytes { EncapWire.parse($0) } == .relayedSignal)
            let hoas = datagram.withUnsafeBytes { RelayedSignal.addresses($0) }
            #expect(hoas?.sender == node && hoas?.receiver == peer)
            let opened = try #require(RelayedCookieReply.open(bytes))
            #expect(opened.sender == node && opened.receiver == peer && opened.reply == reply)
            // The plain reply the machine sends is wrapped into the same bytes.
            #expect(RelayedCookieReply.wrap(SignalCodec.seal(reply), from: node, to: peer) == bytes)
        }
    }

    /// It amplifies nothing: shorter than the shortest message it can answer (an
    /// acknowledgement, 125 bytes).
    @Test func itIsShorterThanAnyMessage() {
        let ack = SignalCodec.seal(SignalMessage(sequence: 1, sender: Fixture.hoaB4, receiver: Fixture.hoaA4,
                                                 body: .bindingAck(sequence: 1, status: .accepted)), with: Fixture.keyB)
        #expect(ack.count == 125 && RelayedCookieReply.length < ack.count)
    }

    /// Anything else is no relayed cookie reply: a message, a plain reply, a cut or longer
    /// one, padding or flags not zero, a sequence number, HoAs of two families.
    @Test func whatIsNoRelayedCookieReply() {
        let bytes = RelayedCookieReply.seal(reply, from: Fixture.hoaA4, to: Fixture.hoaB4)
        let message = SignalCodec.seal(SignalMessage(sequence: 1, sender: Fixture.hoaA4, receiver: Fixture.hoaB4,
                                                     body: .challenge(nonce: Fixture.nonce, sequence: 3)), with: Fixture.keyA)
        #expect(RelayedCookieReply.open(message) == nil && RelayedCookieReply.wrap(message, from: Fixture.hoaA4, to: Fixture.hoaB4) == nil)
        #expect(RelayedCookieReply.open(SignalCodec.seal(reply)) == nil)
        #expect(RelayedCookieReply.open(Array(bytes.dropLast())) == nil && RelayedCookieReply.open(bytes + [0]) == nil)
        for offset in [6, 8, 115] {
            var changed = bytes
            changed[offset] ^= 1
            #expect(RelayedCookieReply.open(changed) == nil, "offset \(offset)")
        }
        #expect(RelayedCookieReply.open(RelayedCookieReply.seal(reply, from: Fixture.hoaA4, to: Fixture.hoaB6)) == nil)
    }

    /// The header a node reads off what it sends to route it: type and HoAs of a message
    /// (with a cookie attached too), nothing for a cookie reply or a keepalive.
    @Test func peekHeaderReadsAMessagesTypeAndHoAs() {
        let message = SignalCodec.seal(SignalMessage(sequence: 1, sender: Fixture.hoaA6, receiver: Fixture.hoaB6,
                                                     body: .challenge(nonce: Fixture.nonce, sequence: 0)), with: Fixture.keyA)
        for bytes in [message, SignalCodec.attaching(reply.cookie, to: message)] {
            let header = SignalCodec.peekHeader(bytes)
            #expect(header?.type == .challenge && header?.sender == Fixture.hoaA6 && header?.receiver == Fixture.hoaB6)
        }
        #expect(SignalCodec.peekHeader(SignalCodec.seal(reply)) == nil)
        #expect(SignalCodec.peekHeader(RelayedCookieReply.seal(reply, from: Fixture.hoaA4, to: Fixture.hoaB4)) == nil)
        #expect(SignalCodec.peekHeader(EncapWire.control(.keepalive)) == nil)
    }

    /// What comes through the relay is untrusted: random bytes and every cut or damaged
    /// reply are read without a trap, and a damaged one that still reads gives the fields
    /// its bytes hold.
    @Test func randomAndDamagedInputReadsWithoutATrap() {
        var generator = SystemRandomNumberGenerator()
        let bytes = RelayedCookieReply.seal(reply, from: Fixture.hoaA6, to: Fixture.hoaB6)
        for _ in 0..<2_000 {
            let random = (0..<Int.random(in: 0...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = RelayedCookieReply.open(random)
            _ = SignalCodec.peekHeader(random)
            var damaged = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator)))
            if !damaged.isEmpty { damaged[Int.random(in: 0..<damaged.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            if let opened = RelayedCookieReply.open(damaged) {
                #expect(RelayedCookieReply.seal(opened.reply, from: opened.sender, to: opened.receiver) == damaged)
            }
        }
    }
}
