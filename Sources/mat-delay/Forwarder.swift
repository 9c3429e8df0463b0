#if canImport(Glibc)
import Glibc
#endif
import MATSystem

/// The bump in the wire: two packet sockets and a direction each way, served by one
/// thread. It polls both sockets (and the stop signals) with a timeout that ends when the
/// oldest held frame is due (or a bottleneck's link wants more frames), reads what
/// arrived, and sends what is due.
final class Forwarder {
    let first: PacketSocket
    let second: PacketSocket
    /// first -> second, and second -> first.
    let outbound: Direction
    let inbound: Direction
    private let signals: StopSignals
    private let pollSet: UnsafeMutablePointer<pollfd>

    /// `bottleneck`: each direction's queue discipline, its limit in bytes and the link's
    /// rate, or nil for none (frames are delayed as they come).
    init(between first: PacketSocket, and second: PacketSocket, delay: UInt64, slots: Int, slotSize: Int,
         batch: Int, bottleneck: (discipline: QueueDiscipline, limitBytes: Int, bitsPerSecond: Double)?,
         signals: StopSignals) {
        self.first = first
        self.second = second
        self.signals = signals
        func direction(from input: PacketSocket, to output: PacketSocket) -> Direction {
            let queue = bottleneck.map {
                BottleneckQueue(discipline: $0.discipline, limitBytes: $0.limitBytes, slots: slots, slotSize: slotSize)
            }
            return Direction(from: input, to: output, delay: delay, slots: slots, slotSize: slotSize, batch: batch,
                             bottleneck: queue, rateBitsPerSecond: bottleneck?.bitsPerSecond ?? 0)
        }
        outbound = direction(from: first, to: second)
        inbound = direction(from: second, to: first)
        pollSet = .allocate(capacity: 3)
        pollSet.initialize(repeating: pollfd(), count: 3)
        pollSet[0].fd = first.fd
        pollSet[1].fd = second.fd
        pollSet[2].fd = signals.fd
        pollSet[2].events = Int16(POLLIN)
    }

    deinit { pollSet.deallocate() }

    /// Forwards until SIGTERM or SIGINT; returns the signal.
    func run() throws -> Int32 {
        var timeout = timespec()
        while true {
            let now = MonotonicClock.nanoseconds()
            outbound.transmit(now: now)
            inbound.transmit(now: now)
            outbound.flush(now: now)
            inbound.flush(now: now)

            // Each socket reads for its own direction and writes for the other.
            pollSet[0].events = Int16(POLLIN) | (inbound.waitingForOutput ? Int16(POLLOUT) : 0)
            pollSet[1].events = Int16(POLLIN) | (outbound.waitingForOutput ? Int16(POLLOUT) : 0)
            pollSet[0].revents = 0
            pollSet[1].revents = 0
            pollSet[2].revents = 0
            var next = UInt64.max
            if let due = outbound.nextWake { next = min(next, due) }
            if let due = inbound.nextWake { next = min(next, due) }
            let ready: Int32
            if next == UInt64.max {
                ready = MultipleMessages.poll(pollSet, count: 3, timeout: nil)
            } else {
                let wait = next > now ? next - now : 0
                timeout.tv_sec = Int(wait / 1_000_000_000)
                timeout.tv_nsec = Int(wait % 1_000_000_000)
                ready = MultipleMessages.poll(pollSet, count: 3, timeout: &timeout)
            }
            if ready < 0 {
                if errno == EINTR { continue }
                throw DelayError("ppoll: \(errorText())")
            }
            if ready == 0 { continue }
            if pollSet[2].revents != 0, let number = signals.take() { return number }
            if pollSet[0].revents & Int16(POLLOUT) != 0 { inbound.waitingForOutput = false }
            if pollSet[1].revents & Int16(POLLOUT) != 0 { outbound.waitingForOutput = false }
            if pollSet[0].revents & Int16(POLLIN | POLLERR) != 0 { outbound.receive() }
            if pollSet[1].revents & Int16(POLLIN | POLLERR) != 0 { inbound.receive() }
        }
    }

    /// The counters of both directions, and what the kernel dropped before mat-delay read it.
    func report() -> [String] {
        var lines = [outbound.summary, inbound.summary]
        let kernelDrops = [first, second].map { "\($0.interface) \($0.kernelStatistics().drops)" }
        lines.append("socket buffer drops (kernel): \(kernelDrops.joined(separator: ", "))")
        return lines
    }
}
