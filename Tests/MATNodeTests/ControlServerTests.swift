#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATTestSupport
import Synchronization
import Testing
@testable import MATNode

/// The control socket for real (a Unix socket in a temporary directory): clients that
/// hang up, stall, send garbage or a megabyte, or come 200 at once cost only their own
/// connection, and a slow request never delays `status`.
@Suite struct ControlServerTests {
    let controlSocket: TemporaryFile
    var path: String { controlSocket.path }

    init() throws { controlSocket = try TemporaryFile("control.sock", prefix: "matd-control") }

    /// Answers `status` at once and `rebind` after `rebindDelay` seconds.
    func server(rebindDelay: Double = 0, limits: ControlServer.Limits = ControlServer.defaultLimits) throws -> ControlServer {
        try ControlServer(path: path, limits: limits) { request in
            switch request.command {
            case .rebind:
                Thread.sleep(forTimeInterval: rebindDelay)
                return ControlReply(rebind: RebindReport(mobileAddresses: ["192.0.2.10"]))
            default:
                return ControlReply(error: "answered \(request.command)")
            }
        }
    }

    /// Sends `command` and returns the reply with how long it took, in milliseconds.
    func ask(_ command: ControlRequest.Command) throws -> (ControlReply, Double) {
        let started = Date()
        let reply = try sendControlRequest(ControlRequest(command: command), to: path)
        return (reply, Date().timeIntervalSince(started) * 1_000)
    }

    func requestLine(_ command: ControlRequest.Command = .status) throws -> [UInt8] {
        Array(try JSONEncoder().encode(ControlRequest(command: command))) + [UInt8(ascii: "\n")]
    }

    @Test func clientsThatHangUpEarlyHarmNobody() throws {
        let control = try server()
        defer { control.stop() }
        let line = try requestLine()
        for index in 0..<200 {
            let client = try StreamSocket.connect(to: path)
            switch index % 4 {
            case 0: try client.writeAll(line)                      // the whole request, then gone
            case 1: try client.writeAll(Array(line.prefix(10)))    // half a request
            case 2: break                                           // nothing at all
            default: try client.writeAll(Array(line.dropLast()))   // no newline, then end of stream
            }
        }
        let (reply, _) = try ask(.status)
        #expect(reply.error == "answered status")
        // Every abrupt client was accepted, and the hundred that sent a whole request (with
        // or without its newline) were answered: accepting comes before reading, so wait for both.
        try waitUntil("every client accepted and the hundred answered", seconds: 10) {
            (control.counters["connections"] ?? 0) == 201 && (control.counters["requests"] ?? 0) >= 100
        }
    }

    @Test func twoHundredClientsAtOnceAreAllAnswered() throws {
        let control = try server()
        defer { control.stop() }
        let answered = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 200) { _ in
            if (try? ask(.status))?.0.error == "answered status" { answered.withLock { $0 += 1 } }
        }
        #expect(answered.withLock { $0 } == 200)
    }

    @Test func aStalledClientDelaysNobodyAndIsDroppedAtItsDeadline() throws {
        var limits = ControlServer.defaultLimits
        limits.requestMilliseconds = 300
        let control = try server(limits: limits)
        defer { control.stop() }
        let stalled = try StreamSocket.connect(to: path)
        try stalled.writeAll(Array(try requestLine().prefix(5)))
        let (reply, milliseconds) = try ask(.status)
        #expect(reply.error == "answered status")
        #expect(milliseconds < 100)
        // The stalled client is cut off once its time is up: it reads end of stream.
        stalled.setTimeout(seconds: 3)
        #expect(try stalled.readLine(limit: 100).isEmpty)
        #expect(control.counters["clients_timed_out"] == 1)
    }

    @Test func statusIsAnsweredWhileARebindRuns() throws {
        let control = try server(rebindDelay: 1.5)
        defer { control.stop() }
        let rebind = Mutex<ControlReply?>(nil)
        let thread = Thread { rebind.withLock { $0 = try? sendControlRequest(ControlRequest(command: .rebind), to: path) } }
        thread.start()
        usleep(200_000)
        for _ in 0..<5 {
            let (reply, milliseconds) = try ask(.status)
            #expect(reply.error == "answered status")
            #expect(milliseconds < 100)
        }
        try waitUntil("the rebind request", seconds: 5) { rebind.withLock { $0 } != nil }
        #expect(rebind.withLock { $0 }?.rebind?.mobileAddresses == ["192.0.2.10"])
    }

    @Test func slowRequestsBeyondTheWorkersAreToldBusy() throws {
        var limits = ControlServer.defaultLimits
        limits.workers = 1
        let control = try server(rebindDelay: 1, limits: limits)
        defer { control.stop() }
        let thread = Thread { [path] in _ = try? sendControlRequest(ControlRequest(command: .rebind), to: path) }
        thread.start()
        usleep(200_000)
        let (reply, _) = try ask(.rebind)
        #expect(reply.error?.hasPrefix("busy") == true)
        #expect(control.counters["requests_busy"] == 1)
    }

    @Test func aMegabyteOfGarbageGetsAnErrorAndTheServerGoesOn() throws {
        let control = try server()
        defer { control.stop() }
        let client = try StreamSocket.connect(to: path)
        client.setTimeout(seconds: 5)
        // The server stops reading at its limit and closes after its reply: the rest of the
        // megabyte may not be taken, which is the point.
        _ = try? client.writeAll([UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20))
        let reply = try JSONDecoder().decode(ControlReply.self, from: Data(client.readLine(limit: 4096)))
        #expect(reply.error == "request longer than 4096 bytes")

        let garbage = try StreamSocket.connect(to: path)
        try garbage.writeAll(Array("{not json\n".utf8))
        let malformed = try JSONDecoder().decode(ControlReply.self, from: Data(garbage.readLine(limit: 4096)))
        #expect(malformed.error?.hasPrefix("malformed request") == true)
        #expect(try ask(.status).0.error == "answered status")
    }

    @Test func stopClosesTheSocketFile() throws {
        let control = try server()
        #expect(FileManager.default.fileExists(atPath: path))
        control.stop()
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(throws: SystemError.self) { try StreamSocket.connect(to: path) }
    }
}
