import Glibc
import MATDNS
import MATWire
import Synchronization

/// Timeouts and retry budget of a transport.
public struct DNSTransportOptions: Hashable, Sendable {
    /// How long one UDP try waits for an acceptable answer.
    public var udpTimeoutMilliseconds: Int
    /// How long one TCP try may take, connect to last octet.
    public var tcpTimeoutMilliseconds: Int
    /// Passes over the server list; every try after the first counts as a retry.
    public var rounds: Int
    /// Requests longer than this go straight over TCP (RFC 1035's 512 by default).
    public var maxUDPRequestSize: Int

    /// Creates options; the defaults give one server 2 tries of 1 s each.
    public init(udpTimeoutMilliseconds: Int = 1000, tcpTimeoutMilliseconds: Int = 2000, rounds: Int = 2,
                maxUDPRequestSize: Int = 512) {
        self.udpTimeoutMilliseconds = udpTimeoutMilliseconds
        self.tcpTimeoutMilliseconds = tcpTimeoutMilliseconds
        self.rounds = rounds
        self.maxUDPRequestSize = maxUDPRequestSize
    }
}

/// A request answered: the raw response (for TSIG verification), parsed, and by whom.
public struct DNSExchange: Sendable {
    /// The response octets as received.
    public var bytes: [UInt8]
    /// The response, parsed.
    public var message: DNSMessage
    /// The server that sent it.
    public var server: DNSServerAddress
    /// Whether it came over TCP.
    public var overTCP: Bool

    /// Creates an exchange result.
    public init(bytes: [UInt8], message: DNSMessage, server: DNSServerAddress, overTCP: Bool) {
        self.bytes = bytes
        self.message = message
        self.server = server
        self.overTCP = overTCP
    }
}

/// Why no server answered acceptably.
public enum DNSTransportError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The request is not a parseable DNS message, or has no question to match on.
    case badRequest
    /// The server list is empty.
    case noServers
    /// Every try failed; one entry per try, in order.
    case allServersFailed([DNSServerFailure])

    /// One line for logs.
    public var description: String {
        switch self {
        case .badRequest: "request is not a DNS message with a question"
        case .noServers: "no IMS servers configured"
        case .allServersFailed(let failures):
            "no IMS server answered: " + failures.map(\.description).joined(separator: "; ")
        }
    }
}

/// One failed try.
public struct DNSServerFailure: Hashable, Sendable, CustomStringConvertible {
    /// The server tried.
    public var server: DNSServerAddress
    /// What went wrong.
    public var error: DNSSocketError

    /// `server: error`.
    public var description: String { "\(server): \(error)" }
}

/// Counters of a transport since it was created.
public struct DNSTransportStatistics: Hashable, Sendable {
    /// Requests put on the wire (each UDP or TCP try).
    public var queriesSent: UInt64 = 0
    /// Tries that got no acceptable answer in time.
    public var timeouts: UInt64 = 0
    /// Tries after the first of an exchange (next server, next round).
    public var retries: UInt64 = 0
    /// Truncated (TC=1) UDP answers retried over TCP.
    public var truncationFallbacks: UInt64 = 0
    /// Tries made over TCP (fallbacks and large requests).
    public var tcpQueries: UInt64 = 0
    /// Datagrams dropped: wrong source, wrong ID, not a response, wrong question, garbage.
    public var ignoredResponses: UInt64 = 0
    /// Tries that failed on a socket error (unreachable, reset).
    public var networkErrors: UInt64 = 0

    /// Creates zeroed counters.
    public init() {}
}

/// Sends DNS requests to IMS servers and returns the first acceptable answer.
///
/// A protocol so that the IMS client can be tested without sockets.
public protocol DNSExchanging: Sendable {
    /// Sends `request` (already encoded and, for updates, signed) to `servers` in order,
    /// for the configured number of rounds. A response whose RCODE is in `retryOn` counts
    /// as a failed try; if every try ends that way, the last such response is returned.
    func exchange(_ request: [UInt8], servers: [DNSServerAddress],
                  retryOn: Set<DNSResponseCode>) throws(DNSTransportError) -> DNSExchange
    /// Counters so far.
    var statistics: DNSTransportStatistics { get }
}

/// UDP with TCP fallback over Glibc sockets, blocking with poll() deadlines: call it from
/// a thread that may wait (never the packet engine's).
///
/// Spoofing resistance: each try uses a fresh socket connected to the server (a new
/// random source port, and the kernel drops datagrams from other addresses), and a
/// datagram is accepted only if its source is the server, it is a response, and its ID,
/// opcode and question equal the request's. Anything else is counted and ignored while
/// the try keeps waiting, so a forged answer cannot cut a genuine one off.
public final class DNSTransport: DNSExchanging {
    /// Timeouts and retries.
    public let options: DNSTransportOptions
    private let counters = Mutex(DNSTransportStatistics())

    /// Creates a transport.
    public init(options: DNSTransportOptions = DNSTransportOptions()) {
        self.options = options
    }

    /// Counters so far.
    public var statistics: DNSTransportStatistics { counters.withLock { $0 } }

    public func exchange(_ request: [UInt8], servers: [DNSServerAddress],
                         retryOn: Set<DNSResponseCode> = []) throws(DNSTransportError) -> DNSExchange {
        guard let parsed = try? DNSMessage(bytes: request), !parsed.header.isResponse else { throw .badRequest }
        guard !servers.isEmpty else { throw .noServers }
        var failures: [DNSServerFailure] = []
        var lastRefusal: DNSExchange?
        var tries = 0
        for _ in 0..<max(1, options.rounds) {
            for server in servers {
                if tries > 0 { count { $0.retries += 1 } }
                tries += 1
                do {
                    let answer = try exchangeOnce(request, parsed: parsed, server: server)
                    guard retryOn.contains(answer.message.header.responseCode) else { return answer }
                    lastRefusal = answer
                } catch {
                    failures.append(DNSServerFailure(server: server, error: error))
                    switch error {
                    case .timeout: count { $0.timeouts += 1 }
                    default: count { $0.networkErrors += 1 }
                    }
                }
            }
        }
        if let lastRefusal { return lastRefusal }
        throw .allServersFailed(failures)
    }

    /// One try at one server: UDP, then TCP if the answer was truncated; TCP at once for
    /// requests too large for UDP.
    func exchangeOnce(_ request: [UInt8], parsed: DNSMessage,
                      server: DNSServerAddress) throws(DNSSocketError) -> DNSExchange {
        if request.count > options.maxUDPRequestSize {
            return try tcpExchange(request, parsed: parsed, server: server)
        }
        let answer = try udpExchange(request, parsed: parsed, server: server)
        guard answer.message.header.isTruncated else { return answer }
        count { $0.truncationFallbacks += 1 }
        return try tcpExchange(request, parsed: parsed, server: server)
    }

    private func udpExchange(_ request: [UInt8], parsed: DNSMessage,
                             server: DNSServerAddress) throws(DNSSocketError) -> DNSExchange {
        let deadline = monotonicMilliseconds() + Int64(options.udpTimeoutMilliseconds)
        let socket = try SocketHandle(for: server, type: Int32(SOCK_DGRAM.rawValue))
        try socket.connect(to: server, deadline: deadline)
        count { $0.queriesSent += 1 }
        try socket.sendAll(request, deadline: deadline)
        while true {
            let (bytes, source) = try socket.receiveDatagram(deadline: deadline)
            guard source == server, let message = try? DNSMessage(bytes: bytes),
                  Self.answers(message, request: parsed) else {
                count { $0.ignoredResponses += 1 }
                continue
            }
            return DNSExchange(bytes: bytes, message: message, server: server, overTCP: false)
        }
    }

    private func tcpExchange(_ request: [UInt8], parsed: DNSMessage,
                             server: DNSServerAddress) throws(DNSSocketError) -> DNSExchange {
        let deadline = monotonicMilliseconds() + Int64(options.tcpTimeoutMilliseconds)
        let socket = try SocketHandle(for: server, type: Int32(SOCK_STREAM.rawValue))
        count {
            $0.queriesSent += 1
            $0.tcpQueries += 1
        }
        try socket.connect(to: server, deadline: deadline)
        let length = UInt16(truncatingIfNeeded: request.count)
        var framed: [UInt8] = []
        framed.reserveCapacity(2 + request.count)
        framed.appendBigEndian(length)
        framed += request
        try socket.sendAll(framed, deadline: deadline)
        let prefix = try socket.receiveExactly(2, deadline: deadline)
        let bytes = try socket.receiveExactly(Int(BigEndian.u16(prefix, at: 0)), deadline: deadline)
        guard let message = try? DNSMessage(bytes: bytes), Self.answers(message, request: parsed) else {
            count { $0.ignoredResponses += 1 }
            throw .badStream
        }
        return DNSExchange(bytes: bytes, message: message, server: server, overTCP: true)
    }

    /// Whether `message` is a response to `request`: QR set, same ID and opcode, and the
    /// same question (names compared case-insensitively). Servers may drop the question
    /// from an error reply (FORMERR, NOTIMP), so an empty question passes only with an
    /// error code.
    public static func answers(_ message: DNSMessage, request: DNSMessage) -> Bool {
        guard message.header.isResponse, message.header.id == request.header.id,
              message.header.opcode == request.header.opcode else { return false }
        if message.questions.isEmpty {
            return message.header.responseCode != .noError
        }
        return message.questions == request.questions
    }

    private func count(_ change: (inout DNSTransportStatistics) -> Void) {
        counters.withLock { change(&$0) }
    }
}
