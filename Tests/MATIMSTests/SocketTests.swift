#if canImport(Glibc)
import Glibc
#endif
import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import MATSystem
import Testing

/// A tiny DNS client over real sockets.
struct Client {
    static func udpSocket(bindTo endpoint: IPEndpoint? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        if let endpoint {
            var (storage, length) = SocketAddress.storage(for: endpoint)
            let result = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            #expect(result == 0)
        }
        return fd
    }

    static func receive(_ fd: Int32, timeoutMs: Int32 = 3000) -> ([UInt8], IPEndpoint?)? {
        guard Sockets.waitReadable([fd], timeout: timeoutMs)[0] else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        guard let (n, source) = Sockets.receive(fd, into: &buffer) else { return nil }
        return (Array(buffer[0..<n]), source)
    }

    static func exchangeUDP(_ bytes: [UInt8], with server: IPEndpoint) throws -> DNSMessage {
        let fd = try udpSocket()
        defer { close(fd) }
        #expect(Sockets.send(fd, bytes, to: server))
        let (reply, _) = try #require(receive(fd))
        return try DNSMessage(bytes: reply)
    }

    static func connectTCP(_ server: IPEndpoint) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var (storage, length) = SocketAddress.storage(for: server)
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        #expect(result == 0)
        return fd
    }

    static func sendTCP(_ fd: Int32, _ bytes: [UInt8]) {
        let framed = [UInt8(bytes.count >> 8), UInt8(truncatingIfNeeded: bytes.count)] + bytes
        _ = framed.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            guard Sockets.waitReadable([fd], timeout: 3000)[0] else { return nil }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n <= 0 { return nil }
            done += n
        }
        return buffer
    }

    static func receiveTCP(_ fd: Int32) -> [UInt8]? {
        guard let prefix = readExactly(fd, 2) else { return nil }
        return readExactly(fd, Int(prefix[0]) << 8 | Int(prefix[1]))
    }
}

@Suite("Real sockets on 127.0.0.1", .serialized)
struct SocketTests {
    @Test func udpAndTCPQueriesUpdatesTransfersAndNotify() throws {
        // The test plays the secondary: NOTIFY comes here.
        let secondary = try Client.udpSocket(bindTo: IPEndpoint("127.0.0.1:0", defaultPort: 53)!)
        defer { close(secondary) }
        let secondaryEndpoint = try #require(Sockets.localEndpoint(secondary))
        var config = testConfiguration()
        config.zones[0].notify = [secondaryEndpoint]
        config.maxTCPConnections = 4
        let server = try IMSServer(configuration: config)
        try server.start()
        defer { server.stop() }
        let endpoint = server.endpoints[0]
        #expect(endpoint.port != 0)

        let soa = try Client.exchangeUDP(try queryBytes(zoneName, .soa, edns: 1232), with: endpoint)
        #expect(soa.header.isAuthoritative && soa.answers.first?.type == .soa)
        let serial = try #require(server.core.zone(zoneName)).serial

        // A signed update over UDP, with the real clock.
        let now = IMSCore.systemClock()
        let request = try update(node1Key, at: now) { u in
            u.deleteRRset(node1, type: .a)
            u.add(node1, ttl: 10, a("192.0.2.10"))
        }
        let fd = try Client.udpSocket()
        #expect(Sockets.send(fd, request.bytes, to: endpoint))
        let (replyBytes, _) = try #require(Client.receive(fd))
        close(fd)
        #expect(rcode(try DNSMessage(bytes: replyBytes)) == .noError)
        let verified = TSIG.verifyResponse(replyBytes, key: node1Key, requestMAC: request.mac, now: now)
        #expect(verified.context.map { .verified($0) } == verified)

        // NOTIFY for the new serial arrives from the server's address; acknowledge it.
        let (notifyBytes, notifySource) = try #require(Client.receive(secondary))
        let notify = try DNSMessage(bytes: notifyBytes)
        #expect(notify.header.opcode == .notify && notify.header.isAuthoritative)
        #expect(notify.questions.first == DNSQuestion(name: zoneName, type: .soa))
        #expect(notify.answers.first.map { ZoneDiff.serial(of: $0) } == serial &+ 1)
        #expect(notifySource?.address == endpoint.address)
        let ack = try notify.response(authoritative: false).encode()
        #expect(Sockets.send(secondary, ack, to: try #require(notifySource)))
        for _ in 0..<100 where server.core.counters[.notifyAcknowledged] == 0 { usleep(20_000) }
        #expect(server.core.counters[.notifyAcknowledged] == 1)

        // TCP: two pipelined queries and an AXFR on one connection.
        let tcp = try Client.connectTCP(endpoint)
        defer { close(tcp) }
        Client.sendTCP(tcp, try queryBytes(node1, .a))
        Client.sendTCP(tcp, try queryBytes(node1, .txt))
        let first = try DNSMessage(bytes: try #require(Client.receiveTCP(tcp)))
        #expect(first.answers.map(\.data) == [a("192.0.2.10")])
        let second = try DNSMessage(bytes: try #require(Client.receiveTCP(tcp)))
        #expect(rcode(second) == .noError && second.answers.isEmpty)
        var axfr = DNSMessage(header: DNSHeader(id: 9), questions: [DNSQuestion(name: zoneName, type: .axfr)])
        Client.sendTCP(tcp, try axfr.encode())
        var soaCount = 0
        var records = 0
        while soaCount < 2, let bytes = Client.receiveTCP(tcp) {
            let message = try DNSMessage(bytes: bytes)
            records += message.answers.count
            soaCount += message.answers.filter { $0.type == .soa }.count
        }
        #expect(soaCount == 2 && records == 5)
        axfr.header.id = 10

        // The secondary never acknowledges a second change: the server retries.
        let again = try update(node1Key, at: now + 1) { $0.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=2"])) }
        #expect(rcode(try Client.exchangeUDP(again.bytes, with: endpoint)) == .noError)
        let (n1, _) = try #require(Client.receive(secondary))
        let (n2, _) = try #require(Client.receive(secondary, timeoutMs: 3000))
        #expect(try DNSMessage(bytes: n1).header.id != DNSMessage(bytes: n2).header.id)
    }

    @Test func tcpConnectionsAreBoundedAndIdleOnesClosed() throws {
        var config = testConfiguration()
        config.maxTCPConnections = 2
        config.tcpIdleTimeout = 1
        let server = try IMSServer(configuration: config)
        try server.start()
        defer { server.stop() }
        let endpoint = server.endpoints[0]
        let c1 = try Client.connectTCP(endpoint)
        let c2 = try Client.connectTCP(endpoint)
        defer { close(c1); close(c2) }
        Client.sendTCP(c1, try queryBytes(zoneName, .soa))
        #expect(Client.receiveTCP(c1) != nil)
        Client.sendTCP(c2, try queryBytes(zoneName, .soa))
        #expect(Client.receiveTCP(c2) != nil)
        // A third concurrent connection is closed at once.
        let c3 = try Client.connectTCP(endpoint)
        defer { close(c3) }
        Client.sendTCP(c3, try queryBytes(zoneName, .soa))
        #expect(Client.receiveTCP(c3) == nil)
        #expect(server.core.counters[.tcpConnectionsRejected] == 1)
        // Idle connections go after the timeout, and then new ones are served.
        usleep(1_600_000)
        #expect(server.core.counters[.tcpIdleClosed] == 2)
        let c4 = try Client.connectTCP(endpoint)
        defer { close(c4) }
        Client.sendTCP(c4, try queryBytes(zoneName, .soa))
        #expect(Client.receiveTCP(c4) != nil)
    }

    @Test func aBurstOfDatagramsIsAnsweredInBatches() throws {
        let server = try IMSServer(configuration: testConfiguration())
        try server.start()
        defer { server.stop() }
        let fd = try Client.udpSocket()
        defer { close(fd) }
        let garbage: [UInt8] = [1, 2, 3, 4, 5]
        for i in 0..<200 {
            #expect(Sockets.send(fd, i % 10 == 9 ? garbage : try queryBytes(zoneName, .soa, id: UInt16(i)), to: server.endpoints[0]))
        }
        var answered = Set<UInt16>()
        while let (bytes, _) = Client.receive(fd, timeoutMs: 1000) {
            answered.insert(try DNSMessage(bytes: bytes).header.id)
            if answered.count == 180 { break }
        }
        #expect(answered.count == 180)
        #expect(server.core.counters[.malformedDropped] == 20)
        #expect(server.core.counters[.queries] == 180)
    }

    @Test func listeningOnIPv6Loopback() throws {
        var config = testConfiguration()
        config.listen = [IPEndpoint("[::1]:0", defaultPort: 53)!]
        let server: IMSServer
        do {
            server = try IMSServer(configuration: config)
        } catch {
            // No IPv6 loopback in this environment: nothing to test.
            return
        }
        try server.start()
        defer { server.stop() }
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        #expect(Sockets.send(fd, try queryBytes(zoneName, .soa), to: server.endpoints[0]))
        let (bytes, _) = try #require(Client.receive(fd))
        #expect(try DNSMessage(bytes: bytes).answers.first?.type == .soa)
    }
}
