import Foundation
import MATLinux
import MATLog
import MATPacket
import Synchronization

/// Serves the control socket: one request line in, one reply line out, per connection.
///
/// One thread polls every connection, so a client that stalls, hangs up, sends garbage or
/// a megabyte costs only its own connection: each has a deadline for its request and one
/// for its reply, and a request line longer than `Limits.requestBytes` is answered with an
/// error. Requests that wait on other threads (`rebind` waits for peers' acks, `peers`
/// for the engine's table) run on a worker thread each, so `status` is answered at once
/// while they run. A hung-up client is an error on its own connection, never a SIGPIPE.
///
/// The same thread serves the optional metrics endpoint (`metrics-listen`): plain HTTP,
/// `GET /metrics` answered with the Prometheus exposition, one request per connection,
/// under the same limits and deadlines.
public final class ControlServer: Sendable {
    /// Where the metrics endpoint listens, and what it answers.
    public struct MetricsEndpoint: Sendable {
        public var address: IPAddress
        public var port: UInt16
        /// The exposition; runs on a worker thread.
        public var render: @Sendable () -> String

        public init(address: IPAddress, port: UInt16, render: @escaping @Sendable () -> String) {
            self.address = address
            self.port = port
            self.render = render
        }
    }

    /// What one client may use of the daemon.
    public struct Limits: Sendable {
        /// Connections served at once; more wait in the listen queue.
        public var connections = 256
        /// Longest request line accepted; real ones are a few dozen bytes.
        public var requestBytes = 4096
        /// Time a client has to send its request line, milliseconds.
        public var requestMilliseconds: UInt64 = 2_000
        /// Time a client has to read its reply, milliseconds.
        public var replyMilliseconds: UInt64 = 10_000
        /// Slow requests (rebind, peers) running at once; more are answered "busy".
        public var workers = 8

        public init() {}
    }

    private let loop: ControlLoop
    private let path: String

    /// Listens at `path` (mode 0600), and for `metrics` on its TCP address, and starts
    /// answering with `handler`, which runs on the control thread or a worker thread and
    /// must be thread-safe.
    public init(path: String, limits: Limits = Limits(), metrics: MetricsEndpoint? = nil,
                handler: @escaping @Sendable (ControlRequest) -> ControlReply) throws(SystemError) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty && !FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
            } catch {
                throw SystemError("create directory \(directory) for the control socket", detail: "\(error)")
            }
        }
        var metricsListener: MetricsListener?
        if let metrics {
            let socket = try StreamSocket.listen(on: metrics.address, port: metrics.port)
            socket.setNonBlocking()
            metricsListener = MetricsListener(socket: socket)
        }
        let listener = try StreamSocket.listen(at: path)
        listener.setNonBlocking()
        loop = try ControlLoop(listener: listener, metricsListener: metricsListener, limits: limits,
                               render: metrics?.render, handler: handler)
        self.path = path
        let thread = Thread { [loop] in loop.run() }
        thread.name = "matd-control"
        thread.start()
    }

    /// Stops answering, closes every connection and removes the socket file.
    public func stop() {
        loop.stop()
        unlink(path)
    }

    /// What the control socket has seen, by metric name.
    public var counters: [String: UInt64] { loop.counters.withLock { $0 } }
}

/// The metrics endpoint's listener (a class, so the optional can be borrowed).
private final class MetricsListener {
    let socket: StreamSocket
    init(socket: consuming StreamSocket) { self.socket = socket }
}

/// The control thread's state: the listener and the open connections. Touched only by
/// that thread, except `finished`, `stopped` and `counters`.
private final class ControlLoop: @unchecked Sendable {
    private let listener: StreamSocket
    private let metricsListener: MetricsListener?
    private let limits: ControlServer.Limits
    private let handler: @Sendable (ControlRequest) -> ControlReply
    private let render: (@Sendable () -> String)?
    private let wakeup: Wakeup
    private let stopped = Mutex(false)
    private let done = DispatchSemaphore(value: 0)
    /// Replies of worker threads, by connection, ready to send.
    private let finished = Mutex<[(UInt64, [UInt8])]>([])
    let counters = Mutex<[String: UInt64]>([:])
    private var connections: [UInt64: ControlConnection] = [:]
    private var nextIdentifier: UInt64 = 0
    private var busyWorkers = 0
    /// After a failed accept (out of descriptors), the listener rests until then rather
    /// than waking the loop again at once.
    private var acceptPausedUntil: UInt64 = 0
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16_384, alignment: 8)

    init(listener: consuming StreamSocket, metricsListener: MetricsListener?, limits: ControlServer.Limits,
         render: (@Sendable () -> String)?, handler: @escaping @Sendable (ControlRequest) -> ControlReply) throws(SystemError) {
        self.listener = listener
        self.metricsListener = metricsListener
        self.limits = limits
        self.render = render
        self.handler = handler
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
            let metricsDescriptor = metricsListener?.socket.fileDescriptor ?? -1
            descriptors.append(pollfd(fd: accepting ? metricsDescriptor : -1, events: Int16(POLLIN), revents: 0))
            for (identifier, connection) in connections {
                guard let events = connection.pollEvents else { continue }
                descriptors.append(pollfd(fd: connection.socket.fileDescriptor, events: events, revents: 0))
                order.append(identifier)
            }
            let nextDeadline = (connections.values.map(\.deadline) + (resting ? [acceptPausedUntil] : [])).min()
            let timeout = nextDeadline.map { Int32(clamping: $0 > now ? $0 - now : 0) } ?? 1_000
            _ = poll(&descriptors, nfds_t(descriptors.count), timeout)

            if descriptors[0].revents != 0 {
                wakeup.drain()
                takeWorkerReplies()
            }
            if descriptors[1].revents != 0 { acceptClients(listener, kind: .control) }
            if descriptors[2].revents != 0, let metricsListener { acceptClients(metricsListener.socket, kind: .metrics) }
            for (index, identifier) in order.enumerated() where descriptors[index + 3].revents != 0 {
                guard let connection = connections[identifier] else { continue }
                serve(connection, identifier: identifier)
            }
            expireDeadlines(now: MonotonicClock.milliseconds())
        }
        connections.removeAll()
    }

    private func acceptClients(_ listener: borrowing StreamSocket, kind: ControlConnection.Kind) {
        while connections.count < limits.connections {
            let client: StreamSocket?
            do {
                client = try listener.accept()
            } catch {
                // Out of descriptors: the client waits in the queue while the listener rests.
                count("accept_errors")
                log(.error, "matd: control socket: \(error); accepting again in 100 ms")
                acceptPausedUntil = MonotonicClock.milliseconds() + 100
                return
            }
            guard let client else { return }
            nextIdentifier += 1
            connections[nextIdentifier] = ControlConnection(
                socket: client, kind: kind, deadline: MonotonicClock.milliseconds() + limits.requestMilliseconds)
            count(kind == .control ? "connections" : "metrics_connections")
        }
    }

    private func serve(_ connection: ControlConnection, identifier: UInt64) {
        do {
            switch connection.state {
            case .readingRequest:
                while let line = try connection.readRequest(buffer: buffer, limit: limits.requestBytes) {
                    guard case .complete(let bytes) = line else { continue }
                    switch connection.kind {
                    case .control: return answer(bytes, on: connection, identifier: identifier)
                    case .metrics: return answerHTTP(bytes, on: connection, identifier: identifier)
                    }
                }
            case .writingReply:
                if try connection.writeReply() { connections[identifier] = nil }
            case .waitingForWorker:
                return
            }
        } catch ControlConnection.Failure.tooLong {
            count("requests_too_long")
            let deadline = MonotonicClock.milliseconds() + limits.replyMilliseconds
            switch connection.kind {
            case .control:
                connection.queue(ControlReply(error: "request longer than \(limits.requestBytes) bytes"), deadline: deadline)
            case .metrics:
                connection.queue(HTTPResponse.bytes(status: "431 Request Header Fields Too Large", body: "request too long\n"),
                                 deadline: deadline)
            }
        } catch {
            // The client hung up or reset: only its connection ends.
            count("clients_gone")
            connections[identifier] = nil
        }
    }

    private func answer(_ line: [UInt8], on connection: ControlConnection, identifier: UInt64) {
        let replyDeadline = MonotonicClock.milliseconds() + limits.replyMilliseconds
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
        } catch let error as DecodingError {
            count("requests_malformed")
            return connection.queue(ControlReply(error: "malformed request: \(Self.describe(error))"), deadline: replyDeadline)
        } catch {
            count("requests_malformed")
            return connection.queue(ControlReply(error: "malformed request: \(error)"), deadline: replyDeadline)
        }
        guard request.version == ControlProtocol.version else {
            return connection.queue(ControlReply(
                error: "protocol version \(request.version) not supported (matd speaks \(ControlProtocol.version))"),
                deadline: replyDeadline)
        }
        count("requests")
        guard request.command.waitsOnOtherThreads else {
            return connection.queue(handler(request), deadline: replyDeadline)
        }
        guard busyWorkers < limits.workers else {
            count("requests_busy")
            return connection.queue(ControlReply(error: "busy: \(busyWorkers) slow requests running; try again"),
                                    deadline: replyDeadline)
        }
        runOnWorker(connection, identifier: identifier) { [handler] in ControlConnection.encode(handler(request)) }
    }

    /// One HTTP request to the metrics endpoint: `GET /metrics` (or `HEAD`) is rendered on a
    /// worker thread (it asks the engine for its table); anything else is answered at once.
    private func answerHTTP(_ requestLine: [UInt8], on connection: ControlConnection, identifier: UInt64) {
        let replyDeadline = MonotonicClock.milliseconds() + limits.replyMilliseconds
        let parts = String(decoding: requestLine, as: UTF8.self).split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), let render else {
            count("metrics_malformed")
            return connection.queue(HTTPResponse.bytes(status: "400 Bad Request", body: "not an HTTP/1 request\n"),
                                    deadline: replyDeadline)
        }
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            return connection.queue(HTTPResponse.bytes(status: "405 Method Not Allowed", body: "GET /metrics\n"),
                                    deadline: replyDeadline)
        }
        guard parts[1].split(separator: "?", maxSplits: 1).first == "/metrics" else {
            count("metrics_not_found")
            return connection.queue(HTTPResponse.bytes(status: "404 Not Found", body: "GET /metrics\n"),
                                    deadline: replyDeadline)
        }
        guard busyWorkers < limits.workers else {
            count("requests_busy")
            return connection.queue(HTTPResponse.bytes(status: "503 Service Unavailable", body: "busy\n"),
                                    deadline: replyDeadline)
        }
        count("metrics_requests")
        let head = parts[0] == "HEAD"
        runOnWorker(connection, identifier: identifier) {
            HTTPResponse.bytes(status: "200 OK", body: render(), contentType: PrometheusExposition.contentType,
                               omitBody: head)
        }
    }

    private func runOnWorker(_ connection: ControlConnection, identifier: UInt64,
                             _ work: @escaping @Sendable () -> [UInt8]) {
        busyWorkers += 1
        connection.state = .waitingForWorker
        let thread = Thread { [self] in
            let reply = work()
            finished.withLock { $0.append((identifier, reply)) }
            wakeup.signal()
        }
        thread.name = "matd-control-worker"
        thread.start()
    }

    private func takeWorkerReplies() {
        let replies = finished.withLock { list -> [(UInt64, [UInt8])] in
            defer { list.removeAll() }
            return list
        }
        for (identifier, reply) in replies {
            busyWorkers -= 1
            // The client may have given up meanwhile; its reply then has nowhere to go.
            connections[identifier]?.queue(reply, deadline: MonotonicClock.milliseconds() + limits.replyMilliseconds)
        }
    }

    private func expireDeadlines(now: UInt64) {
        for (identifier, connection) in connections where connection.deadline <= now {
            // A worker's request has no deadline of its own: the handler bounds it.
            guard connection.state != .waitingForWorker else { continue }
            count("clients_timed_out")
            connections[identifier] = nil
        }
    }

    private func count(_ name: String) { counters.withLock { $0[name, default: 0] += 1 } }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context), .keyNotFound(_, let context),
             .typeMismatch(_, let context), .valueNotFound(_, let context):
            return context.debugDescription
        @unknown default:
            return "\(error)"
        }
    }
}

/// One client of the control socket or the metrics endpoint: the request it is sending,
/// then the reply it reads.
private final class ControlConnection {
    enum Kind { case control, metrics }
    enum State { case readingRequest, waitingForWorker, writingReply }
    enum Line { case complete([UInt8]), partial }
    enum Failure: Error { case tooLong, closed }

    let socket: StreamSocket
    let kind: Kind
    var state = State.readingRequest
    var deadline: UInt64
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var written = 0

    init(socket: consuming StreamSocket, kind: Kind, deadline: UInt64) {
        self.socket = socket
        self.kind = kind
        self.deadline = deadline
    }

    /// What to poll for; nil while a worker prepares the reply.
    var pollEvents: Int16? {
        switch state {
        case .readingRequest: Int16(POLLIN)
        case .writingReply: Int16(POLLOUT)
        case .waitingForWorker: nil
        }
    }

    /// Reads what is waiting; returns the request line once it is complete, `.partial`
    /// when more is to come, nil when nothing more is waiting now. A client that closes
    /// its end after the request without a newline has sent its line all the same. An
    /// HTTP request is complete at the blank line after its headers (all read, so closing
    /// after the reply sends a FIN, not a reset); its request line is returned.
    func readRequest(buffer: UnsafeMutableRawBufferPointer, limit: Int) throws -> Line? {
        guard let count = try socket.receive(into: buffer) else { return nil }
        if count == 0 {
            guard !input.isEmpty else { throw Failure.closed }
            return .complete(kind == .metrics ? Self.firstLine(of: input) : input)
        }
        let received = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
        if kind == .metrics {
            guard input.count + count <= limit else { throw Failure.tooLong }
            input.append(contentsOf: received)
            return Self.endsHeaders(input) ? .complete(Self.firstLine(of: input)) : .partial
        }
        if let newline = received.firstIndex(of: UInt8(ascii: "\n")) {
            guard input.count + newline <= limit else { throw Failure.tooLong }
            input.append(contentsOf: received[0..<newline])
            return .complete(input)
        }
        guard input.count + count <= limit else { throw Failure.tooLong }
        input.append(contentsOf: received)
        return .partial
    }

    /// Queues `reply` as one JSON line and switches to writing it.
    func queue(_ reply: ControlReply, deadline: UInt64) {
        queue(Self.encode(reply), deadline: deadline)
    }

    /// `reply` as one JSON line.
    static func encode(_ reply: ControlReply) -> [UInt8] {
        var bytes: [UInt8]
        do {
            bytes = Array(try JSONEncoder.control.encode(reply))
        } catch {
            bytes = Array(#"{"error":"reply could not be encoded","version":1}"#.utf8)
        }
        bytes.append(UInt8(ascii: "\n"))
        return bytes
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

    /// Queues bytes ready to send and switches to writing them.
    func queue(_ bytes: [UInt8], deadline: UInt64) {
        output = bytes
        written = 0
        input = []
        state = .writingReply
        self.deadline = deadline
    }

    /// Writes what the socket takes; returns true once the whole reply is out.
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
}

extension ControlRequest.Command {
    /// Requests answered by waiting on another thread run on a worker of their own.
    var waitsOnOtherThreads: Bool {
        switch self {
        case .rebind, .peers: true
        case .status, .stats, .events: false
        }
    }
}

/// Sends one request to the daemon at `path` and returns its reply, waiting at most
/// `timeout` seconds for it.
public func sendControlRequest(_ request: ControlRequest, to path: String, timeout: Int = 5) throws -> ControlReply {
    let socket = try StreamSocket.connect(to: path)
    socket.setTimeout(seconds: timeout)
    var bytes = try JSONEncoder.control.encode(request)
    bytes.append(UInt8(ascii: "\n"))
    try socket.writeAll(Array(bytes))
    let line = try socket.readLine(limit: 256 << 20)
    return try JSONDecoder().decode(ControlReply.self, from: Data(line))
}

extension JSONEncoder {
    /// Sorted keys, so replies are stable for scripts and tests.
    static var control: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}

/// The few HTTP/1.1 responses the metrics endpoint sends; each closes the connection.
enum HTTPResponse {
    static func bytes(status: String, body: String, contentType: String = "text/plain; charset=utf-8",
                      omitBody: Bool = false) -> [UInt8] {
        let payload = Array(body.utf8)
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(payload.count)\r\n"
            + "Connection: close\r\n\r\n"
        return Array(head.utf8) + (omitBody ? [] : payload)
    }
}
