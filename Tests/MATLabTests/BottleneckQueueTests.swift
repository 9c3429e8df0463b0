@testable import mat_delay
import Testing

/// The delay element's queue disciplines (`mat-delay --qdisc`) as pure logic: which frame
/// leaves next and which is dropped, on frames built here. No root needed; what they do to
/// real traffic is `DelayElementTests.aLinksQueueDisciplineDecidesWhoWaits`.
@Suite struct BottleneckQueueTests {
    /// An Ethernet frame of `length` bytes: IPv4 UDP from 192.0.2.`source`:`port` with
    /// TOS `tos`, or IPv6 with that traffic class.
    static func frame(length: Int = 1_000, tos: UInt8 = 0, source: UInt8 = 1, port: UInt16 = 5000,
                      ipv6: Bool = false) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        bytes[12] = ipv6 ? 0x86 : 0x08
        bytes[13] = ipv6 ? 0xdd : 0x00
        let ip = 14
        if ipv6 {
            bytes[ip] = 0x60 | tos >> 4
            bytes[ip + 1] = tos << 4
            bytes[ip + 6] = 17
            bytes[ip + 8] = 0x20
            bytes[ip + 23] = source
            bytes[ip + 40] = UInt8(port >> 8)
            bytes[ip + 41] = UInt8(port & 0xff)
        } else {
            bytes[ip] = 0x45
            bytes[ip + 1] = tos
            bytes[ip + 9] = 17
            bytes[ip + 12] = 192
            bytes[ip + 13] = 0
            bytes[ip + 14] = 2
            bytes[ip + 15] = source
            bytes[ip + 20] = UInt8(port >> 8)
            bytes[ip + 21] = UInt8(port & 0xff)
        }
        return bytes
    }

    /// Queues `bytes` (its first byte past the headers rewritten to `tag`, to tell frames
    /// apart); false when no slot was free.
    @discardableResult
    static func offer(_ queue: BottleneckQueue, _ bytes: [UInt8], tag: UInt8) -> Bool {
        guard let slot = queue.takeSlot() else { return false }
        var copy = bytes
        copy[copy.count - 1] = tag
        copy.withUnsafeBytes { queue.slot(slot).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let frameClass = copy.withUnsafeBytes { FrameClass(frame: $0.baseAddress!, length: $0.count) }
        queue.enqueue(slot: slot, length: copy.count, as: frameClass)
        return true
    }

    /// The tags of every frame, in the order the queue gives them; slots go back.
    static func drain(_ queue: BottleneckQueue) -> [UInt8] {
        var tags: [UInt8] = []
        while let slot = queue.dequeue() {
            tags.append(queue.slot(slot).load(fromByteOffset: queue.length(of: slot) - 1, as: UInt8.self))
            queue.returnSlot(slot)
        }
        return tags
    }

    @Test func framesAreClassifiedByTheirDSCPAndFlow() {
        func classOf(_ bytes: [UInt8]) -> FrameClass {
            bytes.withUnsafeBytes { FrameClass(frame: $0.baseAddress!, length: $0.count) }
        }
        for ipv6 in [false, true] {
            #expect(classOf(Self.frame(tos: 0xc0, ipv6: ipv6)).isNetworkControl, "CS6, ipv6 \(ipv6)")
            #expect(classOf(Self.frame(tos: 0xe0, ipv6: ipv6)).isNetworkControl, "CS7")
            #expect(classOf(Self.frame(tos: 0xb8, ipv6: ipv6)).isNetworkControl, "EF")
            #expect(classOf(Self.frame(tos: 0xc1, ipv6: ipv6)).isNetworkControl, "CS6 with an ECN bit")
            #expect(!classOf(Self.frame(tos: 0, ipv6: ipv6)).isNetworkControl, "best effort")
            #expect(!classOf(Self.frame(tos: 0xa0, ipv6: ipv6)).isNetworkControl, "CS5")
            // Flows: the same addresses and ports hash alike, another port or source not.
            #expect(classOf(Self.frame(ipv6: ipv6)).flow == classOf(Self.frame(length: 200, ipv6: ipv6)).flow)
            #expect(classOf(Self.frame(ipv6: ipv6)).flow != classOf(Self.frame(port: 5001, ipv6: ipv6)).flow)
            #expect(classOf(Self.frame(ipv6: ipv6)).flow != classOf(Self.frame(source: 2, ipv6: ipv6)).flow)
        }
        // Untrusted lengths: a frame cut short anywhere is read without a trap, and a cut
        // IP header is best effort.
        for ipv6 in [false, true] {
            let whole = Self.frame(tos: 0xc0, ipv6: ipv6)
            for length in 0..<100 {
                let frameClass = whole.withUnsafeBytes { FrameClass(frame: $0.baseAddress!, length: length) }
                #expect(frameClass.isNetworkControl == (length >= (ipv6 ? 54 : 34)), "length \(length), ipv6 \(ipv6)")
            }
        }
    }

    @Test func fifoKeepsTheOrderAndDropsWhatDoesNotFit() {
        let queue = BottleneckQueue(discipline: .fifo, limitBytes: 3_000, slots: 16, slotSize: 2_048)
        Self.offer(queue, Self.frame(), tag: 1)
        Self.offer(queue, Self.frame(tos: 0xc0), tag: 2)
        Self.offer(queue, Self.frame(), tag: 3)
        Self.offer(queue, Self.frame(tos: 0xc0), tag: 4)  // 4,000 bytes: over the limit
        #expect(queue.dropped == 1 && queue.count == 3 && queue.bytes == 3_000)
        #expect(Self.drain(queue) == [1, 2, 3])
        #expect(queue.freeSlots == 16, "every slot went back")
    }

    @Test func prioSendsNetworkControlFirstEachBandWithItsOwnRoom() {
        let queue = BottleneckQueue(discipline: .prio, limitBytes: 3_000, slots: 16, slotSize: 2_048)
        for tag in UInt8(1)...3 { Self.offer(queue, Self.frame(), tag: tag) }
        Self.offer(queue, Self.frame(), tag: 4)  // the bulk band is full
        Self.offer(queue, Self.frame(tos: 0xc0), tag: 10)
        Self.offer(queue, Self.frame(tos: 0xb8, ipv6: true), tag: 11)
        #expect(queue.dropped == 1)
        #expect(Self.drain(queue) == [10, 11, 1, 2, 3])
        // A control frame that comes while bulk waits goes next.
        Self.offer(queue, Self.frame(), tag: 1)
        Self.offer(queue, Self.frame(), tag: 2)
        let first = queue.dequeue()!
        queue.returnSlot(first)
        Self.offer(queue, Self.frame(tos: 0xc0), tag: 12)
        #expect(Self.drain(queue) == [12, 2])
    }

    @Test func fqServesANewFlowBeforeTheBacklogOfAnOldOne() {
        let queue = BottleneckQueue(discipline: .fq, limitBytes: 100_000, slots: 128, slotSize: 2_048)
        // Frames of one quantum each: a turn of the bulk flow is one frame.
        for tag in UInt8(1)...20 { Self.offer(queue, Self.frame(length: BottleneckQueue.quantum, port: 1), tag: tag) }
        // The bulk flow is served its turn; then a sparse flow arrives.
        let first = queue.dequeue()!
        queue.returnSlot(first)
        Self.offer(queue, Self.frame(length: 100, port: 7540), tag: 100)
        let order = Self.drain(queue)
        #expect(order.first == 100, "\(order)")
        #expect(order.dropFirst() == ArraySlice(UInt8(2)...20), "the bulk flow keeps its order: \(order)")
    }

    @Test func fqSharesTheLinkByBytesBetweenBusyFlows() {
        let queue = BottleneckQueue(discipline: .fq, limitBytes: 1_000_000, slots: 512, slotSize: 2_048)
        // Flow A: 1,500-byte frames; flow B: 500-byte frames; both backlogged.
        for _ in 0..<100 {
            Self.offer(queue, Self.frame(length: 1_500, port: 1), tag: 1)
            for _ in 0..<3 { Self.offer(queue, Self.frame(length: 500, port: 2), tag: 2) }
        }
        var bytes: [UInt8: Int] = [1: 0, 2: 0]
        for _ in 0..<60 {
            let slot = queue.dequeue()!
            bytes[queue.slot(slot).load(fromByteOffset: queue.length(of: slot) - 1, as: UInt8.self), default: 0] += queue.length(of: slot)
            queue.returnSlot(slot)
        }
        let a = bytes[1]!, b = bytes[2]!
        #expect(abs(a - b) <= 3_000, "bytes served: A \(a), B \(b)")
    }

    @Test func fqDropsFromTheFattestFlowNotTheNewcomer() {
        let queue = BottleneckQueue(discipline: .fq, limitBytes: 10_000, slots: 64, slotSize: 2_048)
        for tag in UInt8(1)...10 { Self.offer(queue, Self.frame(port: 1), tag: tag) }
        #expect(queue.dropped == 0 && queue.bytes == 10_000)
        Self.offer(queue, Self.frame(length: 100, port: 7540), tag: 100)
        #expect(queue.dropped == 1 && queue.bytes <= 10_000)
        let order = Self.drain(queue)
        #expect(order.contains(100), "\(order)")
        #expect(!order.contains(1), "the bulk flow's oldest frame went: \(order)")
        #expect(queue.freeSlots == 64)
    }

    @Test func slotsRunOutBeforeBytes() {
        let queue = BottleneckQueue(discipline: .fifo, limitBytes: 1 << 20, slots: 4, slotSize: 2_048)
        for tag in UInt8(1)...4 { #expect(Self.offer(queue, Self.frame(length: 64), tag: tag)) }
        #expect(!Self.offer(queue, Self.frame(length: 64), tag: 5))
        #expect(Self.drain(queue) == [1, 2, 3, 4])
    }
}
