import Foundation
import MATLinux

/// Serves the control socket on a thread of its own: one request line in, one reply line
/// out, per connection. The handler runs on that thread and must be thread-safe.
public final class ControlServer: Sendable {
    /// Longest request accepted; real ones are a few dozen bytes.
    static let requestLimit = 4096

    private let listener: ListenerBox
    private let path: String

    /// Listens at `path` (mode 0600) and starts answering with `handler`.
    public init(path: String, handler: @escaping @Sendable (ControlRequest) -> ControlReply) throws(SystemError) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o755])
        }
        let listener = ListenerBox(try UnixSocket.listen(at: path))
        self.listener = listener
        self.path = path
        let thread = Thread {
            while let client = try? listener.socket.accept() {
                Self.serve(client, handler)
            }
        }
        thread.name = "matd-control"
        thread.start()
    }

    /// Stops answering and removes the socket file.
    public func stop() {
        listener.socket.shutdownListener()
        unlink(path)
    }

    private static func serve(_ client: borrowing UnixSocket, _ handler: (ControlRequest) -> ControlReply) {
        client.setTimeout(seconds: 2)
        let reply: ControlReply
        do {
            let line = try client.readLine(limit: requestLimit)
            let request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
            if request.version != ControlProtocol.version {
                reply = ControlReply(error: "protocol version \(request.version) not supported (matd speaks \(ControlProtocol.version))")
            } else {
                reply = handler(request)
            }
        } catch let error as DecodingError {
            reply = ControlReply(error: "malformed request: \(Self.describe(error))")
        } catch {
            reply = ControlReply(error: "\(error)")
        }
        guard var bytes = try? JSONEncoder.control.encode(reply) else { return }
        bytes.append(UInt8(ascii: "\n"))
        try? client.writeAll(Array(bytes))
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

/// Holds the listener so the accept thread and `stop()` can share it: `accept` and
/// `shutdown` on one descriptor from two threads is what the kernel supports.
private final class ListenerBox: @unchecked Sendable {
    let socket: UnixSocket
    init(_ socket: consuming UnixSocket) { self.socket = socket }
}

/// Sends one request to the daemon at `path` and returns its reply, waiting at most
/// `timeout` seconds for it.
public func sendControlRequest(_ request: ControlRequest, to path: String, timeout: Int = 5) throws -> ControlReply {
    let socket = try UnixSocket.connect(to: path)
    socket.setTimeout(seconds: timeout)
    var bytes = try JSONEncoder.control.encode(request)
    bytes.append(UInt8(ascii: "\n"))
    try socket.writeAll(Array(bytes))
    let line = try socket.readLine(limit: 16 << 20)
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
