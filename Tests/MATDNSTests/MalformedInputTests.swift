import Testing
@testable import MATDNS

/// A 12-octet header with the given counts.
func header(id: UInt16 = 0x1234, flags: UInt16 = 0, qd: UInt16 = 0, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) -> [UInt8] {
    [id, flags, qd, an, ns, ar].flatMap { [UInt8($0 >> 8), UInt8(truncatingIfNeeded: $0)] }
}

@Suite("Malformed input never traps")
struct MalformedInputTests {
    func parse(_ bytes: [UInt8]) throws(DNSParseError) -> DNSMessage { try DNSMessage(bytes: bytes) }

    @Test func pointerToItselfIsRejected() {
        let bytes = header(qd: 1) + [0xC0, 0x0C, 0, 1, 0, 1]
        #expect(throws: DNSParseError.badPointer(offset: 12)) { try parse(bytes) }
    }

    @Test func twoPointerLoopIsRejected() {
        // 12: 01 61 C0 14   question 1: label a, pointer -> 20
        // 16: 00 01 00 01   its type and class
        // 20: C0 0C         question 2: pointer -> 12, closing the loop
        // Reading question 1 jumps forward, which is refused before any loop can start.
        let bytes = header(qd: 2) + [0x01, 0x61, 0xC0, 0x14, 0x00, 0x01, 0x00, 0x01, 0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01]
        #expect(throws: DNSParseError.badPointer(offset: 14)) { try parse(bytes) }
    }

    @Test func loopThroughEarlierNameIsRejected() {
        // Name A at 12: 01 61 00 (a.). Name B at 19: 01 62 C0 0C -> b.a. (fine).
        // Name C at 27: C0 15 -> points at B's pointer (offset 21), which points at 12: fine
        // because each jump goes further back. Name D at 33: C0 21 -> to itself.
        let ok = header(qd: 3) + [0x01, 0x61, 0x00, 0, 1, 0, 1,
                                  0x01, 0x62, 0xC0, 0x0C, 0, 1, 0, 1,
                                  0xC0, 0x15, 0, 1, 0, 1]
        #expect(throws: Never.self) { try parse(ok) }
        #expect((try? parse(ok))?.questions.map(\.name) == [name("a."), name("b.a."), name("a.")])
        let bad = header(qd: 1) + [0xC0, 0x0D]
        #expect(throws: DNSParseError.badPointer(offset: 12)) { try parse(bad + [0, 1, 0, 1]) }
    }

    @Test func forwardPointerIsRejected() {
        // Question name points forward at a perfectly good name later in the message.
        let bytes = header(qd: 1, an: 1) + [0xC0, 0x12, 0, 1, 0, 1] + [0x01, 0x61, 0x00, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]
        #expect(throws: DNSParseError.badPointer(offset: 12)) { try parse(bytes) }
    }

    @Test func pointersOutOfRangeAreRejected() {
        for target: UInt16 in [0x3FFF, 0x0100, 0x0005, 0x0000] {
            let bytes = header(qd: 1) + [0xC0 | UInt8(target >> 8), UInt8(truncatingIfNeeded: target), 0, 1, 0, 1]
            #expect(throws: DNSParseError.badPointer(offset: 12)) { try parse(bytes) }
        }
    }

    @Test func labelTypesAbove63AreRejected() {
        for length: UInt8 in [0x40, 0x41, 0x7F, 0x80, 0xBF] {
            let bytes = header(qd: 1) + [length] + Array(repeating: 0x61, count: Int(length & 0x3F)) + [0, 0, 1, 0, 1]
            #expect(throws: DNSParseError.labelTooLong(offset: 12)) { try parse(bytes) }
        }
    }

    @Test func namesLongerThan255AreRejected() {
        let label63 = [UInt8(63)] + Array(repeating: UInt8(0x61), count: 63)
        // Directly: four 63-octet labels = 256 + root.
        let direct = header(qd: 1) + label63 + label63 + label63 + label63 + [0, 0, 1, 0, 1]
        #expect(throws: DNSParseError.nameTooLong(offset: 204)) { try parse(direct) }
        // Through compression: 193 octets in the first name, 64 more in front of a pointer.
        let first = label63 + label63 + label63 + [0]
        let second = label63 + [0xC0, 0x0C]
        let viaPointer = header(qd: 2) + first + [0, 1, 0, 1] + second + [0, 1, 0, 1]
        #expect(throws: DNSParseError.nameTooLong(offset: 12 + 128)) { try parse(viaPointer) }
        // Exactly 255 is fine.
        let label61 = [UInt8(61)] + Array(repeating: UInt8(0x62), count: 61)
        let exact = header(qd: 1) + label63 + label63 + label63 + label61 + [0, 0, 1, 0, 1]
        #expect((try? parse(exact))?.questions.first?.name.wireLength == 255)
    }

    @Test func countsLargerThanTheDataAreRejectedBeforeAllocating() {
        #expect(throws: DNSParseError.countsExceedData) { try parse(header(qd: 0xFFFF)) }
        #expect(throws: DNSParseError.countsExceedData) { try parse(header(an: 0xFFFF, ns: 0xFFFF, ar: 0xFFFF)) }
        #expect(throws: DNSParseError.countsExceedData) { try parse(header(an: 2) + Array(repeating: 0, count: 21)) }
        // The scanner uses the same bound, so TSIG verification is just as cheap.
        #expect(TSIG.verifyRequest(header(ar: 0xFFFF), keyring: Vectors.keyring, now: 0) == .formErr)
        // Enough bytes for the minimum but records that do not actually parse: still throws.
        #expect(throws: DNSParseError.self) { try parse(header(an: 2) + Array(repeating: 0xFF, count: 22)) }
    }

    @Test func shortHeadersAndTrailingBytesAreRejected() {
        for length in 0..<12 {
            #expect(throws: DNSParseError.self) { try parse(Array(repeating: 0, count: length)) }
        }
        #expect(throws: DNSParseError.trailingData(offset: 12)) { try parse(header() + [0]) }
        #expect(throws: DNSParseError.trailingData(offset: Vectors.golden.count)) { try parse(Vectors.golden + [0, 0]) }
        #expect(TSIG.verifyRequest(Vectors.golden + [0], keyring: Vectors.keyring, now: Vectors.goldenTime) == .formErr)
    }

    @Test func rdataThatDisagreesWithItsLengthIsRejected() {
        func message(type: UInt16, rdata: [UInt8], rdlength: UInt16? = nil) -> [UInt8] {
            let length = rdlength ?? UInt16(rdata.count)
            return header(an: 1) + [0, UInt8(type >> 8), UInt8(type & 0xFF), 0, 1, 0, 0, 0, 30,
                                    UInt8(length >> 8), UInt8(length & 0xFF)] + rdata
        }
        let cases: [(UInt16, [UInt8])] = [
            (1, [1, 2, 3]), (1, [1, 2, 3, 4, 5]), (28, [1, 2, 3, 4]),
            (16, [5, 0x61]), (16, [1, 0x61, 0x62]),
            (2, [1, 0x61]), (2, [1, 0x61, 0, 0]), (5, [0xC0]), (12, [0x50, 0]),
            (15, [0]), (6, [0, 0, 0, 0, 0]), (41, [0, 10, 0, 9, 1]), (41, [0, 10, 0]),
            (250, [0, 0, 0, 0]),
        ]
        for (type, rdata) in cases {
            #expect(throws: DNSParseError.self, "type \(type) rdata \(rdata)") { try parse(message(type: type, rdata: rdata)) }
        }
        #expect(throws: DNSParseError.truncated(offset: 23)) { try parse(message(type: 1, rdata: [1, 2, 3, 4], rdlength: 5)) }
        // RDATA names may not run past RDLENGTH even when the message continues.
        let overrun = message(type: 2, rdata: [1, 0x61], rdlength: 2) + [0]
        #expect(throws: DNSParseError.badRData(type: .ns, offset: 23)) { try parse(overrun) }
    }

    @Test func everyTruncationOfAValidMessageThrows() throws {
        var corpus = Vectors.all
        corpus.append(try DNSMessage(answers: MessageCodecTests.records).encode())
        for message in corpus {
            #expect(throws: Never.self) { try parse(message) }
            for cut in 0..<message.count {
                let prefix = Array(message[0..<cut])
                #expect(throws: DNSParseError.self, "cut at \(cut) of \(message.count)") { try parse(prefix) }
                let outcome = TSIG.verifyRequest(prefix, keyring: Vectors.keyring, now: Vectors.goldenTime)
                #expect(outcome == .formErr)
            }
        }
    }

    /// About 20000 random and mutated messages: the parser, scanner and verifier may only
    /// return or throw. Anything that parses must re-encode to something that parses equal.
    @Test func randomAndMutatedInputNeverTraps() throws {
        var rng = SplitMix64(seed: 0x4D41_5444_4E53) // "MATDNS"
        var corpus = Vectors.all
        corpus.append(try DNSMessage(answers: MessageCodecTests.records).encode())
        var parsed = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                let length = Int(rng.next() % 300)
                bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if length >= 12 && rng.next() % 2 == 0 {
                    // Plausible small counts, so random bytes get past the header check.
                    for i in stride(from: 4, to: 12, by: 2) {
                        bytes[i] = 0
                        bytes[i + 1] = UInt8(rng.next() % 4)
                    }
                }
            } else {
                bytes = corpus[Int(rng.next() % UInt64(corpus.count))]
                for _ in 0..<(1 + rng.next() % 4) {
                    let at = Int(rng.next() % UInt64(max(bytes.count, 1)))
                    switch rng.next() % 5 {
                    case 0 where !bytes.isEmpty: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 1 where !bytes.isEmpty: bytes[at] ^= 1 << UInt8(rng.next() % 8)
                    case 2 where !bytes.isEmpty: bytes.remove(at: at)
                    case 3: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: min(at, bytes.count))
                    default: if !bytes.isEmpty { bytes[at] = 0xC0 }
                    }
                }
            }
            _ = TSIG.verifyRequest(bytes, keyring: Vectors.keyring, now: Vectors.goldenTime)
            _ = TSIG.verifyResponse(bytes, key: Vectors.mn1Key, requestMAC: Vectors.goldenMAC, now: Vectors.goldenTime)
            _ = TSIG.errorResponse(to: bytes, outcome: .formErr, keyring: Vectors.keyring, now: 0)
            _ = try? DNSName(wireBytes: bytes)
            if let message = try? parse(bytes) {
                parsed += 1
                _ = try? DNSUpdateRequest(message)
                if let encoded = try? message.encode() {
                    #expect(try parse(encoded) == message)
                }
            }
        }
        // The mutations keep enough structure that a fair share still parses.
        #expect(parsed > 1000)
    }
}

/// Found by FuzzDNS: a question whose name is a pointer past the end passed the framing
/// scan and was echoed into the FORMERR reply, which then did not parse.
@Test func formErrReplyToABadPointerQuestionParses() throws {
    let request = hex("000100000001000000000001c0ff000100010000fa00ff000000000000")
    let outcome = TSIG.verifyRequest(request, keyring: TSIGKeyring(), now: 0)
    let reply = try #require(TSIG.errorResponse(to: request, outcome: outcome, keyring: TSIGKeyring(), now: 0))
    let parsed = try DNSMessage(bytes: reply)
    #expect(parsed.questions.isEmpty)
    #expect(parsed.header.responseCode == .formErr)
}
