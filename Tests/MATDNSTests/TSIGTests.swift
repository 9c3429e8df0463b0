import Testing
@testable import MATDNS

@Suite("TSIG signing and verification")
struct TSIGTests {
    let key = TSIGKey(name: name("Node7.HoA.mat.example."), secret: Array(repeating: 0x5A, count: 32))
    var keyring: TSIGKeyring { TSIGKeyring([key]) }
    let now: UInt64 = 1_800_000_000

    func sampleUpdate(id: UInt16 = 0x4242) throws -> [UInt8] {
        var builder = DNSUpdateBuilder(id: id, zone: name("mat.example."))
        let owner = try DNSName.reverseIPv4(0xC633_640A, in: name("hoa.mat.example."))
        builder.deleteRRset(owner, type: .a)
        builder.add(owner, ttl: 10, .a(0xCB00_7107))
        return try builder.message.encode()
    }

    @Test func requestResponseRoundTripChainsTheRequestMAC() throws {
        let signed = try TSIG.sign(sampleUpdate(), key: key, now: now)
        #expect(signed.mac.count == 32)
        let outcome = TSIG.verifyRequest(signed.bytes, keyring: keyring, now: now + 5)
        let context = try #require(outcome.context)
        #expect(outcome == .verified(context))
        #expect(context.keyName == name("node7.hoa.mat.example."))
        #expect(context.data.mac == signed.mac)

        let response = DNSMessage(header: DNSHeader(id: 0x4242, isResponse: true, opcode: .update),
                                  questions: [DNSQuestion(name: name("mat.example."), type: .soa)])
        let reply = try TSIG.signResponse(response.encode(), key: key, request: context, now: now + 6)
        let checked = TSIG.verifyResponse(reply.bytes, key: key, requestMAC: signed.mac, now: now + 7)
        #expect(checked.context.map { .verified($0) } == checked)

        // Same reply, different request MAC: the chain is broken.
        var otherMAC = signed.mac
        otherMAC[0] ^= 1
        #expect(TSIG.verifyResponse(reply.bytes, key: key, requestMAC: otherMAC, now: now).tsigError == .badSig)
        // A response MAC is not a request MAC: verifying it as a request fails.
        #expect(TSIG.verifyRequest(reply.bytes, keyring: keyring, now: now).tsigError == .badSig)
        // A response signed by another key with the same name is rejected.
        let impostor = TSIGKey(name: key.name, secret: Array(repeating: 0xA5, count: 32))
        #expect(TSIG.verifyResponse(reply.bytes, key: impostor, requestMAC: signed.mac, now: now).tsigError == .badSig)
        // A response under a different key name is BADKEY for the client.
        let stranger = TSIGKey(name: name("other.example."), secret: Array(repeating: 0x5A, count: 32))
        #expect(TSIG.verifyResponse(reply.bytes, key: stranger, requestMAC: signed.mac, now: now).tsigError == .badKey)
    }

    @Test func signedMessageParsesWithTSIGLast() throws {
        let message = try DNSMessage(bytes: sampleUpdate())
        let signed = try message.signed(with: key, now: now, fudge: 60)
        let parsed = try DNSMessage(bytes: signed.bytes)
        #expect(parsed.additionals.count == 1)
        let tsig = try #require(parsed.tsig)
        #expect(tsig.data.fudge == 60)
        #expect(tsig.data.algorithm == TSIGAlgorithm.hmacSHA256.name)
        #expect(tsig.data.timeSigned == now)
        #expect(TSIG.verifyRequest(signed.bytes, keyring: keyring, now: now + 61).tsigError == .badTime)
    }

    @Test func unsignedMessageIsReportedAsSuch() throws {
        #expect(TSIG.verifyRequest(try sampleUpdate(), keyring: keyring, now: now) == .unsigned)
        #expect(TSIG.errorResponse(to: try sampleUpdate(), outcome: .unsigned, keyring: keyring, now: now) == nil)
    }

    @Test func truncatedMACsFollowRFC8945() throws {
        let message = try sampleUpdate()
        // 16 octets is the SHA-256 floor: allowed on the wire, below the default policy.
        let short = try TSIG.sign(message, key: key, now: now, macLength: 16)
        #expect(short.mac.count == 16)
        let outcome = TSIG.verifyRequest(short.bytes, keyring: keyring, now: now)
        #expect(outcome.tsigError == .badTrunc)
        #expect(outcome.responseCode == .notAuth)
        let lenient = TSIG.verifyRequest(short.bytes, keyring: keyring, now: now, minimumMACLength: 16)
        #expect(lenient.context.map { .verified($0) } == lenient)
        // Tampering is still caught on the truncated MAC.
        var tampered = short.bytes
        tampered[20] ^= 4
        #expect(TSIG.verifyRequest(tampered, keyring: keyring, now: now, minimumMACLength: 16).tsigError == .badSig)

        // The signer refuses lengths no verifier may accept.
        #expect(throws: DNSEncodeError.badMACLength) { try TSIG.sign(message, key: key, now: now, macLength: 15) }
        #expect(throws: DNSEncodeError.badMACLength) { try TSIG.sign(message, key: key, now: now, macLength: 33) }

        // On the wire: below max(10, 32/2) or above 32 octets is FORMERR.
        for length in [0, 1, 9, 12, 15, 33, 64] {
            var parsed = try DNSMessage(bytes: short.bytes)
            guard case .tsig(var data) = parsed.additionals[0].data else { Issue.record("no TSIG"); return }
            data.mac = Array(repeating: 7, count: length)
            parsed.additionals[0].data = .tsig(data)
            let bytes = try parsed.encode()
            #expect(TSIG.verifyRequest(bytes, keyring: keyring, now: now) == .formErr, "MAC length \(length)")
        }
    }

    @Test func badTruncReplyIsSignedAndChained() throws {
        let short = try TSIG.sign(sampleUpdate(), key: key, now: now, macLength: 20)
        let outcome = TSIG.verifyRequest(short.bytes, keyring: keyring, now: now)
        #expect(outcome.tsigError == .badTrunc)
        let reply = try #require(TSIG.errorResponse(to: short.bytes, outcome: outcome, keyring: keyring, now: now + 1))
        let client = TSIG.verifyResponse(reply, key: key, requestMAC: short.mac, now: now + 1)
        let context = try #require(client.context)
        #expect(client == .verified(context))
        #expect(context.data.error == .badTrunc)
        #expect(context.data.timeSigned == now + 1)
        let parsed = try DNSMessage(bytes: reply)
        #expect(parsed.header.responseCode == .notAuth)
        #expect(parsed.questions == [DNSQuestion(name: name("mat.example."), type: .soa)])
    }

    @Test func misplacedOrDuplicatedTSIGIsFormErr() throws {
        let signed = try TSIG.sign(sampleUpdate(), key: key, now: now)
        let parsed = try DNSMessage(bytes: signed.bytes)
        let tsigRecord = parsed.additionals[0]
        let extra = DNSResourceRecord(name: name("x.mat.example."), ttl: 1, data: .a(1))

        var notLast = parsed
        notLast.additionals = [tsigRecord, extra]
        #expect(TSIG.verifyRequest(try notLast.encode(), keyring: keyring, now: now) == .formErr)

        var twice = parsed
        twice.additionals = [tsigRecord, tsigRecord]
        #expect(TSIG.verifyRequest(try twice.encode(), keyring: keyring, now: now) == .formErr)

        var inAnswers = parsed
        inAnswers.additionals = []
        inAnswers.answers.append(tsigRecord)
        #expect(TSIG.verifyRequest(try inAnswers.encode(), keyring: keyring, now: now) == .formErr)

        // TSIG must be class ANY, TTL 0.
        var wrongClass = parsed
        wrongClass.additionals[0].recordClass = .in
        #expect(TSIG.verifyRequest(try wrongClass.encode(), keyring: keyring, now: now) == .formErr)
        var wrongTTL = parsed
        wrongTTL.additionals[0].ttl = 5
        #expect(TSIG.verifyRequest(try wrongTTL.encode(), keyring: keyring, now: now) == .formErr)

        // FORMERR replies carry no TSIG.
        let reply = try #require(TSIG.errorResponse(to: try twice.encode(), outcome: .formErr, keyring: keyring, now: now))
        let message = try DNSMessage(bytes: reply)
        #expect(message.header.responseCode == .formErr)
        #expect(message.additionals.isEmpty)
        #expect(message.questions.count == 1)
    }

    @Test func signerRejectsNonMessages() throws {
        #expect(throws: DNSEncodeError.notAMessage) { try TSIG.sign([1, 2, 3], key: key, now: now) }
        var full = try sampleUpdate()
        full[10] = 0xFF
        full[11] = 0xFF
        #expect(throws: DNSEncodeError.notAMessage) { try TSIG.sign(full, key: key, now: now) }
        #expect(throws: DNSEncodeError.timeOutOfRange) { try TSIG.sign(sampleUpdate(), key: key, now: 1 << 48) }
    }

    @Test(arguments: TSIGAlgorithm.allCases)
    func everyAlgorithmRoundTrips(algorithm: TSIGAlgorithm) throws {
        let key = TSIGKey(name: name("k.example."), algorithm: algorithm, secret: Array(0..<UInt8(algorithm.digestLength)))
        let signed = try TSIG.sign(sampleUpdate(), key: key, now: now)
        #expect(signed.mac.count == algorithm.digestLength)
        let outcome = TSIG.verifyRequest(signed.bytes, keyring: TSIGKeyring([key]), now: now)
        #expect(outcome.context.map { .verified($0) } == outcome)
        #expect(TSIGAlgorithm(name: algorithm.name) == algorithm)
        #expect(TSIGAlgorithm(keyword: algorithm.rawValue.uppercased() + ".") == algorithm)
    }

    @Test func keyDescriptionHidesTheSecret() {
        #expect(!key.description.contains(key.base64Secret))
        #expect(key.description.contains("node7.hoa.mat.example."))
    }
}
