/// The packet path's half of the mapping table: open-addressing hash tables over raw
/// memory, one per address family and direction. `Sources/CReference/reference_table.c`
/// is a line-for-line C copy of the lookup (same hash, same slot layout, same probing);
/// keep the two in step.
///
/// Layout (see docs/mapping-table.md):
/// - IPv4 slot: one `UInt64`, key in bits 0-31, value in bits 32-63. Eight slots per
///   cache line, and one load answers "is this my key, and what is the value".
/// - IPv6 slot: four `UInt64` (key high, key low, value high, value low), 32 bytes, so a
///   slot never straddles a cache line (the array is 64-byte aligned).
/// - An all-zero slot is empty. That is why the unspecified address is refused as a key
///   or value: a lookup of key 0 lands on an empty slot and reads value 0, which means
///   "absent", with no extra branch.
/// - Capacity is a power of two; the home slot is the top bits of a seeded multiplicative
///   hash (Fibonacci hashing), probing is linear, and removal shifts the following
///   cluster back (no tombstones, so heavy churn never degrades lookups).
/// - The forward tables keep, beside the slots, a parallel array of record indexes into
///   the control plane's record array; lookups never touch it.

/// Largest load factor, as a fraction numerator / 2^loadShift: 1/2. Misses are the common
/// case on the receive path (most inbound packets come from non-MAT hosts), and linear
/// probing's expected miss cost is 2.5 slots at 1/2 against 8.5 at 3/4.
@usableFromInline
enum SlotPolicy {
    /// Smallest table allocated, in slots.
    static let minimumCapacity = 16
    /// A table grows when `count * 2 > capacity` after an insert would happen.
    @inline(__always)
    static func needsGrowth(count: Int, capacity: Int) -> Bool { count &* 2 > capacity }
    /// Smallest power-of-two capacity that holds `count` keys within the load factor.
    static func capacity(for count: Int) -> Int {
        var capacity = minimumCapacity
        while needsGrowth(count: count, capacity: capacity) { capacity &*= 2 }
        return capacity
    }
    /// An insert that lands further than this from its home slot triggers a rehash with a
    /// fresh seed. Random keys at load 1/2 stay far below it (see the tests); a run that
    /// long means the keys collide under this seed, by bad luck or by someone's design.
    static let probeLimit = 96
    /// Fibonacci hashing multiplier, 2^64 / golden ratio rounded to odd.
    @usableFromInline static var multiplier: UInt64 {
        @inline(__always) get { 0x9E37_79B9_7F4A_7C15 }
    }
    /// Second multiplier of the IPv6 mix (from SplitMix64's finalizer).
    @usableFromInline static var multiplier2: UInt64 {
        @inline(__always) get { 0xBF58_476D_1CE4_E5B9 }
    }
    /// Derives the next seed from the current one (SplitMix64 step), so reseeding needs no
    /// system randomness and a table created with a fixed seed stays reproducible.
    static func nextSeed(after seed: UInt64) -> UInt64 {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }
}

/// Record index stored for slots that have none (reverse tables keep no record index).
@usableFromInline let noRecord: UInt32 = .max

// MARK: - IPv4

/// IPv4 key -> IPv4 value slots over one raw allocation.
///
/// A plain handle (pointers and sizes): ``MappingTable``, which is non-copyable, is the
/// single owner and frees the memory in its deinit. The handle is kept copyable and
/// deinit-free on purpose: with a deinit of its own, Swift 6.3's cross-module
/// optimization crashes the compiler when it serializes MappingTable's setters.
@usableFromInline
struct IPv4Slots {
    /// `capacity` slots, each `UInt64(value) << 32 | UInt64(key)`; 0 is empty.
    @usableFromInline var slots: UnsafeMutablePointer<UInt64>
    /// `capacity - 1`, for wrapping the probe.
    @usableFromInline var mask: Int
    /// `64 - log2(capacity)`: the hash's top bits are the home slot.
    @usableFromInline var shift: UInt64
    /// Per-table hash seed, so which keys collide is not known in advance.
    @usableFromInline var seed: UInt64
    /// Parallel record indexes (forward tables only), moved together with the slots.
    var records: UnsafeMutablePointer<UInt32>?
    /// Occupied slots.
    var count: Int
    /// Rehashes with a new seed at the same capacity since the last growth.
    var reseeds: Int = 0

    init(capacity: Int, seed: UInt64, keepsRecords: Bool) {
        precondition(capacity >= SlotPolicy.minimumCapacity && capacity & (capacity - 1) == 0)
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
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
        slots.deallocate()
        records?.deallocate()
    }

    /// Empties every slot, keeping the allocation and the seed.
    mutating func removeAll() {
        slots.update(repeating: 0, count: capacity)
        records?.update(repeating: noRecord, count: capacity)
        count = 0
    }

    var capacity: Int { mask + 1 }

    /// Bytes allocated for slots and record indexes.
    var allocatedBytes: Int {
        capacity * (MemoryLayout<UInt64>.stride + (records == nil ? 0 : MemoryLayout<UInt32>.stride))
    }

    /// The key's home slot.
    @inlinable @inline(__always)
    func home(_ key: UInt32) -> Int {
        Int(truncatingIfNeeded: ((UInt64(key) ^ seed) &* SlotPolicy.multiplier) &>> shift)
    }

    /// The value stored for `key`, or nil when absent. The hot path: one hash, usually one
    /// load, no allocation, no reference counting.
    ///
    /// The empty test comes first so that key 0 (never stored) ends at an empty slot, and
    /// so hit and miss leave the loop by different exits: the caller's `if let` then needs
    /// no second test of the value.
    @inlinable @inline(__always)
    func value(for key: UInt32) -> UInt32? {
        let slots = self.slots
        let mask = self.mask
        var index = home(key)
        while true {
            let slot = slots[index]
            let slotKey = UInt32(truncatingIfNeeded: slot)
            if slotKey == 0 { return nil }
            if slotKey == key { return UInt32(truncatingIfNeeded: slot &>> 32) }
            index = (index &+ 1) & mask
        }
    }

    /// The slot holding `key`, if any.
    func find(_ key: UInt32) -> Int? {
        guard key != 0 else { return nil }
        var index = home(key)
        while true {
            let slotKey = UInt32(truncatingIfNeeded: slots[index])
            if slotKey == key { return index }
            if slotKey == 0 { return nil }
            index = (index &+ 1) & mask
        }
    }

    /// Value stored in slot `index`.
    func value(at index: Int) -> UInt32 { UInt32(truncatingIfNeeded: slots[index] &>> 32) }

    /// Record index stored beside slot `index`.
    func record(at index: Int) -> UInt32 { records![index] }

    /// Overwrites the value of an occupied slot.
    mutating func setValue(_ value: UInt32, at index: Int) {
        slots[index] = UInt64(value) << 32 | (slots[index] & 0xFFFF_FFFF)
    }

    /// Overwrites the record index of an occupied slot.
    mutating func setRecord(_ record: UInt32, at index: Int) { records![index] = record }

    /// Makes room for `additional` more keys by growing first, so callers can validate,
    /// reserve, then mutate without a half-applied change.
    mutating func reserve(_ additional: Int) {
        if SlotPolicy.needsGrowth(count: count + additional, capacity: capacity) {
            rehash(capacity: SlotPolicy.capacity(for: count + additional), seed: seed)
        }
    }

    /// Inserts a key known to be absent. Room must have been reserved.
    mutating func insertNew(key: UInt32, value: UInt32, record: UInt32 = noRecord) {
        let distance = place(key: key, value: value, record: record)
        count += 1
        if distance > SlotPolicy.probeLimit { reseed() }
    }

    /// Writes a key into the first free slot of its probe sequence; returns how far from
    /// home it landed. Does not count it.
    private func place(key: UInt32, value: UInt32, record: UInt32) -> Int {
        var index = home(key)
        var distance = 0
        while slots[index] != 0 {
            index = (index &+ 1) & mask
            distance += 1
        }
        slots[index] = UInt64(value) << 32 | UInt64(key)
        records?[index] = record
        return distance
    }

    /// Empties slot `index`, then walks the rest of its cluster and moves back every entry
    /// whose home does not lie cyclically in (hole, entry], so every remaining key is still
    /// reachable from its home without tombstones.
    mutating func remove(at index: Int) {
        var hole = index
        var next = index
        while true {
            next = (next &+ 1) & mask
            let slot = slots[next]
            if slot == 0 { break }
            let home = home(UInt32(truncatingIfNeeded: slot))
            let stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if stays { continue }
            slots[hole] = slot
            if let records { records[hole] = records[next] }
            hole = next
        }
        slots[hole] = 0
        records?[hole] = noRecord
        count -= 1
    }

    /// Rebuilds at the same capacity with a new seed; after two reseeds without relief the
    /// table doubles instead, which always shortens runs.
    private mutating func reseed() {
        let grow = reseeds >= 2
        let newCapacity = grow ? capacity * 2 : capacity
        let kept = grow ? 0 : reseeds + 1
        rehash(capacity: newCapacity, seed: SlotPolicy.nextSeed(after: seed))
        reseeds = kept
    }

    /// Moves every entry into a fresh allocation of `capacity` slots hashed with `seed`.
    mutating func rehash(capacity newCapacity: Int, seed newSeed: UInt64) {
        var fresh = IPv4Slots(capacity: newCapacity, seed: newSeed, keepsRecords: records != nil)
        for index in 0..<capacity {
            let slot = slots[index]
            if slot == 0 { continue }
            _ = fresh.place(key: UInt32(truncatingIfNeeded: slot),
                            value: UInt32(truncatingIfNeeded: slot &>> 32),
                            record: records?[index] ?? noRecord)
        }
        fresh.count = count
        deallocate()
        self = fresh
    }

    /// Calls `body` with every occupied slot's key and value.
    func forEach(_ body: (_ key: UInt32, _ value: UInt32) -> Void) {
        for index in 0..<capacity where slots[index] != 0 {
            body(UInt32(truncatingIfNeeded: slots[index]), UInt32(truncatingIfNeeded: slots[index] &>> 32))
        }
    }

    /// Longest distance of any key from its home slot (tests and diagnostics).
    var longestProbe: Int {
        var longest = 0
        for index in 0..<capacity where slots[index] != 0 {
            let home = home(UInt32(truncatingIfNeeded: slots[index]))
            longest = max(longest, (index &- home) & mask)
        }
        return longest
    }
}
