#if canImport(Glibc)
import Glibc
#endif
import MATLog
import MATSystem

/// One direction of the wire: frames read from `input` wait in a ring for `delay`
/// nanoseconds, then go out of `output` in the order they came.
final class Direction {
    let input: PacketSocket
    let output: PacketSocket
    let delay: UInt64
    let ring: FrameRing
    private let receiveVector: MessageVector
    private let sendVector: MessageVector
    /// Where frames go that have no slot (ring full): read to count them, then forgotten.
    private let scratch: UnsafeMutableRawPointer

    /// True after sendmmsg said EAGAIN: wait for POLLOUT on `output` before sending again.
    var waitingForOutput = false

    // Counters, printed at exit.
    private(set) var received: UInt64 = 0
    private(set) var forwarded: UInt64 = 0
    private(set) var forwardedBytes: UInt64 = 0
    private(set) var droppedRingFull: UInt64 = 0
    private(set) var droppedOversize: UInt64 = 0
    private(set) var droppedSendError: UInt64 = 0
    private(set) var ignoredOutgoing: UInt64 = 0
    private(set) var receiveErrors: UInt64 = 0
    private var lastReportedError: Int32 = 0

    var name: String { "\(input.interface) -> \(output.interface)" }
    var dropped: UInt64 { droppedRingFull + droppedOversize + droppedSendError }

    init(from input: PacketSocket, to output: PacketSocket, delay: UInt64, slots: Int, slotSize: Int,
         batch: Int) {
        self.input = input
        self.output = output
        self.delay = delay
        ring = FrameRing(capacity: slots, slotSize: slotSize)
        receiveVector = MessageVector(capacity: batch)
        sendVector = MessageVector(capacity: batch)
        scratch = .allocate(byteCount: slotSize, alignment: 64)
    }

    deinit { scratch.deallocate() }

    /// Reads what `input` has, at most `rounds` batches, into the ring (or, when the ring
    /// is full, into the scratch slot, counting drops). Each frame is due `delay` after
    /// its batch was read.
    func receive(rounds: Int = 8) {
        for _ in 0..<rounds {
            let free = ring.free
            let toRing = free > 0
            let wanted = toRing ? min(free, receiveVector.capacity) : receiveVector.capacity
            for index in 0..<wanted {
                let buffer = toRing ? ring.slot(at: ring.position(ring.count + index)) : scratch
                receiveVector.set(index, buffer: buffer, length: ring.slotSize, receiving: true)
            }
            let got = MultipleMessages.receive(input.fd, receiveVector.raw, count: wanted, flags: Int32(MSG_DONTWAIT | MSG_TRUNC))
            if got < 0 {
                let code = errno
                if code == EAGAIN || code == EWOULDBLOCK || code == EINTR { return }
                receiveErrors += 1
                if code != lastReportedError {
                    lastReportedError = code
                    warn("receive on \(input.interface): \(errorText(code))")
                }
                return
            }
            let due = MonotonicClock.nanoseconds() &+ delay
            // Frames that stay are packed to the front of what was read, in order.
            var kept = 0
            for index in 0..<Int(got) {
                if receiveVector.packetType(index) == Kernel.packetOutgoing {
                    ignoredOutgoing += 1
                    continue
                }
                received += 1
                let length = receiveVector.receivedLength(index)
                if length > ring.slotSize || receiveVector.wasTruncated(index) {
                    droppedOversize += 1
                    continue
                }
                guard toRing else {
                    droppedRingFull += 1
                    continue
                }
                if kept != index {
                    let from = ring.slot(at: ring.position(ring.count + index - kept))
                    let to = ring.slot(at: ring.position(ring.count))
                    to.copyMemory(from: from, byteCount: length)
                }
                ring.append(length: length, due: due)
                kept += 1
            }
            if Int(got) < wanted { return }
        }
    }

    /// Sends every frame due by `now`, oldest first, in batches. Stops early when the
    /// socket would block (then `waitingForOutput` is set).
    func flush(now: UInt64) {
        while !waitingForOutput, let due = ring.headDueTime, due <= now {
            var ready = 0
            while ready < sendVector.capacity && ready < ring.count {
                let position = ring.position(ready)
                guard ring.dueTime(at: position) <= now else { break }
                sendVector.set(ready, buffer: ring.slot(at: position), length: ring.length(at: position), receiving: false)
                ready += 1
            }
            let sent = MultipleMessages.send(output.fd, sendVector.raw, count: ready, flags: Int32(MSG_DONTWAIT))
            if sent > 0 {
                for index in 0..<Int(sent) { forwardedBytes &+= UInt64(ring.length(at: ring.position(index))) }
                forwarded &+= UInt64(sent)
                ring.removeFirst(Int(sent))
                continue
            }
            let code = errno
            switch code {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                waitingForOutput = true
            default:
                // The oldest frame can not go (ENOBUFS, EMSGSIZE, ENETDOWN...): drop it.
                droppedSendError += 1
                ring.removeFirst(1)
                if code != lastReportedError {
                    lastReportedError = code
                    warn("send on \(output.interface): \(errorText(code))")
                }
            }
        }
    }

    /// The counters as one line.
    var summary: String {
        "\(name): forwarded \(forwarded) frames (\(forwardedBytes) bytes), dropped \(dropped) "
            + "(ring full \(droppedRingFull), oversize \(droppedOversize), send errors \(droppedSendError)), "
            + "held \(ring.count), ignored outgoing \(ignoredOutgoing), receive errors \(receiveErrors)"
    }
}

/// A line on standard error through the project's one logging path, prefixed with the
/// program's name.
func warn(_ message: String) {
    Log.write(.notice, "mat-delay: \(message)")
}
