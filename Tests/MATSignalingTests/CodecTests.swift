import MATPacket
import Testing
@testable import MATSignaling

@Suite("Signal codec: round trips and the wire layout")
struct CodecTests {
    @Test(arguments: Fixture.allMessages)
    func sealOpenVerifyRoundTrip(message: SignalMessage) throws {
        let bytes = SignalCodec.seal(message, with: Fixture.keyA)
        let unverified = try SignalCodec.open(bytes)
        #expect(unverified.type == message.type)
        #expect(unverified.sequence == message.sequence)
        #expect(unverified.sender == message.sender)
        #expect(unverified.receiver == message.receiver)
        #expect(try unverified.verify(with: Fixture.keyA.publicKey) == message)
        // Ed25519 is deterministic: sealing again gives the same bytes.
        #expect(SignalCodec.seal(message, with: Fixture.keyA) == bytes)
        // The raw-buffer entry point sees the same thing.
        let viaBuffer = try bytes.withUnsafeBytes { raw in try SignalCodec.open(raw) }
        #expect(try viaBuffer.verify(with: Fixture.keyA.publicKey) == message)
        // Lengths: header, body of the type's size, signature.
        let bodyLength: Int
        switch message.body {
        case .bindingUpdate(let moas, _): bodyLength = 1 + 17 * moas.count + 4
        case .bindingAck: bodyLength = 9
        case .challenge, .challengeResponse: bodyLength = 24
        }
        #expect(bytes.count == 52 + bodyLength + 64)
        #expect(Array(bytes[50..<52]) == be16(UInt16(bodyLength)))
    }

    /// The header of one binding update, written out by hand from the format table.
    @Test func bindingUpdateLiteralBytes() throws {
        let message = SignalMessage(sequence: 0x0102_0304_0506_0708, sender: Fixture.hoaA4, receiver: Fixture.hoaB4,
                                    body: .bindingUpdate(moas: [Fixture.moa4], lifetime: 600))
        let bytes = SignalCodec.seal(message, with: Fixture.keyA)
        let expected: [UInt8] = [
            0x4D, 0x41, 0x54, 0x73,                          //  0: "MATs"
            0x01,                                            //  4: version
            0x01,                                            //  5: type bindingUpdate
            0x00, 0x00,                                      //  6: flags
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  //  8: sequence
            0x04, 0xC0, 0x00, 0x02, 0x0A,                    // 16: sender 192.0.2.10
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,              //     padding
            0x04, 0xC0, 0x00, 0x02, 0x14,                    // 33: receiver 192.0.2.20
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,              //     padding
            0x00, 0x16,                                      // 50: body length 22
            0x01,                                            // 52: one MoA
            0x04, 0xC6, 0x33, 0x64, 0x0A,                    // 53: 198.51.100.10
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,              //     padding
            0x00, 0x00, 0x02, 0x58,                          // 70: lifetime 600 s
        ]
        #expect(expected.count == 74)
        #expect(bytes.count == 74 + 64)
        #expect(Array(bytes.prefix(74)) == expected)
        // Signed by Python's `cryptography` (OpenSSL) with the same seed over the same 74
        // bytes: the signature is plain RFC 8032 Ed25519 over bytes [0, 52 + L).
        let signature = hex("""
            a0a02caf4f7e9e12799c95c27f7541bec275c969d7f1731b420e5373c1e2fa80
            370607ec3c6d3577b4d832e36454693a143359aaa12496a572d03825184dc106
            """)
        #expect(Array(bytes.suffix(64)) == signature)
        #expect(try decode(expected + signature) == message)
    }

    /// A mover pads its updates (so the receiver's 3x budget for the unvalidated MoA starts
    /// at about 3.5 KB); the padding is signed, leaves room for a cookie, and decodes away.
    @Test(arguments: [Fixture.hoaA4, Fixture.hoaA6])
    func paddedUpdates(sender: IPAddress) throws {
        let receiver = sender.family == Fixture.hoaB4.family ? Fixture.hoaB4 : Fixture.hoaB6
        let moa = sender.family == Fixture.moa4.family ? Fixture.moa4 : Fixture.moa6
        let message = SignalMessage(sequence: 9, sender: sender, receiver: receiver,
                                    body: .bindingUpdate(moas: [moa, moa], lifetime: 60))
        let padded = SignalCodec.seal(message, with: Fixture.keyA, paddedTo: SignalCodec.paddedUpdateLength)
        #expect(padded.count == SignalCodec.paddedUpdateLength)
        #expect(Array(padded[50..<52]) == be16(UInt16(SignalCodec.paddedUpdateLength - 52 - 64)))
        let opened = try SignalCodec.open(padded)
        #expect(opened.datagramLength == SignalCodec.paddedUpdateLength)
        #expect(try opened.verify(with: Fixture.keyA.publicKey) == message)
        let withCookie = SignalCodec.attaching(Cookie(high: 0x0102_0304_0506_0708, low: 0x1112_1314_1516_1718), to: padded)
        #expect(withCookie.count == SignalCodec.maximumLength)
        #expect(try SignalCodec.open(withCookie).verify(with: Fixture.keyA.publicKey) == message)
        // The padding is signed: flipping one of its bytes breaks the signature.
        var tampered = padded
        tampered[600] = 1
        #expect(throws: SignalError.badSignature) { try SignalCodec.open(tampered).verify(with: Fixture.keyA.publicKey) }
        // Shorter than the message already is: no padding. Other types are never padded.
        #expect(SignalCodec.seal(message, with: Fixture.keyA, paddedTo: 100) == SignalCodec.seal(message, with: Fixture.keyA))
        let ack = SignalMessage(sequence: 9, sender: sender, receiver: receiver, body: .bindingAck(sequence: 1, status: .accepted))
        #expect(SignalCodec.seal(ack, with: Fixture.keyA, paddedTo: SignalCodec.paddedUpdateLength).count == 52 + 9 + 64)
    }

    @Test func ipv6AddressesSitAtTheirOffsets() throws {
        let message = SignalMessage(sequence: 3, sender: Fixture.hoaA6, receiver: Fixture.hoaB6,
                                    body: .challenge(nonce: Fixture.nonce, sequence: 0xFFEE))
        let bytes = SignalCodec.seal(message, with: Fixture.keyA)
        #expect(Array(bytes[16..<33]) == wireAddress(Fixture.hoaA6))
        #expect(Array(bytes[33..<50]) == wireAddress(Fixture.hoaB6))
        #expect(bytes[16] == 6 && bytes[17] == 0x20 && bytes[18] == 0x01)
        #expect(Array(bytes[52..<68]) == Array(0xA0...0xAF))
        #expect(Array(bytes[68..<76]) == be64(0xFFEE))
        #expect(bytes[5] == 3)
    }

    @Test func bindingAckAndResponseBodies() throws {
        let ack = SignalCodec.seal(SignalMessage(sequence: 1, sender: Fixture.hoaB4, receiver: Fixture.hoaA4,
                                                 body: .bindingAck(sequence: 0x1122_3344_5566_7788, status: .refused)),
                                   with: Fixture.keyB)
        #expect(ack[5] == 2)
        #expect(Array(ack[52..<61]) == be64(0x1122_3344_5566_7788) + [1])
        let response = SignalCodec.seal(SignalMessage(sequence: 2, sender: Fixture.hoaA4, receiver: Fixture.hoaB4,
                                                      body: .challengeResponse(nonce: Fixture.nonce, sequence: 4)),
                                        with: Fixture.keyA)
        #expect(response[5] == 4)
        #expect(Array(response[52..<76]) == Array(0xA0...0xAF) + be64(4))
    }

    @Test func everyTruncationFails() {
        for message in Fixture.allMessages {
            let bytes = SignalCodec.seal(message, with: Fixture.keyA)
            for length in 0..<bytes.count {
                #expect(throws: SignalError.truncated) { try SignalCodec.open(Array(bytes.prefix(length))) }
            }
            #expect(throws: SignalError.badLength) { try SignalCodec.open(bytes + [0]) }
        }
    }

    @Test func flippingAnyByteIsDetected() throws {
        for message in [Fixture.messages(.ipv4)[1], Fixture.messages(.ipv6)[4]] {
            let bytes = SignalCodec.seal(message, with: Fixture.keyA)
            for index in bytes.indices {
                for mask: UInt8 in [0x01, 0x80, 0xFF] {
                    var tampered = bytes
                    tampered[index] ^= mask
                    #expect(throws: SignalError.self, "byte \(index) ^ \(mask)") { try decode(tampered) }
                }
            }
        }
    }

    @Test func wrongKeyIsBadSignature() throws {
        for message in Fixture.allMessages {
            let bytes = SignalCodec.seal(message, with: Fixture.keyA)
            #expect(throws: SignalError.badSignature) { try decode(bytes, key: Fixture.keyB.publicKey) }
            #expect(try decode(SignalCodec.seal(message, with: Fixture.keyB), key: Fixture.keyB.publicKey) == message)
        }
    }

    @Test func typesAndStatusesHaveTheirWireValues() {
        #expect(SignalType.allCases.map(\.rawValue) == [1, 2, 3, 4])
        #expect(AckStatus.allCases.map(\.rawValue) == [0, 1])
        #expect(SignalCodec.defaultPort == 7540)
        #expect(Fixture.messages(.ipv4).map(\.type) ==
                [.bindingUpdate, .bindingUpdate, .bindingAck, .bindingAck, .challenge, .challengeResponse])
    }

    @Test func nonces() {
        let bytes: [UInt8] = Array(0x10...0x1F)
        let nonce = Nonce(bytes: bytes)
        #expect(nonce.bytes == bytes)
        #expect(nonce.high == 0x1011_1213_1415_1617 && nonce.low == 0x1819_1A1B_1C1D_1E1F)
        #expect(nonce.description == "101112131415161718191a1b1c1d1e1f")
        #expect(Nonce(high: nonce.high, low: nonce.low) == nonce)
        let randoms = Set((0..<64).map { _ in Nonce.random() })
        #expect(randoms.count == 64)
    }
}
