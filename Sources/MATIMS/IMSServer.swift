#if canImport(Glibc)
import Glibc
#endif
import MATDNS
import MATIMSCore
import MATLog
import MATPacket
import MATSystem
import MATWire
import Synchronization

/// The mapping server on sockets: per listen address one UDP thread (batched with
/// `recvmmsg`/`sendmmsg`) and one TCP accept thread (a thread per connection, bounded),
/// plus a NOTIFY sender. All of them hand messages to one `IMSCore`.
public final class IMSServer: Sendable {
    /// The engine: usable directly, without sockets (tests, fuzzing).
    public let core: IMSCore
    /// The addresses actually bound (port 0 in the configuration resolved).
    public let endpoints: [IPEndpoint]
    private let udpSockets: [Int32]
    private let tcpSockets: [Int32]
    private let stopRead: Int32
    private let stopWrite: Int32
    private let threads = Mutex<[SystemThread]>([])
    private let connections: Mutex<ConnectionLimiter>
    private let stopped = Atomic<Bool>(false)
    private let notifier: Notifier?

    /// Loads the zones and binds every listen address (UDP and TCP on the same port).
    public init(configuration: IMSConfiguration,
                clock: @escaping @Sendable () -> UInt64 = IMSCore.systemClock) throws(IMSServerError) {
        do {
            core = try IMSCore(configuration: configuration, clock: clock)
        } catch {
            throw IMSServerError(error.description)
        }
        core.logEvents()
        connections = Mutex(ConnectionLimiter(total: configuration.maxTCPConnections,
                                              perSource: configuration.maxTCPConnectionsPerSource))
        var udp: [Int32] = []
        var tcp: [Int32] = []
        var bound: [IPEndpoint] = []
        func closeAll() {
            for fd in udp + tcp { close(fd) }
        }
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let perAddress = configuration.udpThreads > 0 ? configuration.udpThreads : max(1, min(cpus, 8))
        for endpoint in configuration.listen {
            do {
                let (u, t, actual) = try Self.bindPair(endpoint)
                udp.append(u)
                tcp.append(t)
                bound.append(actual)
                for _ in 1..<perAddress {
                    udp.append(try Sockets.bound(actual, stream: false))
                }
            } catch {
                closeAll()
                core.close()
                throw error
            }
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            closeAll()
            throw IMSServerError("pipe: \(errnoText())")
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        stopRead = fds[0]
        stopWrite = fds[1]
        udpSockets = udp
        tcpSockets = tcp
        endpoints = bound
        let hasTargets = configuration.zones.contains { !$0.notify.isEmpty }
        notifier = hasTargets ? Notifier(core: core, listen: bound) : nil
    }

    /// UDP and TCP on one port; port 0 picks one free for both.
    private static func bindPair(_ endpoint: IPEndpoint) throws(IMSServerError) -> (Int32, Int32, IPEndpoint) {
        if endpoint.port != 0 {
            let tcp = try Sockets.bound(endpoint, stream: true)
            do {
                let udp = try Sockets.bound(endpoint, stream: false)
                return (udp, tcp, endpoint)
            } catch {
                close(tcp)
                throw error
            }
        }
        var lastError = IMSServerError("no free port for \(endpoint)")
        for _ in 0..<32 {
            let tcp = try Sockets.bound(endpoint, stream: true)
            guard let actual = Sockets.localEndpoint(tcp) else {
                close(tcp)
                continue
            }
            do {
                let udp = try Sockets.bound(actual, stream: false)
                return (udp, tcp, actual)
            } catch {
                lastError = error
                close(tcp)
            }
        }
        throw lastError
    }

    /// Starts the listener, expiry and NOTIFY threads.
    public func start() throws(IMSServerError) {
        var started: [SystemThread] = []
        for fd in udpSockets {
            guard let thread = SystemThread.start(name: "mat-ims-udp", { [self] in serveUDP(fd) }) else {
                throw IMSServerError("cannot start a thread")
            }
            started.append(thread)
        }
        for fd in tcpSockets {
            guard let thread = SystemThread.start(name: "mat-ims-tcp", { [self] in acceptTCP(fd) }) else {
                throw IMSServerError("cannot start a thread")
            }
            started.append(thread)
        }
        // Registration lifetimes: a second's delay past one costs nothing.
        guard let expiry = SystemThread.start(name: "mat-ims-expiry", { [self, stopRead] in
            while !Sockets.waitReadable([stopRead], timeout: 1_000)[0] {
                core.expireMappings()
                core.logEvents()
            }
        }) else {
            throw IMSServerError("cannot start a thread")
        }
        started.append(expiry)
        if let notifier {
            core.onZoneChange { zone, serial in notifier.zoneChanged(zone, serial: serial) }
            guard let thread = SystemThread.start(name: "mat-ims-notify", { [stopRead] in notifier.run(stop: stopRead) }) else {
                throw IMSServerError("cannot start a thread")
            }
            started.append(thread)
        }
        threads.withLock { $0 += started }
    }

    /// Stops every thread, waits for open connections to finish (up to 3 s), closes the
    /// sockets and syncs the journals. Idempotent.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(stopWrite, &byte, 1)
        let running = threads.withLock { list -> [SystemThread] in
            defer { list.removeAll() }
            return list
        }
        for thread in running { thread.join() }
        for _ in 0..<300 where connections.withLock({ $0.active }) > 0 {
            usleep(10_000)
        }
        for fd in udpSockets + tcpSockets { close(fd) }
        notifier?.close()
        core.close()
    }

    /// The fuzzing entry point, as on the core.
    public func handleDatagram(_ bytes: [UInt8]) -> [UInt8]? {
        core.handleDatagram(bytes)
    }

    // MARK: UDP

    /// One UDP socket: a blocking `recvmmsg` that returns as soon as one datagram is there
    /// (with whatever else is queued), one `handle` call for the batch, one `sendmmsg`.
    /// The receive timeout lets the thread notice `stop()` within 200 ms.
    private func serveUDP(_ fd: Int32) {
        let batch = DatagramBatch()
        var oversized = 0
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        while !stopped.load(ordering: .acquiring) {
            guard let requests = batch.receive(fd, blocking: true, oversized: &oversized) else { continue }
            let replies = core.handle(requests, transport: .udp)
            batch.send(fd, replies: replies, to: requests)
            core.logEvents()
        }
    }

    // MARK: TCP

    private func acceptTCP(_ listener: Int32) {
        while true {
            let ready = Sockets.waitReadable([listener, stopRead], timeout: -1)
            if ready[1] { return }
            while true {
                let (fd, peer) = SocketAddress.receiving { accept(listener, $0, $1) }
                if fd < 0 { break }
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                switch connections.withLock({ $0.admit(peer?.address) }) {
                case .admitted:
                    break
                case .serverFull:
                    core.count(.tcpConnectionsRejected)
                    close(fd)
                    continue
                case .sourceFull:
                    core.count(.tcpConnectionsRejectedPerSource)
                    close(fd)
                    continue
                }
                core.count(.tcpConnections)
                if let thread = SystemThread.start(name: "mat-ims-conn", { [self] in serveConnection(fd, peer: peer) }) {
                    thread.detach()
                } else {
                    connections.withLock { $0.release(peer?.address) }
                    close(fd)
                }
            }
        }
    }

    /// One client: length-prefixed messages (RFC 1035 §4.2.2, RFC 7766) until it closes,
    /// sits idle past the timeout, stalls in the middle of a message either way, or the
    /// server stops. Every wait has a deadline, so a slot held by a client that does
    /// nothing is back within `tcp-idle-timeout`.
    private func serveConnection(_ fd: Int32, peer: IPEndpoint?) {
        defer {
            // The slot first: once the client sees the close, it may connect again.
            connections.withLock { $0.release(peer?.address) }
            close(fd)
        }
        let timeout = core.configuration.tcpIdleTimeout
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        while true {
            guard let prefix = readExactly(fd, count: 2, timeoutSeconds: timeout, idle: true) else { return }
            let length = Int(BigEndian.u16(prefix, at: 0))
            guard let message = readExactly(fd, count: length, timeoutSeconds: timeout, idle: false) else { return }
            let replies = core.handleStream(message, from: peer)
            core.logEvents()
            if replies.isEmpty {
                // A malformed message we do not answer: RFC 7766 lets us close.
                return
            }
            for reply in replies {
                var framed: [UInt8] = []
                framed.reserveCapacity(2 + reply.count)
                framed.appendBigEndian(UInt16(truncatingIfNeeded: reply.count))
                framed += reply
                guard writeAll(fd, framed, timeoutSeconds: timeout) else { return }
            }
        }
    }

    /// Reads `count` bytes within `timeoutSeconds`. A client that sends nothing at all
    /// (`idle`, nothing read) is counted as idle; one that stops part-way as stalled.
    private func readExactly(_ fd: Int32, count: Int, timeoutSeconds: Int, idle: Bool) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        let deadline = MonotonicClock.seconds() + Double(timeoutSeconds)
        while done < count {
            let remaining = deadline - MonotonicClock.seconds()
            guard remaining > 0 else {
                core.count(idle && done == 0 ? .tcpIdleClosed : .tcpStalledClosed)
                return nil
            }
            let ready = Sockets.waitReadable([fd, stopRead], timeout: Int32(min(remaining * 1000, 60_000)) + 1)
            if ready[1] { return nil }
            guard ready[0] else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n == 0 { return nil }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return nil
            }
            done += n
        }
        return buffer
    }

    /// Sends all of `bytes` within `timeoutSeconds`: a client that stops reading (its
    /// window closed) cannot hold the thread and the connection slot for longer.
    private func writeAll(_ fd: Int32, _ bytes: [UInt8], timeoutSeconds: Int) -> Bool {
        var done = 0
        let deadline = MonotonicClock.seconds() + Double(timeoutSeconds)
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n >= 0 {
                done += n
                continue
            }
            guard errno == EINTR || errno == EAGAIN else { return false }
            let remaining = deadline - MonotonicClock.seconds()
            guard remaining > 0 else {
                core.count(.tcpStalledClosed)
                return false
            }
            let ready = Sockets.waitWritable(fd, stop: stopRead, timeout: Int32(min(remaining * 1000, 60_000)) + 1)
            if ready.stopped { return false }
        }
        return true
    }
}

/// Sends NOTIFY (RFC 1996) to each zone's secondaries after a change, from the listen
/// address of the same family (secondaries accept NOTIFY only from their primary's
/// address). Retries with backoff (1, 2, 4, 8 s) until acknowledged, five tries in all;
/// a newer change replaces an outstanding notification instead of queueing behind it.
final class Notifier: @unchecked Sendable {
    private struct Pending {
        var id: UInt16
        var serial: UInt32
        var attempts: Int
        var nextAt: Double
        var lastSent: Double
    }

    private struct TargetKey: Hashable {
        var zone: Int
        var target: IPEndpoint
    }

    static let maxAttempts = 5
    /// Two notifications to one target are at least this far apart (seconds).
    static let minimumInterval = 0.2

    private let core: IMSCore
    private let queue = Mutex<[Int: UInt32]>([:])
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var socket4: Int32 = -1
    private var socket6: Int32 = -1
    // Touched by the notifier thread only.
    private var pending: [TargetKey: Pending] = [:]
    private var lastSent: [TargetKey: Double] = [:]

    init(core: IMSCore, listen: [IPEndpoint]) {
        self.core = core
        var fds: [Int32] = [0, 0]
        _ = pipe(&fds)
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        let v4 = listen.first { $0.address.family == .ipv4 }.map { IPEndpoint(address: $0.address, port: 0) }
            ?? IPEndpoint(address: .v4(IPv4Address(0)), port: 0)
        let v6 = listen.first { $0.address.family == .ipv6 }.map { IPEndpoint(address: $0.address, port: 0) }
            ?? IPEndpoint(address: .v6(IPv6Address(high: 0, low: 0)), port: 0)
        socket4 = (try? Sockets.bound(v4, stream: false)) ?? -1
        socket6 = (try? Sockets.bound(v6, stream: false)) ?? -1
    }

    func close() {
        for fd in [wakeRead, wakeWrite, socket4, socket6] where fd >= 0 { Glibc.close(fd) }
    }

    /// Called by the core after a change is durable.
    func zoneChanged(_ zone: Int, serial: UInt32) {
        queue.withLock { $0[zone] = serial }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    func run(stop: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let now = MonotonicClock.seconds()
            let next = pending.values.map(\.nextAt).min()
            let timeout: Int32 = next.map { Int32(max(0, min(($0 - now) * 1000, 60_000)).rounded(.up)) } ?? -1
            let ready = Sockets.waitReadable([stop, wakeRead, socket4, socket6], timeout: timeout)
            if ready[0] { return }
            if ready[1] {
                while read(wakeRead, &buffer, buffer.count) > 0 {}
                let changes = queue.withLock { queue -> [Int: UInt32] in
                    defer { queue.removeAll() }
                    return queue
                }
                let time = MonotonicClock.seconds()
                for (zone, serial) in changes {
                    for target in core.zoneConfigs[zone].notify {
                        let key = TargetKey(zone: zone, target: target)
                        let earliest = (lastSent[key] ?? 0) + Self.minimumInterval
                        pending[key] = Pending(id: 0, serial: serial, attempts: 0, nextAt: max(time, earliest),
                                               lastSent: lastSent[key] ?? 0)
                    }
                }
            }
            for (index, fd) in [socket4, socket6].enumerated() where ready[2 + index] && fd >= 0 {
                while let (n, source) = Sockets.receive(fd, into: &buffer) {
                    guard n >= 12, let source else { continue }
                    let id = BigEndian.u16(buffer, at: 0)
                    let flags = BigEndian.u16(buffer, at: 2)
                    guard flags & 0x8000 != 0, (flags >> 11) & 0xF == 4 else { continue }
                    if let key = pending.first(where: { $0.key.target == source && $0.value.id == id && $0.value.attempts > 0 })?.key {
                        pending[key] = nil
                        core.count(.notifyAcknowledged)
                    }
                }
            }
            let time = MonotonicClock.seconds()
            for (key, var entry) in pending where entry.nextAt <= time {
                if entry.attempts >= Self.maxAttempts {
                    pending[key] = nil
                    core.count(.notifyGaveUp)
                    Log.write(.warning, "mat-ims: NOTIFY for \(core.zoneConfigs[key.zone].name) to \(key.target) unanswered; giving up")
                    continue
                }
                entry.id = UInt16.random(in: 0...UInt16.max)
                entry.attempts += 1
                entry.lastSent = time
                entry.nextAt = time + Double(1 << (entry.attempts - 1))
                lastSent[key] = time
                pending[key] = entry
                send(zone: key.zone, to: key.target, id: entry.id)
            }
        }
    }

    private func send(zone: Int, to target: IPEndpoint, id: UInt16) {
        let fd = target.address.family == .ipv4 ? socket4 : socket6
        guard fd >= 0 else { return }
        let config = core.zoneConfigs[zone]
        let soa = core.soaRecord(ofZone: zone)
        let message = DNSMessage(header: DNSHeader(id: id, opcode: .notify, isAuthoritative: true),
                                 questions: [DNSQuestion(name: config.name, type: .soa)], answers: [soa])
        guard let bytes = try? message.encode() else { return }
        if Sockets.send(fd, bytes, to: target) { core.count(.notifySent) }
    }
}
