#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATPacket
import MATSystem
import MATTestSupport
import Testing
@testable import MATNode

/// The metrics endpoint for real, on a loopback TCP port: `GET /metrics` gets the
/// exposition, anything else a short error, and a client that stalls costs only itself.
@Suite struct MetricsEndpointTests {
    let controlSocket: TemporaryFile
    var path: String { controlSocket.path }
    let port = UInt16.random(in: 20_000...60_000)

    init() throws { controlSocket = try TemporaryFile("control.sock", prefix: "matd-metrics") }

    func server(limits: ControlServer.Limits = ControlServer.defaultLimits) throws -> ControlServer {
        let endpoint = ControlServer.MetricsEndpoint(address: IPAddress("127.0.0.1")!, port: port) {
            "# TYPE matd_test counter\nmatd_test_total 1\n"
        }
        return try ControlServer(path: path, limits: limits, metrics: endpoint) { request in
            ControlReply(error: "answered \(request.command)")
        }
    }

    /// Connects to the endpoint, sends `request`, and returns everything until the server closes.
    func exchange(_ request: String, hold: Double = 0) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        let connected = SocketAddress.with(IPEndpoint(address: IPAddress("127.0.0.1")!, port: port)) { connect(fd, $0, $1) }
        guard connected == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if hold > 0 { Thread.sleep(forTimeInterval: hold) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    @Test func getMetricsIsAnsweredWithTheExposition() throws {
        let control = try server()
        defer { control.stop() }
        let reply = try exchange("GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
        #expect(reply.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(reply)")
        #expect(reply.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(reply.contains("Content-Length: 43\r\n"), "\(reply)")
        #expect(reply.hasSuffix("\r\n\r\n# TYPE matd_test counter\nmatd_test_total 1\n"), "\(reply)")
        // A query string is fine; HEAD has the headers only; bare LF line ends too.
        #expect(try exchange("GET /metrics?x=1 HTTP/1.0\n\n").hasPrefix("HTTP/1.1 200 OK"))
        let head = try exchange("HEAD /metrics HTTP/1.1\r\n\r\n")
        #expect(head.hasPrefix("HTTP/1.1 200 OK") && head.hasSuffix("\r\n\r\n"), "\(head)")
        #expect(control.counters["metrics_requests"] == 3, "\(control.counters)")
    }

    @Test func everythingElseGetsAShortError() throws {
        let control = try server(limits: { var limits = ControlServer.defaultLimits; limits.requestBytes = 512; return limits }())
        defer { control.stop() }
        #expect(try exchange("GET / HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404 Not Found"))
        #expect(try exchange("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").hasPrefix("HTTP/1.1 405"))
        #expect(try exchange("hello\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        let huge = "GET /metrics HTTP/1.1\r\n" + String(repeating: "X-Filler: 0123456789\r\n", count: 40) + "\r\n"
        #expect(try exchange(huge).hasPrefix("HTTP/1.1 431"))
        #expect(control.counters["metrics_not_found"] == 1 && control.counters["metrics_malformed"] == 1,
                "\(control.counters)")
        // The control socket is still answered as before.
        #expect(try sendControlRequest(ControlRequest(command: .status), to: path).error == "answered status")
    }

    @Test func aStalledScraperCostsOnlyItself() throws {
        var limits = ControlServer.defaultLimits
        limits.requestMilliseconds = 300
        let control = try server(limits: limits)
        defer { control.stop() }
        // Headers never finished: the connection is dropped at its deadline...
        let started = Date()
        let stalled = try exchange("GET /metrics HTTP/1.1\r\n", hold: 0)
        #expect(stalled.isEmpty && Date().timeIntervalSince(started) < 3, "\(stalled)")
        #expect(control.counters["clients_timed_out"] == 1, "\(control.counters)")
        // ...while another scraper is answered at once.
        #expect(try exchange("GET /metrics HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 200 OK"))
    }
}
