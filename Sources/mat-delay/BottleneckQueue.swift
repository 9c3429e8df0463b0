import ArgumentParser

/// How a direction's bottleneck link picks the next frame when frames wait for its rate
/// (`--qdisc`), after the queue disciplines of real routers.
enum QueueDiscipline: String, CaseIterable, ExpressibleByArgument {
    /// One queue, first in, first out: a plain interface queue, where a packet waits
    /// behind everything queued before it.
    case fifo
    /// Strict priority: frames with DSCP EF, CS6 or CS7 go before all others, as in a
    /// router's network-control band (Linux's `prio`, with two bands).
    case prio
    /// A queue per flow (protocol, addresses, ports), served in turn by bytes, a flow
    /// that had nothing queued going before those that had: Linux's default `fq_codel`
    /// without CoDel's early drops.
    case fq
}

/// The frames waiting for one direction's bottleneck link, ordered by a
/// ``QueueDiscipline`` and limited in bytes. Frames live in fixed-size slots allocated
/// at start-up and are linked into their queue by slot index, so the packet path
/// allocates nothing. The time the link takes to send a frame is the caller's (see
/// `Direction`); this type only decides which frame is next and which is dropped:
///
/// - fifo: a frame that does not fit is dropped (tail drop);
/// - prio: the same, each band with the whole limit (Linux's `prio` with a queue per band);
/// - fq: the frame is taken, then the fattest flow loses its oldest frames until the
///   queue fits (as fq_codel drops).
final class BottleneckQueue {
    let discipline: QueueDiscipline
    /// Bytes of frames the queue holds at most (per band for prio).
    let limitBytes: Int
    let slotSize: Int
    let capacity: Int

    /// fq's flow queues: a flow's hash picks one (flows sharing one are served as one).
    static let flowQueues = 1_024
    /// What fq lets a flow send per turn: one full-size frame, fq_codel's default.
    static let quantum = 1_514

    private let storage: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>
    /// Per slot: the next slot of its queue or of the free list; -1 ends a list.
    private let nextSlot: UnsafeMutablePointer<Int32>
    private var freeHead: Int32 = -1
    private(set) var freeSlots = 0

    private let queueCount: Int
    private let heads: UnsafeMutablePointer<Int32>
    private let tails: UnsafeMutablePointer<Int32>
    private let queueBytes: UnsafeMutablePointer<Int>
    // fq's rounds: each flow queue with frames is on the list of new or of old flows.
    private let deficits: UnsafeMutablePointer<Int>
    private let listOfFlow: UnsafeMutablePointer<UInt8>
    private let nextFlow: UnsafeMutablePointer<Int32>
    private var newFlows = FlowList()
    private var oldFlows = FlowList()
    private static let onNoList: UInt8 = 0, onNewList: UInt8 = 1, onOldList: UInt8 = 2

    /// Frames and bytes queued now.
    private(set) var count = 0
    private(set) var bytes = 0
    /// The most bytes ever queued, and the frames dropped for lack of room.
    private(set) var peakBytes = 0
    private(set) var dropped: UInt64 = 0

    init(discipline: QueueDiscipline, limitBytes: Int, slots: Int, slotSize: Int) {
        precondition(limitBytes > 0 && slots > 0 && slotSize > 0)
        self.discipline = discipline
        self.limitBytes = limitBytes
        self.slotSize = slotSize
        capacity = slots
        storage = .allocate(byteCount: slots * slotSize, alignment: 64)
        lengths = .allocate(capacity: slots)
        lengths.initialize(repeating: 0, count: slots)
        nextSlot = .allocate(capacity: slots)
        nextSlot.initialize(repeating: -1, count: slots)
        queueCount = switch discipline {
        case .fifo: 1
        case .prio: 2
        case .fq: Self.flowQueues
        }
        heads = .allocate(capacity: queueCount)
        heads.initialize(repeating: -1, count: queueCount)
        tails = .allocate(capacity: queueCount)
        tails.initialize(repeating: -1, count: queueCount)
        queueBytes = .allocate(capacity: queueCount)
        queueBytes.initialize(repeating: 0, count: queueCount)
        deficits = .allocate(capacity: queueCount)
        deficits.initialize(repeating: 0, count: queueCount)
        listOfFlow = .allocate(capacity: queueCount)
        listOfFlow.initialize(repeating: Self.onNoList, count: queueCount)
        nextFlow = .allocate(capacity: queueCount)
        nextFlow.initialize(repeating: -1, count: queueCount)
        for slot in (0..<slots).reversed() { returnSlot(slot) }
    }

    deinit {
        storage.deallocate()
        lengths.deallocate()
        nextSlot.deallocate()
        heads.deallocate()
        tails.deallocate()
        queueBytes.deallocate()
        deficits.deallocate()
        listOfFlow.deallocate()
        nextFlow.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    func slot(_ index: Int) -> UnsafeMutableRawPointer { storage + index * slotSize }

    @inline(__always)
    func length(of slot: Int) -> Int { lengths[slot] }

    /// A free slot to receive a frame into, or nil when every slot holds one.
    func takeSlot() -> Int? {
        guard freeHead >= 0 else { return nil }
        let slot = Int(freeHead)
        freeHead = nextSlot[slot]
        freeSlots -= 1
        return slot
    }

    /// Gives back a slot: unused after a receive, or its frame sent or copied out.
    func returnSlot(_ slot: Int) {
        nextSlot[slot] = freeHead
        freeHead = Int32(slot)
        freeSlots += 1
    }

    /// Queues the frame of `length` bytes in `slot` (taken with ``takeSlot()``), or
    /// drops a frame to make room (its slot goes back to the free list).
    func enqueue(slot: Int, length: Int, as frameClass: FrameClass) {
        let queue: Int = switch discipline {
        case .fifo: 0
        case .prio: frameClass.isNetworkControl ? 0 : 1
        case .fq: Int(frameClass.flow % UInt32(Self.flowQueues))
        }
        if discipline != .fq && queueBytes[queue] + length > limitBytes {
            dropped += 1
            returnSlot(slot)
            return
        }
        lengths[slot] = length
        nextSlot[slot] = -1
        if tails[queue] >= 0 { nextSlot[Int(tails[queue])] = Int32(slot) } else { heads[queue] = Int32(slot) }
        tails[queue] = Int32(slot)
        queueBytes[queue] += length
        count += 1
        bytes += length
        if discipline == .fq {
            if listOfFlow[queue] == Self.onNoList {
                deficits[queue] = Self.quantum
                push(queue, on: &newFlows)
                listOfFlow[queue] = Self.onNewList
            }
            while bytes > limitBytes, let fattest = fattestQueue(), let victim = popHead(of: fattest) {
                dropped += 1
                returnSlot(victim)
            }
        }
        peakBytes = max(peakBytes, bytes)
    }

    /// The next frame's slot by the discipline, taken off its queue; the caller sends or
    /// copies the frame and gives the slot back with ``returnSlot(_:)``. Nil when empty.
    func dequeue() -> Int? {
        guard count > 0 else { return nil }
        switch discipline {
        case .fifo:
            return popHead(of: 0)
        case .prio:
            return popHead(of: heads[0] >= 0 ? 0 : 1)
        case .fq:
            return dequeueFairly()
        }
    }

    /// fq_codel's round: new flows first; a flow whose turn's bytes are spent goes to
    /// the end of the old flows with a new quantum; a new flow found empty goes there
    /// once more (so a flow cannot stay new by sending one frame at a time), an old one
    /// leaves the rounds.
    private func dequeueFairly() -> Int? {
        while true {
            let fromNew = newFlows.head >= 0
            let flow: Int
            if fromNew {
                flow = Int(newFlows.head)
            } else if oldFlows.head >= 0 {
                flow = Int(oldFlows.head)
            } else {
                return nil
            }
            if deficits[flow] <= 0 {
                deficits[flow] += Self.quantum
                _ = fromNew ? pop(from: &newFlows) : pop(from: &oldFlows)
                push(flow, on: &oldFlows)
                listOfFlow[flow] = Self.onOldList
                continue
            }
            guard let slot = popHead(of: flow) else {
                _ = fromNew ? pop(from: &newFlows) : pop(from: &oldFlows)
                if fromNew && oldFlows.head >= 0 {
                    push(flow, on: &oldFlows)
                    listOfFlow[flow] = Self.onOldList
                } else {
                    listOfFlow[flow] = Self.onNoList
                }
                continue
            }
            deficits[flow] -= lengths[slot]
            return slot
        }
    }

    /// Takes the oldest frame off `queue`.
    private func popHead(of queue: Int) -> Int? {
        let head = heads[queue]
        guard head >= 0 else { return nil }
        let slot = Int(head)
        heads[queue] = nextSlot[slot]
        if heads[queue] < 0 { tails[queue] = -1 }
        queueBytes[queue] -= lengths[slot]
        count -= 1
        bytes -= lengths[slot]
        return slot
    }

    /// The flow queue holding the most bytes (fq's victim when the queue is over its limit).
    private func fattestQueue() -> Int? {
        var fattest: Int?
        var most = 0
        for queue in 0..<queueCount where queueBytes[queue] > most {
            most = queueBytes[queue]
            fattest = queue
        }
        return fattest
    }

    private func push(_ flow: Int, on list: inout FlowList) {
        nextFlow[flow] = -1
        if list.tail >= 0 { nextFlow[Int(list.tail)] = Int32(flow) } else { list.head = Int32(flow) }
        list.tail = Int32(flow)
    }

    private func pop(from list: inout FlowList) -> Int? {
        guard list.head >= 0 else { return nil }
        let flow = Int(list.head)
        list.head = nextFlow[flow]
        if list.head < 0 { list.tail = -1 }
        return flow
    }
}

/// A list of fq's flow queues, linked through `nextFlow`.
private struct FlowList {
    var head: Int32 = -1
    var tail: Int32 = -1
}
