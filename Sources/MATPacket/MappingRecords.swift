/// The control half's storage behind ``MappingTable``: one compact record per mapping, per
/// address family, and the binding lists of the few mappings with more than one MoA.
///
/// Laid out for memory (issue 14: under 128 bytes per IPv4 mapping and 192 per IPv6
/// mapping at one million). A mapping's addresses are already in the hot slots: the HoA is
/// its forward key, the preferred MoA the forward value, every MoA a reverse key. So the
/// record of a one-MoA mapping, the common case, keeps only what the slots lack: the HoA
/// (to get from a record back to its forward slot), the sequence, and that binding's
/// priority, flags and expiry. Its address is the forward slot's value, since the only
/// binding is the preferred one. A mapping with two or more MoAs keeps its whole list, in
/// the caller's order, out of line in ``SpilledBindings``; the record then points there.
///
/// Sizes: 32 bytes per IPv4 record, 40 per IPv6 record, against a 40-byte `PeerMapping`
/// plus an 80-byte malloc chunk for its one-element `[MoABinding]` before.
/// No packet ever reads these.
struct MappingRecord<Address: PacketAddress> {
    /// The mapping's sequence, as published by its owner.
    var sequence: UInt64
    /// The only binding's `expiresAt` when the binding is inline; unused otherwise.
    var expiresAt: UInt64
    /// The mapping's HoA, the key of its forward slot.
    var hoa: Address
    /// 0 when the mapping's one binding is stored inline; otherwise 1 + the index of its
    /// binding list in ``SpilledBindings``.
    var spill: UInt32
    /// The only binding's priority when inline.
    var priority: UInt8
    /// The only binding's flags when inline.
    var flags: MappingFlags

    /// A record for `bindings` (validated, non-empty), spilling them when there are two or
    /// more.
    init(hoa: Address, sequence: UInt64, bindings: [MoABinding], spilled: inout SpilledBindings) {
        self.hoa = hoa
        self.sequence = sequence
        expiresAt = 0
        priority = 0
        flags = []
        spill = 0
        setBindings(bindings, sequence: sequence, spilled: &spilled)
    }

    /// Stores `bindings` (validated, non-empty) and `sequence`, reusing or releasing the
    /// record's spilled list as the new count requires.
    mutating func setBindings(_ bindings: [MoABinding], sequence: UInt64, spilled: inout SpilledBindings) {
        self.sequence = sequence
        if bindings.count == 1 {
            spilled.release(spill)
            spill = 0
            let binding = bindings[0]
            expiresAt = binding.expiresAt
            priority = binding.priority
            flags = binding.flags
        } else if spill == 0 {
            spill = spilled.store(bindings)
        } else {
            spilled.update(spill, to: bindings)
        }
    }

    /// The record's bindings; `preferred` is the forward slot's value, which is the address
    /// of an inline binding.
    func bindings(preferred: IPAddress, spilled: SpilledBindings) -> [MoABinding] {
        if spill != 0 { return spilled[spill] }
        return [MoABinding(address: preferred, priority: priority, expiresAt: expiresAt, flags: flags)]
    }

    /// Earliest non-zero `expiresAt` among the bindings, or `.max`.
    func earliestExpiry(spilled: SpilledBindings) -> UInt64 {
        if spill != 0 { return MappingTable.earliestExpiry(of: spilled[spill]) }
        return expiresAt == 0 ? .max : expiresAt
    }
}

/// Binding lists of the mappings with more than one MoA, in a pool whose indexes stay put
/// while records move (removal swaps the last record into the hole; the list stays where
/// it is). Freed entries are reused before the pool grows.
struct SpilledBindings {
    /// The lists; a free entry holds an empty array, which owns no heap.
    var lists: ContiguousArray<[MoABinding]> = []
    /// Indexes of free entries in `lists`.
    var free: [UInt32] = []

    /// The list of reference `spill` (1-based, as records keep it).
    subscript(spill: UInt32) -> [MoABinding] { lists[Int(spill) - 1] }

    /// Keeps `bindings` and returns their 1-based reference.
    mutating func store(_ bindings: [MoABinding]) -> UInt32 {
        if let index = free.popLast() {
            lists[Int(index)] = bindings
            return index + 1
        }
        lists.append(bindings)
        return UInt32(lists.count)
    }

    /// Replaces the list of reference `spill`.
    mutating func update(_ spill: UInt32, to bindings: [MoABinding]) { lists[Int(spill) - 1] = bindings }

    /// Frees the list of reference `spill`; 0 (an inline record) is a no-op.
    mutating func release(_ spill: UInt32) {
        guard spill != 0 else { return }
        lists[Int(spill) - 1] = []
        free.append(spill - 1)
    }

    /// Drops every list.
    mutating func removeAll() {
        lists.removeAll()
        free.removeAll()
    }

    /// Lists in use.
    var count: Int { lists.count - free.count }

    /// Heap held by the pool and its lists, rounded the way glibc malloc rounds requests.
    /// A list shared with a caller's array is counted in full here.
    var heapBytes: Int {
        var bytes = MappingTable.arrayHeapBytes(capacity: lists.capacity, stride: MemoryLayout<[MoABinding]>.stride)
            + MappingTable.arrayHeapBytes(capacity: free.capacity, stride: MemoryLayout<UInt32>.stride)
        for list in lists {
            bytes += MappingTable.arrayHeapBytes(capacity: list.capacity, stride: MemoryLayout<MoABinding>.stride)
        }
        return bytes
    }
}
