import Foundation
import Glibc
import MATDNS
import MATPacket
import MATSystem
import Synchronization
@testable import MATIMSClient

/// How a `TestResponder` treats requests.
enum ResponderMode: Sendable {
    /// Answer from the zone.
    case answer
    /// Never answer.
    case silent
    /// UDP: an empty reply with TC=1; TCP: the full answer.
    case truncateUDP
    /// UDP: first a reply with the wrong ID, then the real one.
    case wrongIDFirst
    /// UDP: first a reply for another question (right ID), then the real one.
    case wrongQuestionFirst
    /// UDP: first the request echoed back (QR clear), then the real one.
    case echoFirst
    /// UDP: the real reply, but sent from another port of the same host.
    case otherPortOnly
    /// Answer every request with this RCODE and no records.
    case rcode(DNSResponseCode)
}

/// A DNS responder on loopback (UDP and TCP on one port) running on its own thread.
final class TestResponder: Sendable {
    let server: DNSServerAddress
    private let udp: Int32
    private let tcp: Int32
    private let other: Int32
    private let state: Mutex<State>

    private struct State {
        var mode: ResponderMode
        var zone: MiniZone
        var udpRequests = 0
        var tcpRequests = 0
        var stopping = false
        var finished = false
    }

    init(mode: ResponderMode = .answer, zone: MiniZone = MiniZone(), host: IPAddress = ip("127.0.0.1")) throws {
        state = Mutex(State(mode: mode, zone: zone))
        var bound: (Int32, Int32, UInt16)?
        for _ in 0..<20 where bound == nil {
            let u = Self.socket(SOCK_DGRAM, host: host, port: 0)
            guard u >= 0 else { break }
            let port = Self.localPort(u)
            let t = Self.socket(SOCK_STREAM, host: host, port: port)
            if t >= 0, listen(t, 16) == 0 {
                bound = (u, t, port)
            } else {
                close(u)
                if t >= 0 { close(t) }
            }
        }
        guard let (u, t, port) = bound else { throw DNSSocketError.system(call: "bind", errno: errno) }
        udp = u
        tcp = t
        other = Self.socket(SOCK_DGRAM, host: host, port: 0)
        server = DNSServerAddress(address: host, port: port)
        let thread = Thread { [self] in self.run() }
        thread.start()
    }

    deinit {
        close(udp)
        close(tcp)
        close(other)
    }

    /// Requests seen so far over each transport.
    var counts: (udp: Int, tcp: Int) { state.withLock { ($0.udpRequests, $0.tcpRequests) } }

    /// Changes the behaviour.
    func set(mode: ResponderMode) { state.withLock { $0.mode = mode } }

    /// Changes the zone.
    func withZone<R>(_ body: (inout MiniZone) -> R) -> R { state.withLock { body(&$0.zone) } }

    /// Stops the thread and waits for it.
    func stop() {
        state.withLock { $0.stopping = true }
        while !state.withLock({ $0.finished }) { usleep(2000) }
    }

    private func run() {
        while !state.withLock({ $0.stopping }) {
            var fds = [pollfd(fd: udp, events: Int16(POLLIN), revents: 0), pollfd(fd: tcp, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, 20) > 0 else { continue }
            if fds[0].revents & Int16(POLLIN) != 0 { serveUDP() }
            if fds[1].revents & Int16(POLLIN) != 0 { serveTCP() }
        }
        state.withLock { $0.finished = true }
    }

    private func serveUDP() {
        var buffer = [UInt8](repeating: 0, count: 65_535)
        var peer = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = buffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(udp, raw.baseAddress, raw.count, 0, $0, &length) }
            }
        }
        guard n > 0 else { return }
        let request = Array(buffer[0..<n])
        let (mode, reply) = state.withLock { s -> (ResponderMode, [UInt8]?) in
            s.udpRequests += 1
            return (s.mode, Self.reply(to: request, mode: s.mode, zone: &s.zone))
        }
        guard let reply, let parsed = try? DNSMessage(bytes: reply) else { return }
        func send(_ bytes: [UInt8], from fd: Int32 = udp) {
            _ = bytes.withUnsafeBytes { raw in
                withUnsafePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, raw.baseAddress, raw.count, 0, $0, length) }
                }
            }
        }
        switch mode {
        case .truncateUDP:
            var truncated = parsed
            truncated.header.isTruncated = true
            truncated.answers = []
            send((try? truncated.encode()) ?? [])
        case .wrongIDFirst:
            var forged = parsed
            forged.header.id &+= 1
            send((try? forged.encode()) ?? [])
            send(reply)
        case .wrongQuestionFirst:
            var forged = parsed
            forged.questions = [DNSQuestion(name: name("forged.mat.example."), type: .a)]
            send((try? forged.encode()) ?? [])
            send(reply)
        case .echoFirst:
            send(request)
            send(reply)
        case .otherPortOnly:
            send(reply, from: other)
        default:
            send(reply)
        }
    }

    private func serveTCP() {
        let client = accept(tcp, nil, nil)
        guard client >= 0 else { return }
        defer { close(client) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func readExactly(_ count: Int) -> [UInt8]? {
            var buffer = [UInt8](repeating: 0, count: count)
            var offset = 0
            while offset < count {
                let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress! + offset, count - offset, 0) }
                guard n > 0 else { return nil }
                offset += n
            }
            return buffer
        }
        guard let prefix = readExactly(2), let request = readExactly(Int(prefix[0]) << 8 | Int(prefix[1])) else { return }
        let reply = state.withLock { s -> [UInt8]? in
            s.tcpRequests += 1
            if case .silent = s.mode { return nil }
            return Self.reply(to: request, mode: .answer, zone: &s.zone)
        }
        guard let reply else { return }
        let framed = [UInt8(reply.count >> 8), UInt8(reply.count & 0xFF)] + reply
        _ = framed.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private static func reply(to request: [UInt8], mode: ResponderMode, zone: inout MiniZone) -> [UInt8]? {
        switch mode {
        case .silent:
            return nil
        case .rcode(let code):
            guard let message = try? DNSMessage(bytes: request) else { return nil }
            var reply = message.response(code: code)
            reply.edns = nil
            return try? reply.encode()
        default:
            return zone.handle(request, now: WallClock.seconds())
        }
    }

    private static func socket(_ type: __socket_type, host: IPAddress, port: UInt16) -> Int32 {
        let family = host.family == .ipv4 ? AF_INET : AF_INET6
        let fd = Glibc.socket(family, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = withSocketAddress(DNSServerAddress(address: host, port: port)) { bind(fd, $0, $1) }
        guard result == 0 else {
            close(fd)
            return -1
        }
        return fd
    }

    private static func localPort(_ fd: Int32) -> UInt16 {
        SocketAddress.receiving { getsockname(fd, $0, $1) }.endpoint?.port ?? 0
    }
}

/// A UDP port on 127.0.0.1 that nothing listens on (bound, then closed).
func deadPort() -> DNSServerAddress {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    _ = SocketAddress.with(IPEndpoint(address: IPAddress("127.0.0.1")!, port: 0)) { bind(fd, $0, $1) }
    let bound = SocketAddress.receiving { getsockname(fd, $0, $1) }.endpoint!
    close(fd)
    return DNSServerAddress(address: bound.address, port: bound.port)
}
