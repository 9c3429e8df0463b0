import Foundation
import MATLog
import MATSystem
import Synchronization

/// What the clients of a ``StreamServer`` speak: where a request ends and what answers it.
/// The server does the I/O, the limits and the deadlines; a service only looks at bytes.
public protocol StreamService: Sendable {
    /// The length of the request at the start of `input` once all of it is there (the
    /// delimiter included), nil while more is to come.
    func requestLength(in input: [UInt8]) -> Int?
    /// The reply to `request`: the bytes `requestLength` delimited, or all that came
    /// before the client closed its end. `count` adds one to a counter of the server's.
    func reply(to request: [UInt8], count: (String) -> Void) -> StreamReply
    /// The reply to a request longer than `limit` bytes (the connection then closes).
    func tooLongReply(limit: Int) -> [UInt8]
}

/// How a ``StreamService`` answers one request.
public enum StreamReply: Sendable {
    /// These bytes, sent at once.
    case now([UInt8])
    /// Bytes that take waiting on other threads: `work` runs on a worker thread of its own
    /// while the server answers everyone else; `busy` is sent instead when
    /// ``StreamServer/Limits/workers`` of them are already running.
    case onWorker(busy: [UInt8], work: @Sendable () -> [UInt8])
}

/// A stream listener (TCP or Unix socket) that reads one request per connection, sends
/// one reply and closes: matd's control socket and the metrics endpoint of matd and
/// mat-ims.
///
/// One thread polls the listener and every connection, so a client that stalls, hangs
/// up, sends garbage or a megabyte costs only its own connection: each has a deadline for
/// its request and one for its reply, a request longer than `Limits.requestBytes` gets
/// the service's refusal, and at most `Limits.connections` are open at once (the rest
/// wait in the listen queue). A client that hung up is an error on its own connection,
/// never a SIGPIPE.
public final class StreamServer: Sendable {
    /// What one client may use.
    public struct Limits: Sendable {
        /// Connections served at once; more wait in the listen queue.
        public var connections = 64
        /// Longest request accepted.
        public var requestBytes = 4096
        /// Time a client has to send its request, milliseconds.
        public var requestMilliseconds: UInt64 = 2_000
        /// Time a client has to read its reply, milliseconds.
        public var replyMilliseconds: UInt64 = 10_000
        /// Replies made on worker threads at once.
        public var workers = 8

        public init() {}
    }

    private let loop: StreamLoop
    private let thread: SystemThread
    private let stopped = Atomic<Bool>(false)

    /// Serves `service` on `listener` from a thread named `name`. `connectionCounter` names
    /// the counter of accepted connections; `logPrefix` starts the server's log lines.
    public init(listener: consuming StreamSocket, service: some StreamService, limits: Limits,
                name: String, connectionCounter: String, logPrefix: String) throws(SystemError) {
        listener.setNonBlocking()
        let loop = try StreamLoop(listener: listener, service: service, limits: limits, name: name,
                                  connectionCounter: connectionCounter, logPrefix: logPrefix)
        guard let thread = SystemThread.start(name: name, { loop.run() }) else {
            throw SystemError("start the \(name) thread", errno: EAGAIN)
        }
        self.loop = loop
        self.thread = thread
    }

    /// Stops serving and closes every connection; replies still being made are dropped.
    /// Idempotent.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        loop.stop()
        thread.join()
    }

    /// What the server has seen, by event: the connection counter, `requests_too_long`,
    /// `clients_gone`, `clients_timed_out`, `accept_errors`, `requests_busy`, and what
    /// the service counted.
    public var counters: [String: UInt64] { loop.counters.withLock { $0 } }
}

/// The serving thread's state. Touched only by that thread, except `stopped`, `finished`
/// and `counters`.
private final class StreamLoop: @unchecked Sendable {
    private let listener: StreamSocket
    private let service: any StreamService
    private let limits: StreamServer.Limits
    private let connectionCounter: String
    private let logPrefix: String
    private let wakeup: Wakeup
    private let stopped = Mutex(false)
    /// The serving thread's name; its workers are named after it.
    private let name: String
    /// Replies of worker threads, by connection, ready to send.
    private let finished = Mutex<[(UInt64, [UInt8])]>([])
    let counters = Mutex<[String: UInt64]>([:])
    private var connections: [UInt64: StreamConnection] = [:]
    private var nextIdentifier: UInt64 = 0
    private var busyWorkers = 0
    /// After a failed accept (out of descriptors), the listener rests until then rather
    /// than waking the loop again at once.
    private var acceptPausedUntil: UInt64 = 0
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16_384, alignment: 8)

    init(listener: consuming StreamSocket, service: any StreamService, limits: StreamServer.Limits, name: String,
         connectionCounter: String, logPrefix: String) throws(SystemError) {
        self.name = name
        self.listener = listener
        self.service = service
        self.limits = limits
        self.connectionCounter = connectionCounter
        self.logPrefix = logPrefix
        wakeup = try Wakeup()
    }

    deinit { buffer.deallocate() }

    /// Tells the serving thread to end; the server joins it.
    func stop() {
        stopped.withLock { $0 = true }
        wakeup.signal()
    }

    func run() {
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
            let nextDeadline = (connections.values.compactMap(\.deadline) + (resting ? [acceptPausedUntil] : [])).min()
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
                Log.write(.error, "\(logPrefix): \(error); accepting again in 100 ms")
                acceptPausedUntil = MonotonicClock.milliseconds() + 100
                return
            }
            guard let client else { return }
            nextIdentifier += 1
            connections[nextIdentifier] = StreamConnection(
                socket: client, deadline: MonotonicClock.milliseconds() + limits.requestMilliseconds)
            count(connectionCounter)
        }
    }

    private func serve(_ connection: StreamConnection, identifier: UInt64) {
        do {
            switch connection.state {
            case .readingRequest:
                guard let request = try connection.readRequest(buffer: buffer, limit: limits.requestBytes,
                                                               length: service.requestLength) else { return }
                answer(request, on: connection, identifier: identifier)
                if connection.state == .writingReply, try connection.writeReply() { connections[identifier] = nil }
            case .writingReply:
                if try connection.writeReply() { connections[identifier] = nil }
            case .waitingForWorker:
                return
            }
        } catch StreamConnection.Failure.tooLong {
            count("requests_too_long")
            connection.queue(service.tooLongReply(limit: limits.requestBytes), deadline: replyDeadline())
        } catch {
            // The client hung up or reset: only its connection ends.
            count("clients_gone")
            connections[identifier] = nil
        }
    }

    private func answer(_ request: [UInt8], on connection: StreamConnection, identifier: UInt64) {
        switch service.reply(to: request, count: count) {
        case .now(let bytes):
            connection.queue(bytes, deadline: replyDeadline())
        case .onWorker(let busy, let work):
            guard busyWorkers < limits.workers else {
                count("requests_busy")
                return connection.queue(busy, deadline: replyDeadline())
            }
            let worker = SystemThread.start(name: "\(name)-worker") { [self] in
                let reply = work()
                finished.withLock { $0.append((identifier, reply)) }
                wakeup.signal()
            }
            guard let worker else {
                // No thread to be had: the client hears that the server is busy.
                count("requests_busy")
                return connection.queue(busy, deadline: replyDeadline())
            }
            worker.detach()
            busyWorkers += 1
            connection.state = .waitingForWorker
        }
    }

    private func takeWorkerReplies() {
        let replies = finished.withLock { list -> [(UInt64, [UInt8])] in
            defer { list.removeAll() }
            return list
        }
        for (identifier, reply) in replies {
            busyWorkers -= 1
            // The client may have given up meanwhile; its reply then has nowhere to go.
            connections[identifier]?.queue(reply, deadline: replyDeadline())
        }
    }

    private func expireDeadlines(now: UInt64) {
        // A worker's request has no deadline of its own: the work bounds it.
        for (identifier, connection) in connections {
            guard let deadline = connection.deadline, deadline <= now else { continue }
            count("clients_timed_out")
            connections[identifier] = nil
        }
    }

    private func replyDeadline() -> UInt64 { MonotonicClock.milliseconds() + limits.replyMilliseconds }

    private func count(_ event: String) { counters.withLock { $0[event, default: 0] += 1 } }
}

/// One client: the request it is sending, then the reply it reads.
private final class StreamConnection {
    enum State { case readingRequest, waitingForWorker, writingReply }
    enum Failure: Error { case tooLong, closed }

    let socket: StreamSocket
    var state = State.readingRequest
    private var due: UInt64
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var written = 0

    init(socket: consuming StreamSocket, deadline: UInt64) {
        self.socket = socket
        self.due = deadline
    }

    /// When the client's time runs out; nil while a worker makes its reply.
    var deadline: UInt64? { state == .waitingForWorker ? nil : due }

    /// What to poll for; nil while a worker makes the reply.
    var pollEvents: Int16? {
        switch state {
        case .readingRequest: Int16(POLLIN)
        case .writingReply: Int16(POLLOUT)
        case .waitingForWorker: nil
        }
    }

    /// Reads what is waiting; returns the request once `length` finds all of it, nil while
    /// more is to come. A client that closes its end after a partial request has sent it all.
    func readRequest(buffer: UnsafeMutableRawBufferPointer, limit: Int,
                     length: ([UInt8]) -> Int?) throws -> [UInt8]? {
        while let count = try socket.receive(into: buffer) {
            if count == 0 {
                guard !input.isEmpty else { throw Failure.closed }
                return input
            }
            input.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            if let end = length(input) {
                guard end <= limit else { throw Failure.tooLong }
                return Array(input[..<end])
            }
            guard input.count <= limit else { throw Failure.tooLong }
        }
        return nil
    }

    /// Queues bytes ready to send and switches to writing them.
    func queue(_ bytes: [UInt8], deadline: UInt64) {
        output = bytes
        written = 0
        input = []
        state = .writingReply
        due = deadline
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
}
