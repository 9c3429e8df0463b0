/// The IPv6 half of the packet path's slot tables; layout, hash policy and the IPv4
/// counterpart are in `MappingSlots.swift`, the C copy in `reference_table.c`.

/// IPv6 key -> IPv6 value slots over one raw, 64-byte aligned allocation; a handle owned
/// by ``MappingTable`` like ``IPv4Slots``.
@usableFromInline
struct IPv6Slots {
    /// `capacity * 4` words: key high, key low, value high, value low; all zero is empty.
    @usableFromInline var slots: UnsafeMutablePointer<UInt64>
    /// `capacity - 1`.
    @usableFromInline var mask: Int
    /// `64 - log2(capacity)`.
    @usableFromInline var shift: UInt64
    /// Per-table hash seed.
    @usableFromInline var seed: UInt64
    /// Parallel record indexes (forward tables only).
    var records: UnsafeMutablePointer<UInt32>?
    /// Occupied slots.
    var count: Int
    /// Rehashes with a new seed at the same capacity since the last growth.
    var reseeds: Int = 0

    /// Words per slot.
    @usableFromInline static var stride: Int { @inline(__always) get { 4 } }

    init(capacity: Int, seed: UInt64, keepsRecords: Bool) {
        precondition(capacity >= SlotPolicy.minimumCapacity && capacity & (capacity - 1) == 0)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity * 32, alignment: 64)
        slots = raw.initializeMemory(as: UInt64.self, repeating: 0, count: capacity * 4)
        if keepsRecords {
            let records = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity)
            records.initialize(repeating: noRecord, count: capacity)
            self.records = records
        } else {
            records = nil
        }
        mask = capacity - 1
        shift = UInt64(64 - capacity.trailingZeroBitCount)
        self.seed = seed
        count = 0
    }

    /// Frees the memory. The handle must not be used afterwards.
    func deallocate() {
        UnsafeMutableRawPointer(slots).deallocate()
        records?.deallocate()
    }

    /// Empties every slot, keeping the allocation and the seed.
    mutating func removeAll() {
        slots.update(repeating: 0, count: capacity * 4)
        records?.update(repeating: noRecord, count: capacity)
        count = 0
    }

    var capacity: Int { mask + 1 }

    /// Bytes allocated for slots and record indexes.
    var allocatedBytes: Int {
        capacity * (32 + (records == nil ? 0 : MemoryLayout<UInt32>.stride))
    }

    /// The key's home slot. The low half is multiplied first so its bits reach the top,
    /// the high half (prefix) is folded in, then a shift-xor and a second multiply carry
    /// the prefix's low bits (subnet ids) up to the bits that pick the slot.
    @inlinable @inline(__always)
    func home(high: UInt64, low: UInt64) -> Int {
        var x = (low ^ seed) &* SlotPolicy.multiplier
        x ^= high
        x ^= x &>> 32
        x = x &* SlotPolicy.multiplier2
        return Int(truncatingIfNeeded: x &>> shift)
    }

    /// The value stored for the key, or nil when absent. The hot path; tests in the same
    /// order as ``IPv4Slots/value(for:)``, for the same reasons.
    @inlinable @inline(__always)
    func value(high: UInt64, low: UInt64) -> IPv6Address? {
        let slots = self.slots
        let mask = self.mask
        var index = home(high: high, low: low)
        while true {
            let slot = slots + (index &<< 2)
            let keyHigh = slot[0], keyLow = slot[1]
            if keyHigh | keyLow == 0 { return nil }
            if (keyHigh ^ high) | (keyLow ^ low) == 0 { return IPv6Address(high: slot[2], low: slot[3]) }
            index = (index &+ 1) & mask
        }
    }

    /// The slot holding the key, if any.
    func find(high: UInt64, low: UInt64) -> Int? {
        guard high | low != 0 else { return nil }
        var index = home(high: high, low: low)
        while true {
            let slot = slots + (index &<< 2)
            if slot[0] == high && slot[1] == low { return index }
            if slot[0] | slot[1] == 0 { return nil }
            index = (index &+ 1) & mask
        }
    }

    /// Value stored in slot `index`.
    func value(at index: Int) -> IPv6Address {
        let slot = slots + (index &<< 2)
        return IPv6Address(high: slot[2], low: slot[3])
    }

    /// Record index stored beside slot `index`.
    func record(at index: Int) -> UInt32 { records![index] }

    /// Overwrites the value of an occupied slot.
    mutating func setValue(_ value: IPv6Address, at index: Int) {
        let slot = slots + (index &<< 2)
        slot[2] = value.high
        slot[3] = value.low
    }

    /// Overwrites the record index of an occupied slot.
    mutating func setRecord(_ record: UInt32, at index: Int) { records![index] = record }

    /// Makes room for `additional` more keys by growing first.
    mutating func reserve(_ additional: Int) {
        if SlotPolicy.needsGrowth(count: count + additional, capacity: capacity) {
            rehash(capacity: SlotPolicy.capacity(for: count + additional), seed: seed)
        }
    }

    /// Inserts a key known to be absent. Room must have been reserved.
    mutating func insertNew(key: IPv6Address, value: IPv6Address, record: UInt32 = noRecord) {
        let distance = place(key: key, value: value, record: record)
        count += 1
        if distance > SlotPolicy.probeLimit { reseed() }
    }

    /// Writes a key into the first free slot of its probe sequence; returns the distance.
    private func place(key: IPv6Address, value: IPv6Address, record: UInt32) -> Int {
        var index = home(high: key.high, low: key.low)
        var distance = 0
        while true {
            let slot = slots + (index &<< 2)
            if slot[0] | slot[1] == 0 {
                slot[0] = key.high
                slot[1] = key.low
                slot[2] = value.high
                slot[3] = value.low
                records?[index] = record
                return distance
            }
            index = (index &+ 1) & mask
            distance += 1
        }
    }

    /// Backward-shift deletion, as in ``IPv4Slots/remove(at:)``.
    mutating func remove(at index: Int) {
        var hole = index
        var next = index
        while true {
            next = (next &+ 1) & mask
            let from = slots + (next &<< 2)
            if from[0] | from[1] == 0 { break }
            let home = home(high: from[0], low: from[1])
            let stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if stays { continue }
            (slots + (hole &<< 2)).update(from: from, count: 4)
            if let records { records[hole] = records[next] }
            hole = next
        }
        (slots + (hole &<< 2)).update(repeating: 0, count: 4)
        records?[hole] = noRecord
        count -= 1
    }

    /// Rebuilds with a new seed, doubling after two reseeds without relief.
    private mutating func reseed() {
        let grow = reseeds >= 2
        let newCapacity = grow ? capacity * 2 : capacity
        let kept = grow ? 0 : reseeds + 1
        rehash(capacity: newCapacity, seed: SlotPolicy.nextSeed(after: seed))
        reseeds = kept
    }

    /// Moves every entry into a fresh allocation of `capacity` slots hashed with `seed`.
    mutating func rehash(capacity newCapacity: Int, seed newSeed: UInt64) {
        var fresh = IPv6Slots(capacity: newCapacity, seed: newSeed, keepsRecords: records != nil)
        for index in 0..<capacity {
            let slot = slots + (index &<< 2)
            if slot[0] | slot[1] == 0 { continue }
            _ = fresh.place(key: IPv6Address(high: slot[0], low: slot[1]),
                            value: IPv6Address(high: slot[2], low: slot[3]),
                            record: records?[index] ?? noRecord)
        }
        fresh.count = count
        deallocate()
        self = fresh
    }

    /// Calls `body` with every occupied slot's key and value.
    func forEach(_ body: (_ key: IPv6Address, _ value: IPv6Address) -> Void) {
        for index in 0..<capacity {
            let slot = slots + (index &<< 2)
            if slot[0] | slot[1] == 0 { continue }
            body(IPv6Address(high: slot[0], low: slot[1]), IPv6Address(high: slot[2], low: slot[3]))
        }
    }

    /// Longest distance of any key from its home slot (tests and diagnostics).
    var longestProbe: Int {
        var longest = 0
        for index in 0..<capacity {
            let slot = slots + (index &<< 2)
            if slot[0] | slot[1] == 0 { continue }
            longest = max(longest, (index &- home(high: slot[0], low: slot[1])) & mask)
        }
        return longest
    }
}
