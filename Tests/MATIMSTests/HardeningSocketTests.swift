#if canImport(Glibc)
import Glibc
#endif
import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import MATSystem
import MATTestSupport
import Testing

/// Sockets from a chosen loopback source (127.0.0.0/8 is all local on Linux, so
/// 127.0.0.2 and 127.0.1.1 are other clients, in the same or another /24).
enum Source {
    static func socket(_ family: AddressFamily, stream: Bool) -> Int32 {
        Glibc.socket(family == .ipv4 ? AF_INET : AF_INET6,
                     stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue), 0)
    }

    static func bind(_ fd: Int32, _ address: String) {
        var (storage, length) = SocketAddress.storage(for: IPEndpoint(address: IPAddress(address)!, port: 0))
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        #expect(result == 0, "bind \(address)")
    }

    /// A TCP connection to `server` from `address`; the kernel completes it before the
    /// server accepts (the backlog), so whether the server keeps it shows only later.
    static func connect(to server: IPEndpoint, from address: String, receiveBuffer: Int32? = nil) -> Int32 {
        let fd = socket(server.address.family, stream: true)
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        bind(fd, address)
        var (storage, length) = SocketAddress.storage(for: server)
        let result = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        #expect(result == 0, "connect from \(address)")
        return fd
    }

    static func udp(from address: String) -> Int32 {
        let fd = socket(IPAddress(address)!.family, stream: false)
        bind(fd, address)
        return fd
    }

    /// Whether the server closed the connection within `timeoutMs` (EOF or reset).
    static func closedByServer(_ fd: Int32, timeoutMs: Int32) -> Bool {
        guard Sockets.waitReadable([fd], timeout: timeoutMs)[0] else { return false }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) <= 0
    }

    /// A query answered over `fd` (TCP) within 3 s.
    static func answered(_ fd: Int32) throws -> Bool {
        Client.sendTCP(fd, try queryBytes(zoneName, .soa))
        guard let bytes = Client.receiveTCP(fd) else { return false }
        return try DNSMessage(bytes: bytes).answers.first?.type == .soa
    }
}

@Suite("Hardening on loopback sockets: connection limits, stalls, response rate limiting", .serialized)
struct HardeningSocketTests {
    func server(_ configure: (inout IMSConfiguration) -> Void) throws -> IMSServer {
        var config = testConfiguration()
        configure(&config)
        let server = try IMSServer(configuration: config)
        try server.start()
        return server
    }

    @Test func oneSourceCannotTakeEveryConnection() throws {
        let server = try server {
            $0.maxTCPConnections = 6
            $0.maxTCPConnectionsPerSource = 2
            $0.tcpIdleTimeout = 5
        }
        defer { server.stop() }
        let endpoint = server.endpoints[0]
        // Two connections that never send anything hold 127.0.0.1's share.
        let idle = [Source.connect(to: endpoint, from: "127.0.0.1"), Source.connect(to: endpoint, from: "127.0.0.1")]
        defer { idle.forEach { close($0) } }
        for _ in 0..<100 where server.core.counters[.tcpConnections] < 2 { usleep(10_000) }
        let third = Source.connect(to: endpoint, from: "127.0.0.1")
        defer { close(third) }
        #expect(Source.closedByServer(third, timeoutMs: 2000))
        #expect(server.core.counters[.tcpConnectionsRejectedPerSource] == 1)
        #expect(server.core.counters[.tcpConnectionsRejected] == 0)
        // Another client is served at once, meanwhile.
        let other = Source.connect(to: endpoint, from: "127.0.0.2")
        defer { close(other) }
        #expect(try Source.answered(other))
        #expect(server.core.counters[.tcpConnections] == 3)
    }

    @Test func stalledAndIdleConnectionsAreClosedAndTheirSlotsReused() throws {
        let server = try server {
            $0.maxTCPConnectionsPerSource = 2
            $0.tcpIdleTimeout = 1
        }
        defer { server.stop() }
        let endpoint = server.endpoints[0]
        let stalled = Source.connect(to: endpoint, from: "127.0.0.1")
        let idle = Source.connect(to: endpoint, from: "127.0.0.1")
        defer { close(stalled); close(idle) }
        // Announces 100 bytes, sends 10, then nothing: a slow-loris request.
        let partial: [UInt8] = [0, 100] + Array(repeating: 0, count: 10)
        _ = partial.withUnsafeBytes { send(stalled, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        #expect(Source.closedByServer(stalled, timeoutMs: 3000))
        #expect(Source.closedByServer(idle, timeoutMs: 3000))
        for _ in 0..<100 where server.core.counters[.tcpIdleClosed] == 0 { usleep(10_000) }
        #expect(server.core.counters[.tcpStalledClosed] == 1)
        #expect(server.core.counters[.tcpIdleClosed] == 1)
        // Both slots are free again.
        let again = [Source.connect(to: endpoint, from: "127.0.0.1"), Source.connect(to: endpoint, from: "127.0.0.1")]
        defer { again.forEach { close($0) } }
        for fd in again { #expect(try Source.answered(fd)) }
        #expect(server.core.counters[.tcpConnectionsRejectedPerSource] == 0)
    }

    @Test func aClientThatStopsReadingIsClosedAfterTheTimeout() throws {
        let server = try server {
            $0.tcpIdleTimeout = 1
        }
        defer { server.stop() }
        // A name whose TXT answer is about 60 KB, written by the admin through the core.
        let big = name("big.mat.example.")
        let load = try update(adminKey, at: IMSCore.systemClock()) { u in
            for i in 0..<230 { u.add(big, ttl: 10, .txt(strings: ["n\(1000 + i)" + String(repeating: "x", count: 250)])) }
        }
        let loaded = try #require(server.core.handleStream(load.bytes).first)
        #expect(rcode(try DNSMessage(bytes: loaded)) == .noError)
        // A small receive window and 100 pipelined queries it never reads: the replies
        // fill every buffer on the way and the server's send stalls.
        let reader = Source.connect(to: server.endpoints[0], from: "127.0.0.1", receiveBuffer: 4096)
        defer { close(reader) }
        let query = try queryBytes(big, .txt)
        for _ in 0..<100 { Client.sendTCP(reader, query) }
        _ = poll(seconds: 10, every: 0.02) { server.core.counters[.tcpStalledClosed] != 0 }
        #expect(server.core.counters[.tcpStalledClosed] == 1)
        // The slot came back: a new connection is served.
        let next = Source.connect(to: server.endpoints[0], from: "127.0.0.1")
        defer { close(next) }
        #expect(try Source.answered(next))
    }

    @Test func ipv6SourcesAreLimitedToo() throws {
        let server: IMSServer
        do {
            server = try self.server {
                $0.listen = [IPEndpoint("[::1]:0", defaultPort: 53)!]
                $0.maxTCPConnectionsPerSource = 1
            }
        } catch {
            // No IPv6 loopback in this environment: nothing to test.
            return
        }
        defer { server.stop() }
        let first = Source.connect(to: server.endpoints[0], from: "::1")
        defer { close(first) }
        #expect(try Source.answered(first))
        let second = Source.connect(to: server.endpoints[0], from: "::1")
        defer { close(second) }
        #expect(Source.closedByServer(second, timeoutMs: 2000))
        #expect(server.core.counters[.tcpConnectionsRejectedPerSource] == 1)
    }

    @Test func aFloodFromOnePrefixIsLimitedWhileOthersAndSignedRequestsAreAnswered() throws {
        let server = try server {
            $0.rateLimit = RateLimitConfiguration(responsesPerSecond: 5, slip: 2, window: 1, exempt: [])
        }
        defer { server.stop() }
        let endpoint = server.endpoints[0]
        let flooder = Source.udp(from: "127.0.0.1")
        defer { close(flooder) }
        for id in 0..<40 { #expect(Sockets.send(flooder, try queryBytes(zoneName, .soa, id: UInt16(id)), to: endpoint)) }
        var full = 0
        var truncated = 0
        while let (bytes, _) = Client.receive(flooder, timeoutMs: 500) {
            let reply = try DNSMessage(bytes: bytes)
            if reply.header.isTruncated {
                #expect(reply.answers.isEmpty && reply.questions == [DNSQuestion(name: zoneName, type: .soa)])
                truncated += 1
            } else {
                #expect(reply.answers.first?.type == .soa)
                full += 1
            }
        }
        let counters = server.core.counters
        // Five at once, and what the rate refilled while the 40 were on their way.
        #expect(full >= 5 && full <= 8, "answered \(full)")
        #expect(truncated == counters[.rrlSlipped])
        #expect(counters[.rrlDropped] + counters[.rrlSlipped] == 40 - full)
        #expect(counters[.rrlSlipped] >= 15 && counters[.rrlDropped] >= 15)

        // Another /24 is answered in full at once.
        let neighbour = Source.udp(from: "127.0.1.1")
        defer { close(neighbour) }
        #expect(Sockets.send(neighbour, try queryBytes(zoneName, .soa), to: endpoint))
        let (answer, _) = try #require(Client.receive(neighbour))
        #expect(try DNSMessage(bytes: answer).answers.first?.type == .soa)

        // A signed request from the limited prefix is answered (and signed).
        let signed = try TSIG.sign(try queryBytes(node1, .a, id: 99), key: node1Key, now: IMSCore.systemClock())
        #expect(Sockets.send(flooder, signed.bytes, to: endpoint))
        let (signedReply, _) = try #require(Client.receive(flooder))
        #expect(!(try DNSMessage(bytes: signedReply).header.isTruncated))
        let outcome = TSIG.verifyResponse(signedReply, key: node1Key, requestMAC: signed.mac, now: IMSCore.systemClock())
        #expect(outcome.context.map { .verified($0) } == outcome, "reply TSIG does not verify")
        #expect(server.core.counters[.rrlTSIGExempt] == 1)

        // The flood over, the prefix is answered again after the window.
        usleep(2_200_000)
        #expect(Sockets.send(flooder, try queryBytes(zoneName, .soa, id: 500), to: endpoint))
        let (later, _) = try #require(Client.receive(flooder))
        let laterReply = try DNSMessage(bytes: later)
        #expect(laterReply.header.id == 500 && !laterReply.header.isTruncated && laterReply.answers.count == 1)
    }
}
