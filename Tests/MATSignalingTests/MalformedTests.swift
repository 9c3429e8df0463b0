import MATPacket
import Testing
@testable import MATSignaling

/// Each case breaks exactly one rule of a message that is otherwise valid and validly
/// signed, so the error seen is the one for that rule.
@Suite("Signal codec: refusals")
struct MalformedTests {
    let oneMoA = updateBody([wireAddress(Fixture.moa4)])

    @Test func theBaselineIsValid() throws {
        let message = try decode(rawMessage(body: oneMoA))
        #expect(message == SignalMessage(sequence: 5, sender: Fixture.hoaA4, receiver: Fixture.hoaB4,
                                         body: .bindingUpdate(moas: [Fixture.moa4], lifetime: 600)))
    }

    @Test func headerRefusals() {
        #expect(throws: SignalError.badMagic) { try decode(rawMessage(magic: Array("MATS".utf8), body: oneMoA)) }
        #expect(throws: SignalError.unsupportedVersion(2)) { try decode(rawMessage(version: 2, body: oneMoA)) }
        #expect(throws: SignalError.unsupportedVersion(0)) { try decode(rawMessage(version: 0, body: oneMoA)) }
        for type: UInt8 in [0, 5, 0x81, 0xFF] {
            #expect(throws: SignalError.unknownType(type)) { try decode(rawMessage(type: type, body: oneMoA)) }
        }
        for flags: UInt16 in [1, 0x0100, 0x8000, 0xFFFF] {
            #expect(throws: SignalError.badFlags) { try decode(rawMessage(flags: flags, body: oneMoA)) }
        }
    }

    @Test func lengthRefusals() {
        // Body lengths that no message of the type can have.
        let cases: [(type: UInt8, body: [UInt8])] = [
            (1, Array(oneMoA.dropLast())), (1, [1, 0, 0, 0, 0]), (1, []),
            (2, [UInt8](repeating: 0, count: 8)), (2, [UInt8](repeating: 0, count: 10)),
            (3, [UInt8](repeating: 0, count: 23)), (3, [UInt8](repeating: 0, count: 25)),
            (4, [UInt8](repeating: 0, count: 16)), (4, []),
        ]
        for (type, body) in cases {
            #expect(throws: SignalError.badLength, "type \(type), \(body.count) bytes") {
                try decode(rawMessage(type: type, body: body))
            }
        }
        // The header promises more body than there is.
        #expect(throws: SignalError.truncated) { try decode(rawMessage(bodyLength: 39, body: oneMoA)) }
        // Bytes after the signature.
        #expect(throws: SignalError.badLength) { try decode(rawMessage(body: oneMoA) + [0, 0]) }
        // Past the 1200-byte limit, whatever the rest says.
        #expect(throws: SignalError.tooLong) { try SignalCodec.open([UInt8](repeating: 0, count: 1201)) }
        let big = updateBody(Array(repeating: wireAddress(Fixture.moa4), count: 64))
        #expect(throws: SignalError.tooLong) { try decode(rawMessage(body: big)) }
    }

    @Test func addressRefusals() {
        var padded = wireAddress(Fixture.hoaA4)
        padded[16] = 1
        var family5 = wireAddress(Fixture.hoaA6)
        family5[0] = 5
        var family0 = wireAddress(Fixture.hoaB4)
        family0[0] = 0
        #expect(throws: SignalError.badAddress) { try decode(rawMessage(sender: padded, body: oneMoA)) }
        #expect(throws: SignalError.badAddress) { try decode(rawMessage(receiver: padded, body: oneMoA)) }
        #expect(throws: SignalError.badAddress) { try decode(rawMessage(sender: family5, body: oneMoA)) }
        #expect(throws: SignalError.badAddress) { try decode(rawMessage(receiver: family0, body: oneMoA)) }
        for index in 5..<17 {
            var moa = wireAddress(Fixture.moa4)
            moa[index] = 0x80
            #expect(throws: SignalError.badAddress) { try decode(rawMessage(body: updateBody([moa]))) }
        }
        var moa7 = wireAddress(Fixture.moa6)
        moa7[0] = 7
        #expect(throws: SignalError.badAddress) {
            try decode(rawMessage(sender: wireAddress(Fixture.hoaA6), receiver: wireAddress(Fixture.hoaB6),
                                  body: updateBody([wireAddress(Fixture.moa6), moa7])))
        }
    }

    /// Sender and receiver HoAs of one family; MoAs of the sender HoA's family.
    @Test func familyRules() throws {
        let v4 = wireAddress(Fixture.hoaA4), v6 = wireAddress(Fixture.hoaB6)
        #expect(throws: SignalError.familyMismatch) { try decode(rawMessage(sender: v4, receiver: v6, body: oneMoA)) }
        #expect(throws: SignalError.familyMismatch) {
            try decode(rawMessage(type: 2, sender: v6, receiver: v4, body: be64(1) + [0]))
        }
        // A v6 MoA for a v4 HoA, and the other way round, even as the second MoA.
        #expect(throws: SignalError.familyMismatch) {
            try decode(rawMessage(body: updateBody([wireAddress(Fixture.moa4), wireAddress(Fixture.moa6)])))
        }
        #expect(throws: SignalError.familyMismatch) {
            try decode(rawMessage(sender: wireAddress(Fixture.hoaA6), receiver: v6, body: oneMoA))
        }
        // Both v6: fine.
        let ok = try decode(rawMessage(sender: wireAddress(Fixture.hoaA6), receiver: v6,
                                       body: updateBody([wireAddress(Fixture.moa6)])))
        #expect(ok.sender == Fixture.hoaA6 && ok.receiver == Fixture.hoaB6)
        // The same rules, before sealing.
        let bad = [
            SignalMessage(sequence: 1, sender: Fixture.hoaA4, receiver: Fixture.hoaB6, body: .bindingAck(sequence: 1, status: .accepted)),
            SignalMessage(sequence: 1, sender: Fixture.hoaA4, receiver: Fixture.hoaB4, body: .bindingUpdate(moas: [Fixture.moa6], lifetime: 1)),
        ]
        for message in bad { #expect(throws: SignalError.familyMismatch) { try message.validate() } }
        for message in Fixture.allMessages { try message.validate() }
    }

    /// Zero bytes after the lifetime are padding, signed with the rest; anything else there
    /// is refused, so an update has one encoding.
    @Test func bindingUpdatePadding() throws {
        let plain = try decode(rawMessage(body: oneMoA))
        #expect(try decode(rawMessage(body: oneMoA + [0])) == plain)
        #expect(try decode(rawMessage(body: oneMoA + [UInt8](repeating: 0, count: 1000))) == plain)
        #expect(throws: SignalError.badBody) { try decode(rawMessage(body: oneMoA + [0, 1])) }
        #expect(throws: SignalError.badBody) { try decode(rawMessage(body: oneMoA + [0x80] + [UInt8](repeating: 0, count: 99))) }
    }

    @Test func bindingUpdateCounts() throws {
        let moas = (1...9).map { wireAddress(.v4(IPv4Address(198, 51, 100, UInt8($0)))) }
        let eight = try decode(rawMessage(body: updateBody(Array(moas.prefix(8)))))
        guard case .bindingUpdate(let decoded, _) = eight.body else { Issue.record("not an update"); return }
        #expect(decoded.count == 8)
        #expect(throws: SignalError.tooManyAddresses) { try decode(rawMessage(body: updateBody(moas))) }
        #expect(throws: SignalError.noAddresses) { try decode(rawMessage(body: updateBody([moas[0]], count: 0))) }
        #expect(throws: SignalError.badBody) { try decode(rawMessage(body: updateBody([moas[0]], count: 2))) }
        #expect(throws: SignalError.badBody) { try decode(rawMessage(body: updateBody([moas[0], moas[1]], count: 1))) }
        let nine = SignalMessage(sequence: 1, sender: Fixture.hoaA4, receiver: Fixture.hoaB4,
                                 body: .bindingUpdate(moas: Array(repeating: Fixture.moa4, count: 9), lifetime: 1))
        #expect(throws: SignalError.tooManyAddresses) { try nine.validate() }
        let none = SignalMessage(sequence: 1, sender: Fixture.hoaA4, receiver: Fixture.hoaB4,
                                 body: .bindingUpdate(moas: [], lifetime: 1))
        #expect(throws: SignalError.noAddresses) { try none.validate() }
    }

    @Test func unknownAckStatus() throws {
        #expect(try decode(rawMessage(type: 2, body: be64(3) + [1])).body == .bindingAck(sequence: 3, status: .refused))
        for status: UInt8 in [2, 0x7F, 0xFF] {
            #expect(throws: SignalError.unknownStatus(status)) { try decode(rawMessage(type: 2, body: be64(3) + [status])) }
        }
    }

    /// A body error is only reported once the signature verified: with a wrong signature
    /// the same bytes are `badSignature`.
    @Test func bodyIsNotReadBeforeTheSignature() throws {
        let nine = updateBody((1...9).map { wireAddress(.v4(IPv4Address(198, 51, 100, UInt8($0)))) })
        let unverified = try SignalCodec.open(rawMessage(body: nine, key: Fixture.keyB))
        #expect(unverified.type == .bindingUpdate && unverified.sequence == 5)
        #expect(throws: SignalError.badSignature) { try unverified.verify(with: Fixture.keyA.publicKey) }
        #expect(throws: SignalError.tooManyAddresses) { try unverified.verify(with: Fixture.keyB.publicKey) }
    }

    @Test func errorsDescribeThemselves() {
        let errors: [SignalError] = [.truncated, .tooLong, .badMagic, .unsupportedVersion(9), .unknownType(7),
                                     .badFlags, .badLength, .badAddress, .familyMismatch, .badBody,
                                     .noAddresses, .tooManyAddresses, .unknownStatus(3), .badSignature, .badKey]
        let texts = errors.map(\.description)
        #expect(Set(texts).count == errors.count)
        #expect(texts.allSatisfy { !$0.isEmpty })
        #expect(SignalError.unknownType(7).description.contains("7"))
    }
}
