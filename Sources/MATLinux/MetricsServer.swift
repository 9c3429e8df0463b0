import Foundation
import MATLog
import MATPacket
import Synchronization

/// The `metrics-listen` endpoint of matd and mat-ims: plain HTTP/1.1 on one TCP address,
/// `GET /metrics` (or `HEAD`) answered with the exposition `render` returns (as
/// `contentType`), one request per connection, then the connection closes.
///
/// A ``StreamServer`` serves it, with its limits and deadlines; a request longer than
/// `Limits.requestBytes` is answered 431. `render` runs on the server's thread, so it
/// must be thread-safe; scrapes are served one after the other.
public final class MetricsServer: Sendable {
    private let server: StreamServer

    /// Listens on `address`:`port` and serves `render`'s text from a thread named `threadName`.
    public init(address: IPAddress, port: UInt16, limits: StreamServer.Limits = StreamServer.Limits(), threadName: String,
                contentType: String, render: @escaping @Sendable () -> String) throws(SystemError) {
        server = try StreamServer(listener: StreamSocket.listen(on: address, port: port),
                                  service: MetricsService(contentType: contentType, render: render),
                                  limits: limits, name: threadName, connectionCounter: "metrics_connections",
                                  logPrefix: "\(threadName): metrics endpoint")
    }

    /// Stops serving and closes every connection.
    public func stop() { server.stop() }

    /// What the endpoint has seen, by event: `metrics_connections`, `metrics_requests`,
    /// `metrics_not_found`, `metrics_malformed`, `requests_too_long`, `clients_gone`,
    /// `clients_timed_out`, `accept_errors` (matd's control socket counts the last four too).
    public var counters: [String: UInt64] { server.counters }
}

/// HTTP/1 framing and the one resource, `/metrics`.
private struct MetricsService: StreamService {
    let contentType: String
    let render: @Sendable () -> String

    /// Up to the blank line after the headers: all of them read, so closing after the
    /// reply sends a FIN, not a reset.
    func requestLength(in input: [UInt8]) -> Int? {
        for index in input.indices {
            if input[index...].starts(with: [13, 10, 13, 10]) { return index + 4 }
            if input[index...].starts(with: [10, 10]) { return index + 2 }
        }
        return nil
    }

    func reply(to request: [UInt8], count: (String) -> Void) -> StreamReply {
        let end = request.firstIndex(of: UInt8(ascii: "\n")) ?? request.endIndex
        return .now(respond(to: request[..<end].filter { $0 != 13 }, count: count))
    }

    func tooLongReply(limit: Int) -> [UInt8] {
        Self.response(status: "431 Request Header Fields Too Large", body: "request too long\n")
    }

    /// The reply to one request line.
    private func respond(to requestLine: [UInt8], count: (String) -> Void) -> [UInt8] {
        let parts = String(decoding: requestLine, as: UTF8.self).split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            count("metrics_malformed")
            return Self.response(status: "400 Bad Request", body: "not an HTTP/1 request\n")
        }
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            return Self.response(status: "405 Method Not Allowed", body: "GET /metrics\n")
        }
        guard parts[1].split(separator: "?", maxSplits: 1).first == "/metrics" else {
            count("metrics_not_found")
            return Self.response(status: "404 Not Found", body: "GET /metrics\n")
        }
        count("metrics_requests")
        return Self.response(status: "200 OK", body: render(), contentType: contentType,
                             omitBody: parts[0] == "HEAD")
    }

    /// An HTTP/1.1 response that closes the connection.
    static func response(status: String, body: String, contentType: String = "text/plain; charset=utf-8",
                         omitBody: Bool = false) -> [UInt8] {
        let payload = Array(body.utf8)
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(payload.count)\r\n"
            + "Connection: close\r\n\r\n"
        return Array(head.utf8) + (omitBody ? [] : payload)
    }
}
