#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATDNS
import MATIMS
import MATIMSCore
import MATLinux
import MATLog
import MATPacket
import MATSystem

/// The service manager's watchdog (`WatchdogSec=` in the unit), fed only while mat-ims
/// answers: at half the interval a thread asks the server for its first zone's SOA over
/// UDP on its first listen address (loopback for a wildcard), and pings when the answer
/// comes within a second. When it does not (a flood can fill the socket's queue), the
/// question goes to the server's core directly, which still proves that its lock and
/// journal are not stuck: a flood must not get mat-ims restarted, a wedged server must.
final class ServingWatchdog: Sendable {
    private let manager: SystemdNotifier
    private let core: IMSCore
    private let target: IPEndpoint
    private let query: [UInt8]

    /// Starts the watchdog thread when the manager asks for one (`WATCHDOG_USEC`).
    static func startIfAsked(manager: SystemdNotifier, server: IMSServer, zone: DNSName) throws {
        guard let interval = manager.watchdogInterval else { return }
        let watchdog = try ServingWatchdog(manager: manager, core: server.core, listen: server.endpoints[0], zone: zone)
        guard let thread = SystemThread.start(name: "mat-ims-watchdog", { watchdog.run(every: interval / 2) }) else {
            throw SystemError("start the watchdog thread", errno: EAGAIN)
        }
        thread.detach()
    }

    private init(manager: SystemdNotifier, core: IMSCore, listen: IPEndpoint, zone: DNSName) throws {
        self.manager = manager
        self.core = core
        let address: IPAddress = switch listen.address {
        case .v4(let v4) where v4.value == 0: .v4(IPv4Address(127, 0, 0, 1))
        case .v6(let v6) where v6.high == 0 && v6.low == 0: .v6(IPv6Address(high: 0, low: 1))
        default: listen.address
        }
        target = IPEndpoint(address: address, port: listen.port)
        query = try DNSMessage(header: DNSHeader(id: 0x4d41), questions: [DNSQuestion(name: zone, type: .soa)]).encode()
    }

    private func run(every period: Duration) {
        let socket: DatagramSocket
        do {
            socket = try DatagramSocket(family: target.address.family, port: 0)
        } catch {
            Log.write(.error, "mat-ims: watchdog: \(error); systemd will restart mat-ims")
            return
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            if answers(socket, buffer) || core.handleDatagram(query) != nil {
                manager.report("mat-ims") { try $0.watchdog() }
            } else {
                Log.write(.error, "mat-ims: watchdog: the server does not answer; not telling systemd it is alive")
            }
            let (seconds, attoseconds) = period.components
            usleep(useconds_t(clamping: seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        }
    }

    /// Whether the server answers the query within a second.
    private func answers(_ socket: DatagramSocket, _ buffer: UnsafeMutableRawBufferPointer) -> Bool {
        do {
            try socket.send(query, to: target.address, port: target.port)
        } catch {
            return false
        }
        let deadline = MonotonicClock.milliseconds() + 1_000
        while MonotonicClock.milliseconds() < deadline {
            var descriptor = pollfd(fd: socket.fileDescriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, Int32(clamping: deadline - MonotonicClock.milliseconds()))
            guard let (length, source, _) = try? socket.receive(into: buffer) else { continue }
            if source == target.address, length >= 12, buffer[0] == 0x4d, buffer[1] == 0x41 { return true }
        }
        return false
    }
}
