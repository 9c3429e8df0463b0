import Glibc
import MATDNS
import MATPacket
import Testing
@testable import MATIMSClient

@Suite("UDP/TCP transport against a loopback responder")
struct TransportTests {
    static let owner = name("10.100.51.198.hoa.mat.example.")

    /// A zone where node A is at 192.0.2.10, seq 5.
    static func zone() -> MiniZone {
        var zone = MiniZone()
        zone.publish(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 5)
        return zone
    }

    static func query(_ qname: DNSName = owner, type: DNSType = .a, id: UInt16 = 0x1234) -> [UInt8] {
        try! DNSMessage(header: DNSHeader(id: id), questions: [DNSQuestion(name: qname, type: type)]).encode()
    }

    static func fast(rounds: Int = 1) -> DNSTransport {
        DNSTransport(options: DNSTransportOptions(udpTimeoutMilliseconds: 200, tcpTimeoutMilliseconds: 500, rounds: rounds))
    }

    @Test func answersOverUDP() throws {
        let responder = try TestResponder(zone: Self.zone())
        defer { responder.stop() }
        let transport = Self.fast()
        let exchange = try transport.exchange(Self.query(), servers: [responder.server], retryOn: [])
        #expect(!exchange.overTCP)
        #expect(exchange.server == responder.server)
        #expect(exchange.message.header.id == 0x1234)
        #expect(exchange.message.answers.map(\.data) == [.a(0xC000_020A)])
        let stats = transport.statistics
        #expect(stats.queriesSent == 1 && stats.retries == 0 && stats.timeouts == 0)
    }

    @Test func answersOverIPv6LoopbackWithTCPFallback() throws {
        let responder = try TestResponder(mode: .truncateUDP, zone: Self.zone(), host: ip("::1"))
        defer { responder.stop() }
        #expect(responder.server.description.hasPrefix("[::1]:"))
        let transport = Self.fast()
        let exchange = try transport.exchange(Self.query(), servers: [responder.server], retryOn: [])
        #expect(exchange.overTCP && exchange.server == responder.server)
        #expect(exchange.message.answers.map(\.data) == [.a(0xC000_020A)])
        #expect(responder.counts == (udp: 1, tcp: 1))
    }

    @Test func silentServerTimesOut() throws {
        let responder = try TestResponder(mode: .silent)
        defer { responder.stop() }
        let transport = Self.fast(rounds: 2)
        let start = monotonicMilliseconds()
        #expect(throws: DNSTransportError.allServersFailed([
            DNSServerFailure(server: responder.server, error: .timeout),
            DNSServerFailure(server: responder.server, error: .timeout),
        ])) {
            try transport.exchange(Self.query(), servers: [responder.server], retryOn: [])
        }
        let elapsed = monotonicMilliseconds() - start
        #expect(elapsed >= 400 && elapsed < 2000, "two tries of 200 ms took \(elapsed) ms")
        let stats = transport.statistics
        #expect(stats.timeouts == 2 && stats.retries == 1 && stats.queriesSent == 2)
        #expect(responder.counts.udp == 2)
    }

    @Test func retriesTheSecondServerAfterATimeout() throws {
        let first = try TestResponder(mode: .silent)
        let second = try TestResponder(zone: Self.zone())
        defer {
            first.stop()
            second.stop()
        }
        let transport = Self.fast()
        let exchange = try transport.exchange(Self.query(), servers: [first.server, second.server], retryOn: [])
        #expect(exchange.server == second.server)
        #expect(exchange.message.answers.count == 1)
        let stats = transport.statistics
        #expect(stats.timeouts == 1 && stats.retries == 1)
        #expect(first.counts.udp == 1 && second.counts.udp == 1)
    }

    @Test func unreachableServerFailsFastAndTheNextAnswers() throws {
        let dead = deadPort()
        let live = try TestResponder(zone: Self.zone())
        defer { live.stop() }
        let transport = DNSTransport(options: DNSTransportOptions(udpTimeoutMilliseconds: 3000, rounds: 1))
        let start = monotonicMilliseconds()
        let exchange = try transport.exchange(Self.query(), servers: [dead, live.server], retryOn: [])
        #expect(monotonicMilliseconds() - start < 2000, "ICMP port unreachable should not wait for the timeout")
        #expect(exchange.server == live.server)
        #expect(transport.statistics.networkErrors == 1)
        #expect(transport.statistics.timeouts == 0)
    }

    @Test func truncatedAnswerIsRetriedOverTCP() throws {
        let responder = try TestResponder(mode: .truncateUDP, zone: Self.zone())
        defer { responder.stop() }
        let transport = Self.fast()
        let exchange = try transport.exchange(Self.query(), servers: [responder.server], retryOn: [])
        #expect(exchange.overTCP)
        #expect(!exchange.message.header.isTruncated)
        #expect(exchange.message.answers.map(\.data) == [.a(0xC000_020A)])
        #expect(responder.counts == (udp: 1, tcp: 1))
        let stats = transport.statistics
        #expect(stats.truncationFallbacks == 1 && stats.tcpQueries == 1 && stats.queriesSent == 2)
    }

    @Test func largeRequestGoesStraightToTCP() throws {
        let responder = try TestResponder(zone: Self.zone())
        defer { responder.stop() }
        let transport = DNSTransport(options: DNSTransportOptions(udpTimeoutMilliseconds: 200, maxUDPRequestSize: 20))
        let exchange = try transport.exchange(Self.query(), servers: [responder.server], retryOn: [])
        #expect(exchange.overTCP)
        #expect(responder.counts == (udp: 0, tcp: 1))
    }

    @Test func responseWithWrongIDIsIgnored() throws {
        let responder = try TestResponder(mode: .wrongIDFirst, zone: Self.zone())
        defer { responder.stop() }
        let transport = Self.fast()
        let exchange = try transport.exchange(Self.query(id: 0x4242), servers: [responder.server], retryOn: [])
        #expect(exchange.message.header.id == 0x4242)
        #expect(exchange.message.answers.count == 1)
        #expect(transport.statistics.ignoredResponses == 1)
    }

    @Test func responseForAnotherQuestionIsIgnored() throws {
        let responder = try TestResponder(mode: .wrongQuestionFirst, zone: Self.zone())
        defer { responder.stop() }
        let transport = Self.fast()
        let exchange = try transport.exchange(Self.query(), servers: [responder.server], retryOn: [])
        #expect(exchange.message.questions.first?.name == Self.owner)
        #expect(transport.statistics.ignoredResponses == 1)
    }

    @Test func echoedRequestIsNotTakenForAnAnswer() throws {
        let responder = try TestResponder(mode: .echoFirst, zone: Self.zone())
        defer { responder.stop() }
        let transport = Self.fast()
        let exchange = try transport.exchange(Self.query(), servers: [responder.server], retryOn: [])
        #expect(exchange.message.header.isResponse)
        #expect(transport.statistics.ignoredResponses == 1)
    }

    @Test func answerFromAnotherPortIsNeverAccepted() throws {
        let responder = try TestResponder(mode: .otherPortOnly, zone: Self.zone())
        defer { responder.stop() }
        let transport = Self.fast()
        #expect(throws: DNSTransportError.allServersFailed([DNSServerFailure(server: responder.server, error: .timeout)])) {
            try transport.exchange(Self.query(), servers: [responder.server], retryOn: [])
        }
        #expect(responder.counts.udp == 1)
    }

    @Test func serverFailureMovesToTheNextServer() throws {
        let failing = try TestResponder(mode: .rcode(.servFail))
        let good = try TestResponder(zone: Self.zone())
        defer {
            failing.stop()
            good.stop()
        }
        let transport = Self.fast()
        let exchange = try transport.exchange(Self.query(), servers: [failing.server, good.server], retryOn: [.servFail])
        #expect(exchange.server == good.server)
        // Without retryOn the first answer is final.
        let direct = try transport.exchange(Self.query(), servers: [failing.server, good.server], retryOn: [])
        #expect(direct.message.header.responseCode == .servFail)
        // When every server fails that way, the last failure is returned, not thrown.
        let last = try transport.exchange(Self.query(), servers: [failing.server], retryOn: [.servFail])
        #expect(last.message.header.responseCode == .servFail)
    }

    @Test func badRequestsAreRefusedWithoutSending() {
        let transport = Self.fast()
        #expect(throws: DNSTransportError.badRequest) {
            try transport.exchange([1, 2, 3], servers: [deadPort()], retryOn: [])
        }
        #expect(throws: DNSTransportError.noServers) {
            try transport.exchange(Self.query(), servers: [], retryOn: [])
        }
        #expect(transport.statistics.queriesSent == 0)
    }

    @Test func answerMatching() throws {
        let request = try DNSMessage(bytes: Self.query(id: 7))
        var reply = request.response()
        #expect(DNSTransport.answers(reply, request: request))
        reply.header.id = 8
        #expect(!DNSTransport.answers(reply, request: request))
        reply = request.response()
        reply.header.opcode = .update
        #expect(!DNSTransport.answers(reply, request: request))
        // Case differences in the echoed name are fine (DNS 0x20).
        reply = request.response()
        reply.questions = [DNSQuestion(name: name("10.100.51.198.HOA.mat.EXAMPLE."), type: .a)]
        #expect(DNSTransport.answers(reply, request: request))
        // An empty question section passes only with an error code.
        reply = request.response()
        reply.questions = []
        #expect(!DNSTransport.answers(reply, request: request))
        reply = request.response(code: .formErr)
        reply.questions = []
        #expect(DNSTransport.answers(reply, request: request))
    }
}
