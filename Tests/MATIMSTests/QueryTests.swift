import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import Testing

@Suite("Queries: authoritative answers, EDNS, truncation, bad input")
struct QueryTests {
    func populated() throws -> IMSCore {
        let core = try makeCore()
        try send(update(adminKey) { u in
            u.add(node1, ttl: 10, a("192.0.2.10"))
            u.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=1"]))
            u.add(moa("192.0.2.10"), ttl: 10, .ptr(node1))
            for i in 0..<120 { u.add(node2, ttl: 10, aaaa("2001:db8::\(String(i, radix: 16))")) }
        }, to: core)
        return core
    }

    @Test func answersAreAuthoritativeWithTheRightRCode() throws {
        let core = try populated()
        let positive = try query(core, node1, .a)
        #expect(positive.header.isAuthoritative && rcode(positive) == .noError)
        #expect(positive.answers.map(\.data) == [a("192.0.2.10")])
        #expect(positive.header.id == 7 && positive.header.recursionDesired && !positive.header.recursionAvailable)
        let ptr = try query(core, moa("192.0.2.10"), .ptr)
        #expect(ptr.answers.map(\.data) == [.ptr(node1)])
        let noData = try query(core, node1, .aaaa)
        #expect(rcode(noData) == .noError && noData.answers.isEmpty && noData.authorities.first?.type == .soa)
        let missing = try query(core, hoa("198.51.100.99"), .a)
        #expect(rcode(missing) == .nxDomain && missing.header.isAuthoritative)
        let caseFolded = try query(core, name("10.100.51.198.HOA.MAT.example."), .a)
        #expect(caseFolded.answers.count == 1)
        #expect(caseFolded.questions[0].name.description == "10.100.51.198.HOA.MAT.example.")
        #expect(core.counters[.queriesNXDomain] == 1 && core.counters[.queriesNoData] == 1)
    }

    @Test func namesOutsideTheZoneAreRefused() throws {
        let core = try makeCore()
        let outside = try query(core, name("www.example.com."), .a)
        #expect(rcode(outside) == .refused && !outside.header.isAuthoritative)
        let chaos = try DNSMessage(bytes: try #require(core.handleDatagram(try queryBytes(name("version.bind."), .txt, qclass: .ch))))
        #expect(rcode(chaos) == .refused)
    }

    @Test func largeAnswersAreTruncatedOverUDPAndWholeOverTCP() throws {
        let core = try populated()
        let plain = try query(core, node2, .aaaa)
        #expect(plain.header.isTruncated && plain.answers.isEmpty)
        let edns = try query(core, node2, .aaaa, edns: 4096)
        #expect(edns.header.isTruncated)  // 120 AAAA > 1232 octets, the server's limit
        #expect(edns.edns?.udpPayloadSize == 1232)
        let tcp = try query(core, node2, .aaaa, tcp: true)
        #expect(!tcp.header.isTruncated && tcp.answers.count == 120)
        let small = try query(core, node1, .a, edns: 512)
        #expect(!small.header.isTruncated && small.edns != nil)
        #expect(core.counters[.responsesTruncated] == 2)
    }

    @Test func ednsVersionsAboveZeroGetBadVers() throws {
        let core = try makeCore()
        var message = DNSMessage(header: DNSHeader(id: 3), questions: [DNSQuestion(name: zoneName, type: .soa)])
        message.edns = EDNS(udpPayloadSize: 1232, version: 1)
        let reply = try DNSMessage(bytes: try #require(core.handleDatagram(try message.encode())))
        #expect(rcode(reply) == .badVers)
    }

    @Test func garbageIsDroppedOrAnsweredFormErrAndCounted() throws {
        let core = try makeCore()
        #expect(core.handleDatagram([]) == nil)
        #expect(core.handleDatagram([1, 2, 3]) == nil)
        // A response (QR set) is never answered.
        var response = try queryBytes(zoneName, .soa)
        response[2] |= 0x80
        #expect(core.handleDatagram(response) == nil)
        // A header that promises records that are not there.
        let lying: [UInt8] = [0xAB, 0xCD, 0x01, 0x00, 0x00, 0x01, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 1, 0, 1]
        let formErr = try DNSMessage(bytes: try #require(core.handleDatagram(lying)))
        #expect(rcode(formErr) == .formErr && formErr.header.id == 0xABCD && formErr.questions.isEmpty)
        // A compression loop in the question.
        let loop: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]
        #expect(try DNSMessage(bytes: try #require(core.handleDatagram(loop))).header.responseCode == .formErr)
        // Two questions.
        var two = DNSMessage(header: DNSHeader(id: 4), questions: [DNSQuestion(name: zoneName, type: .soa),
                                                                   DNSQuestion(name: zoneName, type: .ns)])
        #expect(rcode(try DNSMessage(bytes: try #require(core.handleDatagram(try two.encode())))) == .formErr)
        two.questions = []
        #expect(rcode(try DNSMessage(bytes: try #require(core.handleDatagram(try two.encode())))) == .formErr)
        // Opcodes the server does not do.
        var status = try queryBytes(zoneName, .soa)
        status[2] = 2 << 3
        #expect(try DNSMessage(bytes: try #require(core.handleDatagram(status))).header.responseCode == .notImp)
        #expect(core.counters[.malformedDropped] == 3)
        #expect(core.counters[.malformedFormErr] == 4)
        #expect(core.counters[.notImplemented] == 1)
        // The server keeps answering.
        #expect(rcode(try query(core, zoneName, .soa)) == .noError)
    }

    @Test func randomBytesNeverTrapAndAlwaysEndInAReplyOrACountedDrop() throws {
        let core = try makeCore()
        var generator = SystemRandomNumberGenerator()
        let seed = try queryBytes(node1, .a)
        let updateSeed = try update(node1Key) { $0.add(node1, ttl: 10, a("192.0.2.1")) }.bytes
        var handled = 0
        for round in 0..<3000 {
            var bytes = round.isMultiple(of: 2) ? seed : updateSeed
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                let index = Int.random(in: 0..<bytes.count, using: &generator)
                bytes[index] = UInt8.random(in: 0...255, using: &generator)
            }
            if round % 7 == 0 { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))) }
            if let reply = core.handleDatagram(bytes) {
                #expect(reply.count >= 12)
                handled += 1
            }
        }
        let counters = core.counters
        let accounted = counters[.queries] + counters[.malformedDropped] + counters[.malformedFormErr]
            + counters[.updatesAccepted] + counters[.updatesNoChange] + counters[.updatesRefusedUnsigned]
            + counters[.updatesRefusedPolicy] + counters[.updatesRefusedPrerequisite] + counters[.updatesRefusedNotAuth]
            + counters[.updatesRefusedNotZone] + counters[.updatesRefusedFormErr] + counters[.updatesRefusedReplay]
            + counters[.tsigBadKey] + counters[.tsigBadSig] + counters[.tsigBadTime] + counters[.tsigBadTrunc]
            + counters[.tsigFormErr] + counters[.notImplemented] + counters[.queriesRefused]
            + counters[.transfersRefused] + counters[.badVersion]
        #expect(accounted >= 3000)
        #expect(handled > 0)
        #expect(rcode(try query(core, zoneName, .soa)) == .noError)
    }

    @Test func countersAreReadableFromLoopbackOnly() throws {
        let core = try makeCore()
        let bytes = try queryBytes(IMSCore.countersName, .txt, qclass: .ch)
        let local = try DNSMessage(bytes: try #require(core.handleStream(bytes, from: IPEndpoint("127.0.0.1:4000", defaultPort: 53)).first))
        #expect(local.answers.contains { $0.data == .txt(strings: ["queries 0"]) })
        #expect(local.answers.count == IMSCounter.allCases.count)
        // All of them do not fit a UDP reply (even with EDNS): truncated, the client retries over TCP.
        let withEDNS = try queryBytes(IMSCore.countersName, .txt, edns: 1232, qclass: .ch)
        let udp = try DNSMessage(bytes: try #require(core.handleDatagram(withEDNS, from: IPEndpoint("127.0.0.1:4000", defaultPort: 53))))
        #expect(udp.header.isTruncated && udp.answers.isEmpty && rcode(udp) == .noError)
        #expect(try #require(core.handleDatagram(withEDNS, from: IPEndpoint("127.0.0.1:4000", defaultPort: 53))).count <= 1232)
        let remote = try DNSMessage(bytes: try #require(core.handleDatagram(bytes, from: IPEndpoint("192.0.2.1:4000", defaultPort: 53))))
        #expect(rcode(remote) == .refused)
    }

    @Test func theFuzzingInstanceTakesSignedUpdatesWithoutSocketsOrFiles() throws {
        let core = IMSCore.fuzzingInstance()
        let owner = IMSCore.fuzzingNodeKey.name
        let request = try update(IMSCore.fuzzingNodeKey, at: IMSCore.fuzzingTime) { $0.add(owner, ttl: 10, a("192.0.2.1")) }
        #expect(rcode(try send(request, to: core)) == .noError)
        let admin = try update(IMSCore.fuzzingAdminKey, at: IMSCore.fuzzingTime) { $0.add(node2, ttl: 10, a("192.0.2.2")) }
        #expect(rcode(try send(admin, to: core)) == .noError)
        #expect(core.handleStream(try queryBytes(zoneName, .axfr)).count == 1)
    }
}
