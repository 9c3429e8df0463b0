import Testing
@testable import MATDNS

/// Offset of the final TSIG record, via the module's own scanner.
func tsigStart(of message: [UInt8]) -> Int? {
    message.withUnsafeBufferPointer { try? MessageLayout.scan($0) }?.tsigStart
}

@Suite("TSIG against captured BIND traffic")
struct TSIGGoldenTests {
    let owner = name("8.b.d.0.1.0.0.2.hoa.mip.test.")

    @Test func goldenVectorParses() throws {
        let message = try DNSMessage(bytes: Vectors.golden)
        #expect(message.header.id == 0x08EC)
        #expect(message.header.opcode == .update)
        #expect(message.header.flags == 0x2800)
        #expect(message.questions == [DNSQuestion(name: name("mip.test."), type: .soa)])
        #expect(message.prerequisites == [DNSResourceRecord(name: owner, class: .none, ttl: 0, data: .empty(.aaaa))])
        #expect(message.updates == [
            DNSResourceRecord(name: owner, class: .any, ttl: 0, data: .empty(.aaaa)),
            DNSResourceRecord(name: owner, ttl: 30, data: .aaaa(high: 0x2001_0DB8_0001_0000, low: 0x42)),
        ])
        let tsig = try #require(message.tsig)
        #expect(tsig.keyName == name("mn1.hoa.mip.test."))
        #expect(tsig.data == TSIGData(algorithm: name("hmac-sha256."), timeSigned: Vectors.goldenTime, fudge: 300,
                                      mac: Vectors.goldenMAC, originalID: 0x08EC))
        #expect(tsigStart(of: Vectors.golden) == Vectors.goldenTSIGStart)

        let update = try DNSUpdateRequest(message)
        #expect(update.zone == name("mip.test."))
        #expect(update.prerequisites == [.rrsetDoesNotExist(owner, .aaaa)])
        #expect(update.operations == [
            .deleteRRset(owner, .aaaa),
            .add(DNSResourceRecord(name: owner, ttl: 30, data: .aaaa(high: 0x2001_0DB8_0001_0000, low: 0x42))),
        ])
    }

    @Test func goldenVectorVerifiesAtCaptureTime() throws {
        let outcome = TSIG.verifyRequest(Vectors.golden, keyring: Vectors.keyring, now: Vectors.goldenTime)
        let context = try #require(outcome.context)
        #expect(outcome == .verified(context))
        #expect(context.data.mac == Vectors.goldenMAC)
        #expect(context.keyName == Vectors.mn1Key.name)
        // The window is inclusive at both ends of ±fudge.
        #expect(TSIG.verifyRequest(Vectors.golden, keyring: Vectors.keyring, now: Vectors.goldenTime + 300) == .verified(context))
        #expect(TSIG.verifyRequest(Vectors.golden, keyring: Vectors.keyring, now: Vectors.goldenTime - 300) == .verified(context))
    }

    @Test func resigningGoldenMessageReproducesItExactly() throws {
        let unsigned = strippingTSIG(Vectors.golden, at: Vectors.goldenTSIGStart)
        let signed = try TSIG.sign(unsigned, key: Vectors.mn1Key, now: Vectors.goldenTime)
        #expect(signed.mac == Vectors.goldenMAC)
        #expect(signed.bytes == Vectors.golden)
    }

    @Test func builderEncodesTheSameUpdateMoreCompactly() throws {
        var builder = DNSUpdateBuilder(id: 0x08EC, zone: name("mip.test."))
        builder.requireRRsetDoesNotExist(owner, type: .aaaa)
        builder.deleteRRset(owner, type: .aaaa)
        builder.add(owner, ttl: 30, .aaaa(high: 0x2001_0DB8_0001_0000, low: 0x42))
        let ours = try builder.message.encode()
        var theirs = try DNSMessage(bytes: Vectors.golden)
        theirs.additionals.removeAll()
        #expect(try DNSMessage(bytes: ours) == theirs)
        // nsupdate does not compress the owner against the zone name; this codec does.
        #expect(ours.count < Vectors.goldenTSIGStart)
    }

    @Test func tamperingAnyCoveredByteBreaksTheSignature() {
        for offset in 2..<Vectors.golden.count {
            var bytes = Vectors.golden
            bytes[offset] ^= 0x01
            let outcome = TSIG.verifyRequest(bytes, keyring: Vectors.keyring, now: Vectors.goldenTime)
            switch outcome {
            case .verified:
                Issue.record("byte \(offset) flipped but still verified")
            default:
                break
            }
        }
        var bytes = Vectors.golden
        bytes[80] ^= 0x20 // inside the update section
        #expect(TSIG.verifyRequest(bytes, keyring: Vectors.keyring, now: Vectors.goldenTime).tsigError == .badSig)
    }

    @Test func headerIDIsNotCoveredSoForwardersMayRenumber() throws {
        var bytes = Vectors.golden
        bytes[0] = 0x12
        bytes[1] = 0x34
        let outcome = TSIG.verifyRequest(bytes, keyring: Vectors.keyring, now: Vectors.goldenTime)
        let context = try #require(outcome.context)
        #expect(outcome == .verified(context))
        #expect(context.messageID == 0x1234)
        #expect(context.data.originalID == 0x08EC)
    }

    @Test func wrongKeyNameOrAlgorithmIsBadKey() {
        let other = TSIGKeyring([TSIGKey(name: name("mn2.hoa.mip.test."), secret: Array(0..<32))])
        let outcome = TSIG.verifyRequest(Vectors.golden, keyring: other, now: Vectors.goldenTime)
        #expect(outcome.tsigError == .badKey)
        #expect(outcome.responseCode == .notAuth)
        let sameNameOtherAlgorithm = TSIGKeyring([TSIGKey(name: name("MN1.hoa.mip.test."), algorithm: .hmacSHA512,
                                                          secret: Array(0..<32))])
        #expect(TSIG.verifyRequest(Vectors.golden, keyring: sameNameOtherAlgorithm, now: Vectors.goldenTime).tsigError == .badKey)
        let wrongSecret = TSIGKeyring([TSIGKey(name: name("mn1.hoa.mip.test."), secret: Array(1...32))])
        #expect(TSIG.verifyRequest(Vectors.golden, keyring: wrongSecret, now: Vectors.goldenTime).tsigError == .badSig)
    }

    @Test(arguments: [Vectors.goldenTime + 301, Vectors.goldenTime - 301, 0, Vectors.badTimeServerClock, UInt64.max])
    func clockOutsideFudgeIsBadTime(now: UInt64) {
        let outcome = TSIG.verifyRequest(Vectors.golden, keyring: Vectors.keyring, now: now)
        #expect(outcome.tsigError == .badTime)
        #expect(outcome.responseCode == .notAuth)
    }

    @Test func badTimeReplyMatchesBIND() throws {
        let outcome = TSIG.verifyRequest(Vectors.golden, keyring: Vectors.keyring, now: Vectors.badTimeServerClock)
        let reply = try #require(TSIG.errorResponse(to: Vectors.golden, outcome: outcome, keyring: Vectors.keyring,
                                                    now: Vectors.badTimeServerClock))
        #expect(reply == Vectors.goldenBadTimeReply)
        // The client (whose clock matches its own Time Signed) can authenticate it and
        // read the server's clock.
        let client = TSIG.verifyResponse(Vectors.goldenBadTimeReply, key: Vectors.mn1Key, requestMAC: Vectors.goldenMAC,
                                         now: Vectors.goldenTime)
        let context = try #require(client.context)
        #expect(client == .verified(context))
        #expect(context.data.error == .badTime)
        #expect(context.data.otherData == [0x00, 0x00, 0x6B, 0x09, 0x4F, 0x54])
        let parsed = try DNSMessage(bytes: reply)
        #expect(parsed.header.responseCode == .notAuth)
        #expect(parsed.header.isResponse)
    }

    @Test func badKeyReplyMatchesBIND() throws {
        let keyring = TSIGKeyring([Vectors.mn1Key])
        let outcome = TSIG.verifyRequest(Vectors.badKeyRequest, keyring: keyring, now: Vectors.badKeyTime)
        #expect(outcome.tsigError == .badKey)
        let reply = try #require(TSIG.errorResponse(to: Vectors.badKeyRequest, outcome: outcome, keyring: keyring,
                                                    now: Vectors.badKeyTime))
        #expect(reply == Vectors.badKeyReply)
    }

    @Test func badSigReplyMatchesBIND() throws {
        let outcome = TSIG.verifyRequest(Vectors.badSigRequest, keyring: Vectors.keyring, now: Vectors.badSigTime)
        #expect(outcome.tsigError == .badSig)
        let reply = try #require(TSIG.errorResponse(to: Vectors.badSigRequest, outcome: outcome,
                                                    keyring: Vectors.keyring, now: Vectors.badSigTime))
        #expect(reply == Vectors.badSigReply)
        // What the client sees: an unsigned error it cannot authenticate.
        let requestMAC = try #require(try DNSMessage(bytes: Vectors.badSigRequest).tsig).data.mac
        let client = TSIG.verifyResponse(Vectors.badSigReply, key: Vectors.mn1Key, requestMAC: requestMAC,
                                         now: Vectors.badSigTime)
        #expect(client.context?.data.error == .badSig)
        if case .unsignedError = client {} else { Issue.record("expected unsignedError, got \(client)") }
    }

    @Test func signedUpdateReplyVerifiesAndReSignsIdentically() throws {
        let request = TSIG.verifyRequest(Vectors.updateRequest, keyring: Vectors.keyring, now: Vectors.updateTime)
        let context = try #require(request.context)
        #expect(request == .verified(context))

        let reply = TSIG.verifyResponse(Vectors.updateReply, key: Vectors.mn1Key, requestMAC: context.data.mac,
                                        now: Vectors.updateTime)
        #expect(reply.context.map { .verified($0) } == reply)
        // Chaining: the same reply against another request's MAC must fail.
        #expect(TSIG.verifyResponse(Vectors.updateReply, key: Vectors.mn1Key, requestMAC: Vectors.goldenMAC,
                                    now: Vectors.updateTime).tsigError == .badSig)

        // Build the reply the way mat-ims would and sign it at the same second.
        let response = DNSMessage(header: DNSHeader(id: 0x3B26, isResponse: true, opcode: .update),
                                  questions: [DNSQuestion(name: name("mip.test."), type: .soa)])
        let signed = try TSIG.signResponse(response.encode(), key: Vectors.mn1Key, request: context,
                                           now: Vectors.updateTime)
        #expect(signed.bytes == Vectors.updateReply)
    }

    @Test func sha512QueryAndAnswerVerify() throws {
        let request = TSIG.verifyRequest(Vectors.queryRequest, keyring: Vectors.keyring, now: Vectors.updateTime)
        let context = try #require(request.context)
        #expect(request == .verified(context))
        #expect(context.data.mac.count == 64)
        let reply = TSIG.verifyResponse(Vectors.queryReply, key: Vectors.k2Key, requestMAC: context.data.mac,
                                        now: Vectors.updateTime + 10)
        #expect(reply.context.map { .verified($0) } == reply)

        let answer = try DNSMessage(bytes: Vectors.queryReply)
        #expect(answer.answers == [DNSResourceRecord(name: name("10.100.51.198.hoa.mip.test."), ttl: 30,
                                                     data: .a(0xC633_640A))])
        let start = try #require(tsigStart(of: Vectors.queryReply))
        let resigned = try TSIG.signResponse(strippingTSIG(Vectors.queryReply, at: start), key: Vectors.k2Key,
                                             request: context, now: Vectors.updateTime)
        #expect(resigned.bytes == Vectors.queryReply)
    }

    @Test func ednsQueryKeepsOptBeforeTSIG() throws {
        let outcome = TSIG.verifyRequest(Vectors.ednsQuery, keyring: Vectors.keyring, now: Vectors.ednsQueryTime)
        #expect(outcome.context.map { .verified($0) } == outcome)
        let message = try DNSMessage(bytes: Vectors.ednsQuery)
        let edns = try #require(message.edns)
        #expect(edns.udpPayloadSize == 1232)
        #expect(edns.options.count == 1)
        #expect(edns.options.first?.code == 10) // COOKIE
        #expect(edns.options.first?.data.count == 8)
        #expect(message.additionals.map(\.type) == [.opt, .tsig])
        // Setting EDNS again keeps TSIG last.
        var copy = message
        copy.edns = EDNS(udpPayloadSize: 4096)
        #expect(copy.additionals.map(\.type) == [.opt, .tsig])
        copy.edns = nil
        #expect(copy.additionals.map(\.type) == [.tsig])
    }

    @Test func richUpdateDecodesEveryOperationKind() throws {
        let outcome = TSIG.verifyRequest(Vectors.richUpdate, keyring: Vectors.keyring, now: Vectors.richUpdateTime)
        #expect(outcome.context.map { .verified($0) } == outcome)
        let owner = name("10.100.51.198.hoa.mip.test.")
        let update = try DNSUpdateRequest(try DNSMessage(bytes: Vectors.richUpdate))
        #expect(update.prerequisites == [.nameInUse(owner), .rrsetExists(owner, .txt)])
        #expect(update.operations == [
            .deleteRecord(owner, .a(0xC000_0207)),
            .deleteRRset(owner, .txt),
            .add(DNSResourceRecord(name: owner, ttl: 30, data: .a(0xC633_640A))),
            .add(DNSResourceRecord(name: owner, ttl: 30, data: .txt(strings: ["seq=7", "t=1795766096"]))),
        ])
    }
}
