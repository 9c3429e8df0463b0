import Foundation
import MATLinux
import MATLog
import MATMetrics
import MATPacket
import Synchronization

/// Serves the control socket: one request line in, one reply line out, per connection.
///
/// MATLinux's ``StreamServer`` runs it, so a client that stalls, hangs up, sends garbage
/// or a megabyte costs only its own connection (deadlines, limits, no SIGPIPE). Requests
/// that wait on other threads (`rebind` waits for peers' acks, `peers` for the engine's
/// table) run on a worker thread each, so `status` is answered at once while they run.
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

    /// What one client may use of the daemon: 256 connections at once, a request line of
    /// at most 4096 bytes (its newline included), 2 s to send it and 10 s to read the reply,
    /// 8 slow requests (rebind, peers) at once; more are answered "busy".
    public typealias Limits = StreamServer.Limits

    private let server: StreamServer
    private let metricsServer: MetricsServer?
    private let path: String

    /// Listens at `path` (mode 0600), and for `metrics` on its TCP address, and starts
    /// answering with `handler`, which runs on the control thread or a worker thread and
    /// must be thread-safe.
    public init(path: String, limits: Limits = ControlServer.defaultLimits, metrics: MetricsEndpoint? = nil,
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
            var metricsLimits = StreamServer.Limits()
            metricsLimits.requestBytes = limits.requestBytes
            metricsLimits.requestMilliseconds = limits.requestMilliseconds
            metricsLimits.replyMilliseconds = limits.replyMilliseconds
            metricsServer = try MetricsServer(address: metrics.address, port: metrics.port, limits: metricsLimits,
                                              threadName: "matd-metrics", contentType: PrometheusWriter.contentType,
                                              render: metrics.render)
        } else {
            metricsServer = nil
        }
        server = try StreamServer(listener: StreamSocket.listen(at: path), service: ControlService(handler: handler),
                                  limits: limits, name: "matd-control", connectionCounter: "connections",
                                  logPrefix: "matd: control socket")
        self.path = path
    }

    /// The limits a daemon runs with.
    public static var defaultLimits: Limits {
        var limits = Limits()
        limits.connections = 256
        return limits
    }

    /// Stops answering, closes every connection and removes the socket file.
    public func stop() {
        metricsServer?.stop()
        server.stop()
        unlink(path)
    }

    /// What the control socket and the metrics endpoint have seen, by metric name (events
    /// both count, such as `clients_timed_out`, added up).
    public var counters: [String: UInt64] {
        server.counters.merging(metricsServer?.counters ?? [:], uniquingKeysWith: +)
    }
}

/// The control protocol: one JSON request line, one JSON reply line.
private struct ControlService: StreamService {
    let handler: @Sendable (ControlRequest) -> ControlReply

    func requestLength(in input: [UInt8]) -> Int? {
        input.firstIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }
    }

    func tooLongReply(limit: Int) -> [UInt8] {
        Self.encode(ControlReply(error: "request longer than \(limit) bytes"))
    }

    func reply(to request: [UInt8], count: (String) -> Void) -> StreamReply {
        let line = request.last == UInt8(ascii: "\n") ? Array(request.dropLast()) : request
        let decoded: ControlRequest
        do {
            decoded = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
        } catch let error as DecodingError {
            count("requests_malformed")
            return .now(Self.encode(ControlReply(error: "malformed request: \(Self.describe(error))")))
        } catch {
            count("requests_malformed")
            return .now(Self.encode(ControlReply(error: "malformed request: \(error)")))
        }
        guard decoded.version == ControlProtocol.version else {
            return .now(Self.encode(ControlReply(
                error: "protocol version \(decoded.version) not supported (matd speaks \(ControlProtocol.version))")))
        }
        count("requests")
        guard decoded.command.waitsOnOtherThreads else { return .now(Self.encode(handler(decoded))) }
        return .onWorker(busy: Self.encode(ControlReply(error: "busy: too many slow requests running; try again")),
                         work: { [handler] in Self.encode(handler(decoded)) })
    }

    /// `reply` as one JSON line. A list of peers, as large as the table, is written by
    /// ``PeerListJSON`` (the same JSON, several times faster) when the reply holds nothing
    /// else: compared with a reply of just those peers (the same array, which `==` tells by
    /// its storage), so a field added to ControlReply later is never left out.
    static func encode(_ reply: ControlReply) -> [UInt8] {
        if let peers = reply.peers, reply == ControlReply(peers: peers) {
            return PeerListJSON.line(peers, version: reply.version)
        }
        var bytes: [UInt8]
        do {
            bytes = Array(try JSONEncoder.control.encode(reply))
        } catch {
            bytes = Array(#"{"error":"reply could not be encoded","version":1}"#.utf8)
        }
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

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
    if request.command == .peers, let (peers, version) = PeerListReader.read(line) {
        var reply = ControlReply(peers: peers)
        reply.version = version
        return reply
    }
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
