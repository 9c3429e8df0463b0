/// Keys each due at a time (monotonic milliseconds), taken when due: a min-heap of
/// deadlines with lazy deletion, and the current deadline of each key beside it. Pure.
///
/// The service's timed work per peer (a mapping's refresh, an idle peer's probe, a held
/// peer's wait for the IMS's answer, a keepalive in UDP) walked every peer on every turn
/// to find the few that were due: at 100,000 learned peers that was tens of milliseconds
/// a turn. Here a turn costs O(due · log peers) and the next deadline O(1).
///
/// Rescheduling or removing a key leaves its old heap entry in place, skipped when it
/// comes up (it no longer matches the key's deadline); the heap is rebuilt from the
/// deadlines when such entries outnumber the live ones, so its size stays within twice
/// the keys' (and a constant), amortised O(1) a change.
struct DueQueue<Key: Hashable & Sendable>: Sendable {
    private var deadlines: [Key: UInt64] = [:]
    private var heap: [(at: UInt64, key: Key)] = []

    /// How many keys are scheduled.
    var count: Int { deadlines.count }
    var isEmpty: Bool { deadlines.isEmpty }

    /// When `key` is due; nil when it is not scheduled.
    func deadline(of key: Key) -> UInt64? { deadlines[key] }

    /// The earliest deadline; nil when nothing is scheduled. The heap's top is never a
    /// stale entry (each change drops them from the top), so this is O(1).
    var nextDeadline: UInt64? { heap.first?.at }

    /// `key` is due at `time`, whenever it was due before.
    mutating func schedule(_ key: Key, at time: UInt64) {
        guard deadlines.updateValue(time, forKey: key) != time else { return }
        push((time, key))
        dropStaleTop()
        compactIfSparse()
    }

    /// `key` is no longer due at all.
    mutating func remove(_ key: Key) {
        guard deadlines.removeValue(forKey: key) != nil else { return }
        dropStaleTop()
        compactIfSparse()
    }

    mutating func removeAll() {
        deadlines.removeAll()
        heap.removeAll()
    }

    /// The keys due at `now` (deadline at or before it), earliest first, at most `limit`
    /// of them (the rest stay due); each is unscheduled (the caller schedules it again if
    /// it is to come back).
    mutating func takeDue(now: UInt64, limit: Int = .max) -> [Key] {
        var due: [Key] = []
        while due.count < limit, let top = heap.first, top.at <= now {
            popTop()
            if deadlines[top.key] == top.at {
                deadlines[top.key] = nil
                due.append(top.key)
            }
        }
        dropStaleTop()
        return due
    }

    // MARK: the heap

    private func isCurrent(_ entry: (at: UInt64, key: Key)) -> Bool { deadlines[entry.key] == entry.at }

    private mutating func dropStaleTop() {
        while let top = heap.first, !isCurrent(top) { popTop() }
    }

    /// Rebuilds the heap from the deadlines once stale entries outnumber the live ones.
    private mutating func compactIfSparse() {
        guard heap.count > 2 * deadlines.count + 64 else { return }
        heap = deadlines.map { (at: $0.value, key: $0.key) }
        for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
    }

    private mutating func push(_ entry: (at: UInt64, key: Key)) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].at < heap[parent].at else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].at < heap[smallest].at { smallest = left }
            if right < heap.count && heap[right].at < heap[smallest].at { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
