#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATPacket
import MATSystem
import Testing

/// mat-ims (the binary, on loopback) against TCP clients that send queries and hang up
/// before reading the answers: writing them meets a closed connection (EPIPE), which
/// without MSG_NOSIGNAL and SIGPIPE ignored would kill the server (issue 9, "SIGPIPE can
/// never kill matd or mat-ims").
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs the built binaries (runs in CI)"))
struct IMSHangUpLabTests {
    /// A framed SOA query for mat.example. (RFC 1035 4.2.2: two bytes of length first).
    static func query(id: UInt16) -> [UInt8] {
        let name: [UInt8] = [3] + Array("mat".utf8) + [7] + Array("example".utf8) + [0]
        let message = [UInt8(id >> 8), UInt8(truncatingIfNeeded: id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
            + name + [0, 6, 0, 1]
        return [UInt8(message.count >> 8), UInt8(truncatingIfNeeded: message.count)] + message
    }

    /// A TCP connection to mat-ims from `source` (127.0.0.0/8 is all local), so the
    /// abrupt clients' per-source connection limit is not the next client's.
    static func connect(port: UInt16, from source: String = "127.0.0.1") -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let bound = SocketAddress.with(IPEndpoint(address: IPAddress(source)!, port: 0)) { Glibc.bind(fd, $0, $1) == 0 }
        guard bound else {
            close(fd)
            return nil
        }
        let connected = SocketAddress.with(IPEndpoint(address: IPAddress("127.0.0.1")!, port: port)) {
            Glibc.connect(fd, $0, $1) == 0
        }
        if connected { return fd }
        close(fd)
        return nil
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// The answer to query `id` on `fd`: its header says NOERROR with one answer, within 3 s.
    static func answered(_ fd: Int32, id: UInt16) -> Bool {
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var header = [UInt8](repeating: 0, count: 14)
        var done = 0
        while done < header.count {
            let n = header.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, $0.count - done, 0) }
            guard n > 0 else { return false }
            done += n
        }
        let answerID = UInt16(header[2]) << 8 | UInt16(header[3])
        return answerID == id && header[5] & 0x0f == 0 && header[8...9] == [0, 1]
    }

    /// 200 times: a client sends 20 pipelined queries and closes at once (even rounds with
    /// a FIN, odd ones with a reset: SO_LINGER 0), so mat-ims writes answers into a dead
    /// connection; then another client asks and must be answered. mat-ims lives through
    /// all of it and still stops cleanly.
    @Test func clientsThatHangUpBeforeTheAnswerKillNothing() throws {
        let ims = try LoopbackIMSConfig(prefix: "mat-ims-hangup")
        defer { ims.remove() }
        let port = ims.port
        let server = try Spawned([LabPaths.matIMS, "run", "--config", ims.path])
        defer { if server.isRunning { server.signal(SIGKILL); server.wait(timeout: 5) } }
        var ready: Int32?
        for _ in 0..<200 where ready == nil && server.isRunning {
            ready = Self.connect(port: port)
            if ready == nil { usleep(25_000) }
        }
        let first = try #require(ready, "mat-ims did not listen on 127.0.0.1:\(port):\n\(server.stderr)")
        #expect(Self.send(first, Self.query(id: 1)) && Self.answered(first, id: 1))
        close(first)

        let pipelined = (0..<20).flatMap { Self.query(id: UInt16(100 + $0)) }
        var answeredAfter = 0
        for round in 0..<200 {
            guard let abrupt = Self.connect(port: port, from: "127.0.0.2") else { break }
            _ = Self.send(abrupt, pipelined)
            if round % 2 == 1 {
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(abrupt, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            }
            close(abrupt)
            guard let next = Self.connect(port: port) else { break }
            defer { close(next) }
            let id = UInt16(1_000 + round)
            guard Self.send(next, Self.query(id: id)), Self.answered(next, id: id) else { break }
            answeredAfter += 1
        }
        #expect(server.isRunning, "mat-ims died:\n\(server.wait(timeout: 5).summary)")
        #expect(answeredAfter == 200, "answered after \(answeredAfter) of 200 abrupt clients:\n\(server.stderr)")
        server.signal(SIGTERM)
        #expect(server.wait(timeout: 15).status == 0)
    }
}
