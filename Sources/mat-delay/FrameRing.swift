/// The frames one direction holds: a FIFO of `capacity` fixed-size slots in one
/// allocation made at start-up, with each frame's length and due time beside it. The
/// packet path allocates nothing; when every slot is taken, new frames are dropped.
final class FrameRing {
    let capacity: Int
    let slotSize: Int
    private let storage: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>
    private let dueTimes: UnsafeMutablePointer<UInt64>
    /// Position of the oldest frame.
    private(set) var head = 0
    private(set) var count = 0

    init(capacity: Int, slotSize: Int) {
        precondition(capacity > 0 && slotSize > 0)
        self.capacity = capacity
        self.slotSize = slotSize
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity * slotSize, alignment: 64)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
        dueTimes = .allocate(capacity: capacity)
        dueTimes.initialize(repeating: 0, count: capacity)
    }

    deinit {
        storage.deallocate()
        lengths.deallocate()
        dueTimes.deallocate()
    }

    var free: Int { capacity - count }
    var isEmpty: Bool { count == 0 }

    /// The ring position `offset` frames after the head (past the tail for offsets >= count).
    @inline(__always)
    func position(_ offset: Int) -> Int {
        let position = head + offset
        return position >= capacity ? position - capacity : position
    }

    @inline(__always)
    func slot(at position: Int) -> UnsafeMutableRawPointer { storage + position * slotSize }

    @inline(__always)
    func length(at position: Int) -> Int { lengths[position] }

    @inline(__always)
    func dueTime(at position: Int) -> UInt64 { dueTimes[position] }

    /// When the oldest frame is due, if any.
    var headDueTime: UInt64? { count == 0 ? nil : dueTimes[head] }

    /// Takes the frame already written into the first free slot (position(count)).
    @inline(__always)
    func append(length: Int, due: UInt64) {
        precondition(count < capacity && length <= slotSize)
        let position = position(count)
        lengths[position] = length
        dueTimes[position] = due
        count += 1
    }

    /// Forgets the `frames` oldest frames (sent, or failed to send).
    @inline(__always)
    func removeFirst(_ frames: Int) {
        precondition(frames <= count)
        head = position(frames)
        count -= frames
    }
}
