#if canImport(Glibc)
import Glibc
#endif
import MATLog
import MATSystem

/// One direction of the wire: frames read from `input` wait in a ring for `delay`
/// nanoseconds, then go out of `output` in the order they came.
///
/// With a bottleneck (`--rate-mbit`), frames first wait in its queue, which sends them
/// into the ring one after the other at the link's rate, in the order its discipline
/// picks (`--qdisc`): each is due `delay` after its last bit left the link.
final class Direction {
    let input: PacketSocket
    let output: PacketSocket
    let delay: UInt64
    let ring: FrameRing
    /// The queue in front of the bottleneck link, if the direction has one.
    let bottleneck: BottleneckQueue?
    /// The link's time per byte on the wire, in nanoseconds.
    private let nanosecondsPerByte: Double
    /// When the link has sent every frame taken off the queue so far.
    private var linkFreeAt: UInt64 = 0
    private let receiveVector: MessageVector
    private let sendVector: MessageVector
    /// The bottleneck's slots handed to the current receive call.
    private let receiveSlots: UnsafeMutablePointer<Int>
    /// Where frames go that have no slot (ring full): read to count them, then forgotten.
    private let scratch: UnsafeMutableRawPointer

    /// How far ahead of the link frames are taken off the bottleneck's queue (a NIC's
    /// transmit ring): a frame of the priority band waits at most this long behind frames
    /// already taken, and the forwarder wakes up about twice per such span, not per frame.
    static let linkLookahead: UInt64 = 1_000_000
    /// With a bottleneck, frames leave the ring up to this much before they are due, so
    /// that frames spaced by the link's rate are sent in batches rather than one per wakeup.
    static let earlySend: UInt64 = 250_000
    /// Per frame on an Ethernet wire beside the frame itself: preamble and start
    /// delimiter (8), frame check sequence (4), the gap between frames (12).
    static let wireOverhead = 24

    /// True after sendmmsg said EAGAIN: wait for POLLOUT on `output` before sending again.
    var waitingForOutput = false

    // Counters, printed at exit.
    private(set) var received: UInt64 = 0
    private(set) var forwarded: UInt64 = 0
    private(set) var forwardedBytes: UInt64 = 0
    private(set) var droppedRingFull: UInt64 = 0
    /// Frames read while every slot of the bottleneck's queue held a frame.
    private(set) var droppedNoQueueSlot: UInt64 = 0
    private(set) var droppedOversize: UInt64 = 0
    private(set) var droppedSendError: UInt64 = 0
    private(set) var ignoredOutgoing: UInt64 = 0
    private(set) var receiveErrors: UInt64 = 0
    private var lastReportedError: Int32 = 0

    var name: String { "\(input.interface) -> \(output.interface)" }
    /// Frames the bottleneck's queue dropped, or had no slot for.
    var droppedQueueFull: UInt64 { (bottleneck?.dropped ?? 0) + droppedNoQueueSlot }
    var dropped: UInt64 { droppedRingFull + droppedOversize + droppedSendError + droppedQueueFull }

    /// `bottleneck`: the queue in front of a link of `rateBitsPerSecond`, or nil for none
    /// (frames go into the ring as they are read).
    init(from input: PacketSocket, to output: PacketSocket, delay: UInt64, slots: Int, slotSize: Int,
         batch: Int, bottleneck: BottleneckQueue? = nil, rateBitsPerSecond: Double = 0) {
        precondition(bottleneck == nil || rateBitsPerSecond > 0, "a bottleneck needs a rate")
        self.input = input
        self.output = output
        self.delay = delay
        self.bottleneck = bottleneck
        nanosecondsPerByte = bottleneck == nil ? 0 : 8e9 / rateBitsPerSecond
        ring = FrameRing(capacity: slots, slotSize: slotSize)
        receiveVector = MessageVector(capacity: batch)
        sendVector = MessageVector(capacity: batch)
        receiveSlots = .allocate(capacity: batch)
        receiveSlots.initialize(repeating: -1, count: batch)
        scratch = .allocate(byteCount: slotSize, alignment: 64)
    }

    deinit {
        scratch.deallocate()
        receiveSlots.deallocate()
    }

    /// When the forwarder must next run this direction (`flush`, `transmit`) without
    /// anything arriving: the oldest frame of the ring coming due (unless the output is
    /// full), or the link wanting more frames from the bottleneck's queue.
    var nextWake: UInt64? {
        var next: UInt64?
        if !waitingForOutput, let due = ring.headDueTime {
            next = bottleneck == nil ? due : (due > Self.earlySend ? due - Self.earlySend : 0)
        }
        if let queue = bottleneck, !queue.isEmpty, ring.free > 0 {
            let refill = linkFreeAt > Self.linkLookahead / 2 ? linkFreeAt - Self.linkLookahead / 2 : 0
            next = min(next ?? refill, refill)
        }
        return next
    }

    /// Reads what `input` has, at most `rounds` batches, into the ring (or, when the ring
    /// is full, into the scratch slot, counting drops). Each frame is due `delay` after
    /// its batch was read.
    func receive(rounds: Int = 8) {
        if let queue = bottleneck {
            receive(into: queue, rounds: rounds)
            return
        }
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
                receiveFailed(errno)
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

    /// `receive` with a bottleneck: frames go into free slots of its queue (when it has
    /// none, into the scratch slot, counted as dropped), classified for its discipline.
    private func receive(into queue: BottleneckQueue, rounds: Int) {
        for _ in 0..<rounds {
            var wanted = 0
            while wanted < receiveVector.capacity, let slot = queue.takeSlot() {
                receiveSlots[wanted] = slot
                receiveVector.set(wanted, buffer: queue.slot(slot), length: queue.slotSize, receiving: true)
                wanted += 1
            }
            let toQueue = wanted > 0
            if !toQueue {
                wanted = receiveVector.capacity
                for index in 0..<wanted {
                    receiveSlots[index] = -1
                    receiveVector.set(index, buffer: scratch, length: queue.slotSize, receiving: true)
                }
            }
            let got = MultipleMessages.receive(input.fd, receiveVector.raw, count: wanted, flags: Int32(MSG_DONTWAIT | MSG_TRUNC))
            let taken = max(0, Int(got))
            for index in 0..<taken {
                let slot = receiveSlots[index]
                if receiveVector.packetType(index) == Kernel.packetOutgoing {
                    ignoredOutgoing += 1
                    if slot >= 0 { queue.returnSlot(slot) }
                    continue
                }
                received += 1
                let length = receiveVector.receivedLength(index)
                if length > queue.slotSize || receiveVector.wasTruncated(index) {
                    droppedOversize += 1
                    if slot >= 0 { queue.returnSlot(slot) }
                    continue
                }
                guard slot >= 0 else {
                    droppedNoQueueSlot += 1
                    continue
                }
                queue.enqueue(slot: slot, length: length, as: FrameClass(frame: queue.slot(slot), length: length))
            }
            for index in taken..<wanted where receiveSlots[index] >= 0 { queue.returnSlot(receiveSlots[index]) }
            if got < 0 {
                receiveFailed(errno)
                return
            }
            if taken < wanted { return }
        }
    }

    /// A receive that failed with `code`: counted, unless there was just nothing to read.
    private func receiveFailed(_ code: Int32) {
        if code == EAGAIN || code == EWOULDBLOCK || code == EINTR { return }
        receiveErrors += 1
        report(code, "receive on \(input.interface)")
    }

    /// Warns about `code` once while it repeats, so a failing link does not flood the log.
    private func report(_ code: Int32, _ what: String) {
        guard code != lastReportedError else { return }
        lastReportedError = code
        warn("\(what): \(errorText(code))")
    }

    /// Puts frames from the bottleneck's queue on the link: in the discipline's order,
    /// each starting when the one before it has left (at the link's rate), and due at the
    /// output `delay` after its last bit, until the link is busy `linkLookahead` ahead.
    func transmit(now: UInt64) {
        guard let queue = bottleneck else { return }
        while ring.free > 0, linkFreeAt <= now &+ Self.linkLookahead, let slot = queue.dequeue() {
            let length = queue.length(of: slot)
            let start = max(linkFreeAt, now)
            let end = start &+ UInt64(Double(length + Self.wireOverhead) * nanosecondsPerByte)
            ring.slot(at: ring.position(ring.count)).copyMemory(from: queue.slot(slot), byteCount: length)
            ring.append(length: length, due: end &+ delay)
            linkFreeAt = end
            queue.returnSlot(slot)
        }
    }

    /// Sends every frame due by `now`, oldest first, in batches. Stops early when the
    /// socket would block (then `waitingForOutput` is set).
    func flush(now: UInt64) {
        let now = bottleneck == nil ? now : now &+ Self.earlySend
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
                report(code, "send on \(output.interface)")
            }
        }
    }

    /// The counters as one line.
    var summary: String {
        "\(name): forwarded \(forwarded) frames (\(forwardedBytes) bytes), dropped \(dropped) "
            + "(ring full \(droppedRingFull), oversize \(droppedOversize), send errors \(droppedSendError)"
            + (bottleneck.map { ", queue full \(droppedQueueFull); queue peak \($0.peakBytes) bytes" } ?? "") + "), "
            + "held \(ring.count + (bottleneck?.count ?? 0)), ignored outgoing \(ignoredOutgoing), receive errors \(receiveErrors)"
    }
}

/// A line on standard error through the project's one logging path, prefixed with the
/// program's name.
func warn(_ message: String) {
    Log.write(.notice, "mat-delay: \(message)")
}
