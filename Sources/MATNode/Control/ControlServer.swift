import Foundation
import MATLinux
import MATLog
import MATMetrics
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
/// The optional metrics endpoint (`metrics-listen`) is MATLinux's `MetricsServer`, the one
/// mat-ims serves too, on a thread of its own under the same limits and deadlines.
public final class ControlServer: Sendable {
    /// Where the metrics endpoint listens, and what it answers.
    public struct MetricsEndpoint: Sendable {
        public var address: IPAddress
        public var port: UInt16
        /// The exposition; runs on the metrics thread.
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
    private let metricsServer: MetricsServer?
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
        if let metrics {
            var metricsLimits = MetricsServer.Limits()
            metricsLimits.requestBytes = limits.requestBytes
            metricsLimits.requestMilliseconds = limits.requestMilliseconds
            metricsLimits.replyMilliseconds = limits.replyMilliseconds
            metricsServer = try MetricsServer(address: metrics.address, port: metrics.port, limits: metricsLimits,
                                              threadName: "matd-metrics", contentType: PrometheusWriter.contentType,
                                              render: metrics.render)
        } else {
            metricsServer = nil
        }
        let listener = try StreamSocket.listen(at: path)
        listener.setNonBlocking()
        loop = try ControlLoop(listener: listener, limits: limits, handler: handler)
        self.path = path
        let thread = Thread { [loop] in loop.run() }
        thread.name = "matd-control"
        thread.start()
    }

    /// Stops answering, closes every connection and removes the socket file.
    public func stop() {
        metricsServer?.stop()
        loop.stop()
        unlink(path)
    }

    /// What the control socket and the metrics endpoint have seen, by metric name (events
    /// both count, such as `clients_timed_out`, added up).
    public var counters: [String: UInt64] {
        loop.counters.withLock { $0 }.merging(metricsServer?.counters ?? [:], uniquingKeysWith: +)
    }
}

/// The control thread's state: the listener and the open connections. Touched only by
/// that thread, except `finished`, `stopped` and `counters`.
private final class ControlLoop: @unchecked Sendable {
    private let listener: StreamSocket
    private let limits: ControlServer.Limits
    private let handler: @Sendable (ControlRequest) -> ControlReply
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

    init(listener: consuming StreamSocket, limits: ControlServer.Limits,
         handler: @escaping @Sendable (ControlRequest) -> ControlReply) throws(SystemError) {
        self.listener = listener
        self.limits = limits
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
            if descriptors[1].revents != 0 { acceptClients() }
            for (index, identifier) in order.enumerated() where descriptors[index + 2].revents != 0 {
                guard let connection = connections[identifier] else { continue }
                serve(connection, identifier: identifier)
            }
            expireDeadlines(now: MonotonicClock.milliseconds())
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
                log(.error, "matd: control socket: \(error); accepting again in 100 ms")
                acceptPausedUntil = MonotonicClock.milliseconds() + 100
                return
            }
            guard let client else { return }
            nextIdentifier += 1
            connections[nextIdentifier] = ControlConnection(
                socket: client, deadline: MonotonicClock.milliseconds() + limits.requestMilliseconds)
            count("connections")
        }
    }

    private func serve(_ connection: ControlConnection, identifier: UInt64) {
        do {
            switch connection.state {
            case .readingRequest:
                while let line = try connection.readRequest(buffer: buffer, limit: limits.requestBytes) {
                    guard case .complete(let bytes) = line else { continue }
                    return answer(bytes, on: connection, identifier: identifier)
                }
            case .writingReply:
                if try connection.writeReply() { connections[identifier] = nil }
            case .waitingForWorker:
                return
            }
        } catch ControlConnection.Failure.tooLong {
            count("requests_too_long")
            let deadline = MonotonicClock.milliseconds() + limits.replyMilliseconds
            connection.queue(ControlReply(error: "request longer than \(limits.requestBytes) bytes"), deadline: deadline)
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

/// One client of the control socket: the request line it is sending, then the reply it reads.
private final class ControlConnection {
    enum State { case readingRequest, waitingForWorker, writingReply }
    enum Line { case complete([UInt8]), partial }
    enum Failure: Error { case tooLong, closed }

    let socket: StreamSocket
    var state = State.readingRequest
    var deadline: UInt64
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var written = 0

    init(socket: consuming StreamSocket, deadline: UInt64) {
        self.socket = socket
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
    /// its end after the request without a newline has sent its line all the same.
    func readRequest(buffer: UnsafeMutableRawBufferPointer, limit: Int) throws -> Line? {
        guard let count = try socket.receive(into: buffer) else { return nil }
        if count == 0 {
            guard !input.isEmpty else { throw Failure.closed }
            return .complete(input)
        }
        let received = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
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
        case .rebind, .peers, .rotateKey, .deregister: true
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
