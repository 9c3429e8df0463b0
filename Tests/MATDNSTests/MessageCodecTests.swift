import Testing
@testable import MATDNS

@Suite("Message encoding and decoding")
struct MessageCodecTests {
    static let owner = name("10.100.51.198.hoa.mat.example.")

    static let records: [DNSResourceRecord] = [
        DNSResourceRecord(name: owner, ttl: 30, data: .a(0xC633_640A)),
        DNSResourceRecord(name: owner, ttl: 30, data: .aaaa(high: 0x2001_0DB8_0000_0000, low: 1)),
        DNSResourceRecord(name: owner, ttl: 30, data: .txt(strings: ["seq=7", "t=1795766096", ""])),
        DNSResourceRecord(name: owner, ttl: 30, data: .txt([Array(repeating: 0x41, count: 255), [0, 1, 255]])),
        DNSResourceRecord(name: name("10.100.51.198.in-addr.arpa."), ttl: 60, data: .ptr(owner)),
        DNSResourceRecord(name: name("mat.example."), ttl: 3600, data: .soa(DNSSOA(
            primary: name("ims.mat.example."), mailbox: name("hostmaster.mat.example."),
            serial: 2026_11_27_01, refresh: 60, retry: 30, expire: 600, minimum: 5))),
        DNSResourceRecord(name: name("mat.example."), ttl: 3600, data: .ns(name("ims.mat.example."))),
        DNSResourceRecord(name: name("www.mat.example."), ttl: 5, data: .cname(name("ims.mat.example."))),
        DNSResourceRecord(name: name("mat.example."), ttl: 5, data: .mx(preference: 10, exchange: name("mx.mat.example."))),
        EDNS(udpPayloadSize: 1232, extendedRCode: 1, version: 0, dnssecOK: true,
             options: [EDNSOption(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8]), EDNSOption(code: 12, data: [])]).record,
        DNSResourceRecord(name: .root, class: DNSClass(4096), ttl: 0, data: .opt([])),
        DNSResourceRecord(name: name("k.mat.example."), class: .any, ttl: 0, data: .tsig(TSIGData(
            algorithm: name("hmac-sha256."), timeSigned: 0xFFFF_FFFF_FFFF, fudge: 300,
            mac: Array(0..<32), originalID: 7, error: .badTime, otherData: [0, 0, 1, 2, 3, 4]))),
        DNSResourceRecord(name: owner, ttl: 30, data: .unknown(DNSType(65280), [0xDE, 0xAD, 0xBE, 0xEF])),
        DNSResourceRecord(name: owner, class: .ch, ttl: 30, data: .unknown(.a, [1, 2, 3, 4, 5, 6])),
        DNSResourceRecord(name: owner, class: .any, ttl: 0, data: .empty(.aaaa)),
        DNSResourceRecord(name: owner, class: .none, ttl: 0, data: .empty(.any)),
        DNSResourceRecord(name: owner, class: .none, ttl: 0, data: .a(0xC000_0207)),
    ]

    @Test(arguments: records)
    func recordRoundTrips(record: DNSResourceRecord) throws {
        for compress in [true, false] {
            for section in 0..<3 {
                var message = DNSMessage(header: DNSHeader(id: 9, opcode: .update),
                                         questions: [DNSQuestion(name: name("mat.example."), type: .soa)])
                switch section {
                case 0: message.answers = [record, record]
                case 1: message.authorities = [record]
                default: message.additionals = [record]
                }
                let bytes = try message.encode(compress: compress)
                #expect(try DNSMessage(bytes: bytes) == message)
            }
        }
    }

    @Test func headerFlagsRoundTrip() throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<500 {
            let flags = UInt16(truncatingIfNeeded: rng.next()) & ~0x0040 // Z is dropped by design
            let header = DNSHeader(id: UInt16(truncatingIfNeeded: rng.next()), flags: flags)
            #expect(header.flags == flags)
            let message = DNSMessage(header: header)
            #expect(try DNSMessage(bytes: message.encode()).header == header)
        }
        let header = DNSHeader(id: 1, isResponse: true, opcode: .update, isAuthoritative: true, isTruncated: true,
                               recursionDesired: true, recursionAvailable: true, responseCode: .notZone)
        #expect(header.flags == 0x8000 | 5 << 11 | 0x0400 | 0x0200 | 0x0100 | 0x0080 | 10)
    }

    @Test func compressionShrinksAndDecodesRight() throws {
        var message = DNSMessage(header: DNSHeader(id: 1, isResponse: true),
                                 questions: [DNSQuestion(name: name("mat.example."), type: .soa)])
        for i in 0..<20 {
            let owner = try DNSName.reverseIPv4(0xC633_6400 | UInt32(i), in: name("HOA.Mat.Example."))
            message.answers.append(DNSResourceRecord(name: owner, ttl: 5, data: .a(UInt32(i))))
            message.answers.append(DNSResourceRecord(name: owner, ttl: 5, data: .txt(strings: ["seq=\(i)"])))
        }
        message.authorities.append(DNSResourceRecord(name: name("mat.example."), ttl: 60, data: .soa(DNSSOA(
            primary: name("ims.mat.example."), mailbox: name("hostmaster.mat.example."),
            serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5))))
        let compressed = try message.encode()
        let plain = try message.encode(compress: false)
        #expect(compressed.count * 2 < plain.count)
        #expect(try DNSMessage(bytes: compressed) == message)
        #expect(try DNSMessage(bytes: plain) == message)
        // Compression matches case-insensitively, so a compressed suffix reads back in the
        // spelling first written (here the question's); uncompressed names keep their own.
        let decoded = try DNSMessage(bytes: compressed)
        #expect(decoded.answers[0].name.description == "0.100.51.198.HOA.mat.example.")
        #expect(try DNSMessage(bytes: plain).answers[0].name.description == "0.100.51.198.HOA.Mat.Example.")
        // Second record's owner is a bare pointer to the first one's.
        let firstOwner = 12 + name("mat.example.").wireLength + 4
        #expect(compressed.contains(0xC0))
        #expect(compressed[firstOwner] == 1)
    }

    @Test func compressionIsCaseInsensitive() throws {
        let message = DNSMessage(questions: [DNSQuestion(name: name("MAT.example."), type: .a),
                                             DNSQuestion(name: name("x.mat.EXAMPLE."), type: .a)])
        let bytes = try message.encode()
        // 12 header + 13 name + 4 + (2 for "x" + 2 pointer) + 4
        #expect(bytes.count == 12 + 13 + 4 + 4 + 4)
        let decoded = try DNSMessage(bytes: bytes)
        #expect(decoded == message)
        #expect(decoded.questions[1].name.description == "x.MAT.example.")
    }

    @Test func namesPastThePointerLimitStillRoundTrip() throws {
        var message = DNSMessage(header: DNSHeader(id: 2, isResponse: true))
        let filler = Array(repeating: UInt8(0x61), count: 255)
        for i in 0..<80 {
            let owner = try name("mat.example.").prepending(label: "n\(i)")
            message.answers.append(DNSResourceRecord(name: owner, ttl: 1, data: .txt([filler, filler])))
        }
        let bytes = try message.encode()
        #expect(bytes.count > 0x4000 * 2)
        #expect(try DNSMessage(bytes: bytes) == message)
    }

    @Test func encoderRefusesOversizedData() {
        let tooLong = DNSMessage(answers: [DNSResourceRecord(name: .root, ttl: 0, data: .txt([Array(repeating: 0, count: 256)]))])
        #expect(throws: DNSEncodeError.characterStringTooLong) { try tooLong.encode() }
        let bigRData = DNSMessage(answers: [DNSResourceRecord(name: .root, ttl: 0, data: .unknown(DNSType(99), Array(repeating: 0, count: 70_000)))])
        #expect(throws: DNSEncodeError.rdataTooLong) { try bigRData.encode() }
        let manyTXT = Array(repeating: DNSResourceRecord(name: .root, ttl: 0, data: .unknown(DNSType(99), Array(repeating: 0, count: 60_000))), count: 2)
        #expect(throws: DNSEncodeError.messageTooLong) { try DNSMessage(answers: manyTXT).encode() }
    }

    @Test func extendedResponseCodeCombinesHeaderAndEDNS() {
        var message = DNSMessage(header: DNSHeader(responseCode: DNSResponseCode(0)))
        message.edns = EDNS(extendedRCode: 1)
        #expect(message.extendedResponseCode == .badVers)
        #expect(message.edns?.extendedRCode == 1)
    }

    @Test func responseSkeletonEchoesTheRequest() throws {
        let request = try DNSMessage(bytes: Vectors.updateRequest)
        let reply = request.response(code: .nxRRset)
        #expect(reply.header.id == 0x3B26 && reply.header.isResponse && reply.header.opcode == .update)
        #expect(reply.header.responseCode == .nxRRset && reply.header.isAuthoritative)
        #expect(reply.questions == request.questions)
        #expect(reply.answers.isEmpty && reply.authorities.isEmpty && reply.additionals.isEmpty)

        let query = try DNSMessage(bytes: Vectors.ednsQuery)
        let answer = query.response(code: .badVers)
        #expect(answer.header.recursionDesired)
        #expect(answer.header.responseCode == .noError)
        #expect(answer.extendedResponseCode == .badVers)
        #expect(query.response().edns != nil)
    }

    @Test func responseCodesHaveTheirRegistryValues() {
        let expected: [(DNSResponseCode, UInt16, String)] = [
            (.noError, 0, "NOERROR"), (.formErr, 1, "FORMERR"), (.servFail, 2, "SERVFAIL"), (.nxDomain, 3, "NXDOMAIN"),
            (.notImp, 4, "NOTIMP"), (.refused, 5, "REFUSED"), (.yxDomain, 6, "YXDOMAIN"), (.yxRRset, 7, "YXRRSET"),
            (.nxRRset, 8, "NXRRSET"), (.notAuth, 9, "NOTAUTH"), (.notZone, 10, "NOTZONE"), (.badSig, 16, "BADSIG"),
            (.badKey, 17, "BADKEY"), (.badTime, 18, "BADTIME"), (.badTrunc, 22, "BADTRUNC"),
        ]
        for (code, value, text) in expected {
            #expect(code.rawValue == value)
            #expect(code.description == text)
        }
        #expect(DNSType(65280).description == "TYPE65280")
        #expect(DNSClass.none.rawValue == 254 && DNSClass.any.rawValue == 255)
        #expect(DNSOpcode.update.rawValue == 5)
    }
}
