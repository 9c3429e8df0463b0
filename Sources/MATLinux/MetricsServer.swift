import Foundation
import MATLog
import MATPacket
import Synchronization

/// The `metrics-listen` endpoint of matd and mat-ims: plain HTTP/1.1 on one TCP address,
/// `GET /metrics` (or `HEAD`) answered with the exposition `render` returns (as
/// `contentType`), one request per connection, then the connection closes.
///
/// One thread polls the listener and every connection. A scraper that stalls, sends
/// garbage or a megabyte costs only its own connection: each has a deadline for its
/// request and one for its reply, a request longer than `Limits.requestBytes` is answered
/// 431, and no more than `Limits.connections` are open at once (the rest wait in the
/// listen queue). `render` runs on this thread, so it must be thread-safe; scrapes are
/// served one after the other.
public final class MetricsServer: Sendable {
    /// What one scraper may use.
    public struct Limits: Sendable {
        /// Connections served at once.
        public var connections = 64
        /// Longest request (request line and headers) accepted; real ones are a few hundred bytes.
        public var requestBytes = 4096
        /// Time a client has to send its request, milliseconds.
        public var requestMilliseconds: UInt64 = 2_000
        /// Time a client has to read the reply, milliseconds.
        public var replyMilliseconds: UInt64 = 10_000

        public init() {}
    }

    private let loop: MetricsLoop

    /// Listens on `address`:`port` and serves `render`'s text from a thread named `threadName`.
    public init(address: IPAddress, port: UInt16, limits: Limits = Limits(), threadName: String,
                contentType: String, render: @escaping @Sendable () -> String) throws(SystemError) {
        let listener = try StreamSocket.listen(on: address, port: port)
        listener.setNonBlocking()
        loop = try MetricsLoop(listener: listener, limits: limits, contentType: contentType, render: render,
                               name: threadName)
        let thread = Thread { [loop] in loop.run() }
        thread.name = threadName
        thread.start()
    }

    /// Stops serving and closes every connection.
    public func stop() { loop.stop() }

    /// What the endpoint has seen, by event: `metrics_connections`, `metrics_requests`,
    /// `metrics_not_found`, `metrics_malformed`, `requests_too_long`, `clients_gone`,
    /// `clients_timed_out`, `accept_errors` (matd's control socket counts the last four too).
    public var counters: [String: UInt64] { loop.counters.withLock { $0 } }
}

/// The serving thread's state. Touched only by that thread, except `stopped` and `counters`.
private final class MetricsLoop: @unchecked Sendable {
    private let listener: StreamSocket
    private let limits: MetricsServer.Limits
    private let render: @Sendable () -> String
    private let contentType: String
    private let name: String
    private let wakeup: Wakeup
    private let stopped = Mutex(false)
    private let done = DispatchSemaphore(value: 0)
    let counters = Mutex<[String: UInt64]>([:])
    private var connections: [UInt64: HTTPConnection] = [:]
    private var nextIdentifier: UInt64 = 0
    /// After a failed accept (out of descriptors), the listener rests until then.
    private var acceptPausedUntil: UInt64 = 0
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16_384, alignment: 8)

    init(listener: consuming StreamSocket, limits: MetricsServer.Limits, contentType: String,
         render: @escaping @Sendable () -> String, name: String) throws(SystemError) {
        self.listener = listener
        self.limits = limits
        self.contentType = contentType
        self.render = render
        self.name = name
        wakeup = try Wakeup()
    }

    deinit { buffer.deallocate() }

    func stop() {
        stopped.withLock { $0 = true }
        wakeup.signal()
        done.wait()
    }

    func run() {
        defer { done.signal() }
        var descriptors: [pollfd] = []
        var order: [UInt64] = []
        while !stopped.withLock({ $0 }) {
            descriptors.removeAll(keepingCapacity: true)
            order.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0))
            let now = MonotonicClock.milliseconds()
            let resting = now < acceptPausedUntil
            let accepting = connections.count < limits.connections && !resting
            descriptors.append(pollfd(fd: accepting ? listener.fileDescriptor : -1, events: Int16(POLLIN), revents: 0))
            for (identifier, connection) in connections {
                descriptors.append(pollfd(fd: connection.socket.fileDescriptor, events: connection.pollEvents, revents: 0))
                order.append(identifier)
            }
            let nextDeadline = (connections.values.map(\.deadline) + (resting ? [acceptPausedUntil] : [])).min()
            let timeout = nextDeadline.map { Int32(clamping: $0 > now ? $0 - now : 0) } ?? 1_000
            _ = poll(&descriptors, nfds_t(descriptors.count), timeout)

            if descriptors[0].revents != 0 { wakeup.drain() }
            if descriptors[1].revents != 0 { acceptClients() }
            for (index, identifier) in order.enumerated() where descriptors[index + 2].revents != 0 {
                guard let connection = connections[identifier] else { continue }
                serve(connection, identifier: identifier)
            }
            let later = MonotonicClock.milliseconds()
            for (identifier, connection) in connections where connection.deadline <= later {
                count("clients_timed_out")
                connections[identifier] = nil
            }
        }
        connections.removeAll()
    }

    private func acceptClients() {
        while connections.count < limits.connections {
            let client: StreamSocket?
            do {
                client = try listener.accept()
            } catch {
                // Out of descriptors: the client waits in the queue while the listener rests.
                count("accept_errors")
                Log.write(.error, "\(name): metrics endpoint: \(error); accepting again in 100 ms")
                acceptPausedUntil = MonotonicClock.milliseconds() + 100
                return
            }
            guard let client else { return }
            nextIdentifier += 1
            connections[nextIdentifier] = HTTPConnection(
                socket: client, deadline: MonotonicClock.milliseconds() + limits.requestMilliseconds)
            count("metrics_connections")
        }
    }

    private func serve(_ connection: HTTPConnection, identifier: UInt64) {
        do {
            if connection.replying {
                if try connection.writeReply() { connections[identifier] = nil }
                return
            }
            if let requestLine = try connection.readRequest(buffer: buffer, limit: limits.requestBytes) {
                connection.queue(respond(to: requestLine), deadline: MonotonicClock.milliseconds() + limits.replyMilliseconds)
                if try connection.writeReply() { connections[identifier] = nil }
                return
            }
        } catch HTTPConnection.Failure.tooLong {
            count("requests_too_long")
            connection.queue(Self.response(status: "431 Request Header Fields Too Large", body: "request too long\n"),
                             deadline: MonotonicClock.milliseconds() + limits.replyMilliseconds)
        } catch {
            // The client hung up or reset: only its connection ends.
            count("clients_gone")
            connections[identifier] = nil
        }
    }

    /// The reply to one request line.
    private func respond(to requestLine: [UInt8]) -> [UInt8] {
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

    private func count(_ event: String) { counters.withLock { $0[event, default: 0] += 1 } }

    /// An HTTP/1.1 response that closes the connection.
    static func response(status: String, body: String, contentType: String = "text/plain; charset=utf-8",
                         omitBody: Bool = false) -> [UInt8] {
        let payload = Array(body.utf8)
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(payload.count)\r\n"
            + "Connection: close\r\n\r\n"
        return Array(head.utf8) + (omitBody ? [] : payload)
    }
}

/// One scraper: its request, then the reply it reads.
private final class HTTPConnection {
    enum Failure: Error { case tooLong, closed }

    let socket: StreamSocket
    var deadline: UInt64
    private(set) var replying = false
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var written = 0

    init(socket: consuming StreamSocket, deadline: UInt64) {
        self.socket = socket
        self.deadline = deadline
    }

    var pollEvents: Int16 { replying ? Int16(POLLOUT) : Int16(POLLIN) }

    /// Reads what is waiting; returns the request line once the headers are complete (all
    /// of them read, so closing after the reply sends a FIN, not a reset), nil while more is
    /// to come. A client that closes its end after a partial request has sent it all.
    func readRequest(buffer: UnsafeMutableRawBufferPointer, limit: Int) throws -> [UInt8]? {
        while let count = try socket.receive(into: buffer) {
            if count == 0 {
                guard !input.isEmpty else { throw Failure.closed }
                return Self.firstLine(of: input)
            }
            guard input.count + count <= limit else { throw Failure.tooLong }
            input.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            if Self.endsHeaders(input) { return Self.firstLine(of: input) }
        }
        return nil
    }

    func queue(_ bytes: [UInt8], deadline: UInt64) {
        output = bytes
        written = 0
        input = []
        replying = true
        self.deadline = deadline
    }

    /// Writes what the socket takes; true once the whole reply is out.
    func writeReply() throws -> Bool {
        while written < output.count {
            let sent = try output.withUnsafeBytes { raw in
                try socket.send(UnsafeRawBufferPointer(rebasing: raw[written...]))
            }
            guard let sent, sent > 0 else { return false }
            written += sent
        }
        return true
    }

    private static func endsHeaders(_ input: [UInt8]) -> Bool {
        let crlf: [UInt8] = [13, 10, 13, 10], lf: [UInt8] = [10, 10]
        return input.indices.contains { index in
            input[index...].starts(with: crlf) || input[index...].starts(with: lf)
        }
    }

    private static func firstLine(of input: [UInt8]) -> [UInt8] {
        let end = input.firstIndex(of: UInt8(ascii: "\n")) ?? input.endIndex
        return Array(input[..<end].filter { $0 != 13 })
    }
}
