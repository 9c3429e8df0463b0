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
/// the caller's order, out of line in ``SpilledBindings`` (16 bytes a binding for IPv4, 32
/// for IPv6); the record then points there.
///
/// Sizes: 24 bytes per IPv4 record, 32 per IPv6 record (sequence, one packed word, HoA),
/// against a 40-byte `PeerMapping` plus an 80-byte malloc chunk for its one-element
/// `[MoABinding]` before. No packet ever reads these.
///
/// The packed word holds the inline binding: expiry in bits 0-46, priority in bits 47-54,
/// flags in bits 55-62, bit 63 clear. A binding that does not fit (an expiry of 2^47 s or
/// more, over four million years of a monotonic clock) is spilled like a longer list, so
/// nothing is ever truncated. With bit 63 set, bits 0-31 are the index of the record's
/// list in ``SpilledBindings``.
struct MappingRecord<Address: PacketAddress> {
    /// The mapping's sequence, as published by its owner.
    var sequence: UInt64
    /// The inline binding or the spilled list's index; see the type's comment.
    private var packed: UInt64
    /// The mapping's HoA, the key of its forward slot.
    var hoa: Address

    private static var spilledBit: UInt64 { 1 << 63 }
    private static var priorityShift: UInt64 { 47 }
    private static var flagsShift: UInt64 { 55 }
    /// Largest expiry the packed word holds.
    static var largestInlineExpiry: UInt64 { 1 << 47 - 1 }

    /// A record for `bindings` (validated, non-empty), spilling them unless there is one
    /// that fits the packed word.
    init(hoa: Address, sequence: UInt64, bindings: [MoABinding], spilled: inout SpilledBindings) {
        self.hoa = hoa
        self.sequence = sequence
        packed = 0
        setBindings(bindings, sequence: sequence, spilled: &spilled)
    }

    /// Index of the record's list in ``SpilledBindings``, or nil when its one binding is
    /// inline.
    var spill: UInt32? {
        packed & Self.spilledBit == 0 ? nil : UInt32(truncatingIfNeeded: packed)
    }

    /// Stores `bindings` (validated, non-empty) and `sequence`, reusing or releasing the
    /// record's spilled list as the new bindings require.
    mutating func setBindings(_ bindings: [MoABinding], sequence: UInt64, spilled: inout SpilledBindings) {
        self.sequence = sequence
        if bindings.count == 1, bindings[0].expiresAt <= Self.largestInlineExpiry {
            if let spill { spilled.release(spill) }
            let binding = bindings[0]
            packed = binding.expiresAt | UInt64(binding.priority) << Self.priorityShift
                | UInt64(binding.flags.rawValue) << Self.flagsShift
        } else if let spill {
            spilled.update(spill, to: Self.words(of: bindings))
        } else {
            packed = Self.spilledBit | UInt64(spilled.store(Self.words(of: bindings)))
        }
    }

    /// `bindings` in the pool's compact form: per binding the expiry, then for IPv4 one
    /// word with the address in bits 32-63, flags in 8-15 and priority in 0-7 (16 bytes a
    /// binding); for IPv6 the address's two words and one with flags and priority (32
    /// bytes). A generic `MoABinding` takes 32 bytes whatever the family.
    static func words(of bindings: [MoABinding]) -> [UInt64] {
        var words: [UInt64] = []
        words.reserveCapacity(bindings.count * (Address.family == .ipv4 ? 2 : 4))
        for binding in bindings {
            let details = UInt64(binding.priority) | UInt64(binding.flags.rawValue) << 8
            words.append(binding.expiresAt)
            switch binding.address {
            case .v4(let address):
                words.append(UInt64(address.value) << 32 | details)
            case .v6(let address):
                words.append(address.high)
                words.append(address.low)
                words.append(details)
            }
        }
        return words
    }

    /// The bindings `words(of:)` encoded.
    static func bindings(of words: [UInt64]) -> [MoABinding] {
        func binding(expiresAt: UInt64, address: IPAddress, details: UInt64) -> MoABinding {
            MoABinding(address: address, priority: UInt8(truncatingIfNeeded: details), expiresAt: expiresAt,
                       flags: MappingFlags(rawValue: UInt8(truncatingIfNeeded: details >> 8)))
        }
        switch Address.family {
        case .ipv4:
            return stride(from: 0, to: words.count, by: 2).map { index in
                binding(expiresAt: words[index], address: .v4(IPv4Address(UInt32(truncatingIfNeeded: words[index + 1] >> 32))),
                        details: words[index + 1])
            }
        case .ipv6:
            return stride(from: 0, to: words.count, by: 4).map { index in
                binding(expiresAt: words[index], address: .v6(IPv6Address(high: words[index + 1], low: words[index + 2])),
                        details: words[index + 3])
            }
        }
    }

    /// Expiry of the inline binding.
    private var inlineExpiry: UInt64 { packed & Self.largestInlineExpiry }

    /// The record's bindings; `preferred` is the forward slot's value, which is the address
    /// of an inline binding.
    func bindings(preferred: IPAddress, spilled: SpilledBindings) -> [MoABinding] {
        if let spill { return Self.bindings(of: spilled[spill]) }
        return [MoABinding(address: preferred, priority: UInt8(truncatingIfNeeded: packed >> Self.priorityShift),
                           expiresAt: inlineExpiry,
                           flags: MappingFlags(rawValue: UInt8(truncatingIfNeeded: packed >> Self.flagsShift)))]
    }

    /// Earliest non-zero `expiresAt` among the bindings, or `.max`.
    func earliestExpiry(spilled: SpilledBindings) -> UInt64 {
        if let spill { return MappingTable.earliestExpiry(of: Self.bindings(of: spilled[spill])) }
        return inlineExpiry == 0 ? .max : inlineExpiry
    }
}

/// Binding lists of the mappings with more than one MoA, in a pool whose indexes stay put
/// while records move (removal swaps the last record into the hole; the list stays where
/// it is). Freed entries are reused before the pool grows.
struct SpilledBindings {
    /// The lists, each in ``MappingRecord``'s compact form (`words(of:)`); a free entry
    /// holds an empty array, which owns no heap.
    var lists: ContiguousArray<[UInt64]> = []
    /// Indexes of free entries in `lists`.
    var free: [UInt32] = []

    /// The list at `index`.
    subscript(index: UInt32) -> [UInt64] { lists[Int(index)] }

    /// Keeps `bindings` and returns their index.
    mutating func store(_ words: [UInt64]) -> UInt32 {
        if let index = free.popLast() {
            lists[Int(index)] = words
            return index
        }
        lists.append(words)
        return UInt32(lists.count - 1)
    }

    /// Replaces the list at `index`.
    mutating func update(_ index: UInt32, to words: [UInt64]) { lists[Int(index)] = words }

    /// Frees the list at `index`.
    mutating func release(_ index: UInt32) {
        lists[Int(index)] = []
        free.append(index)
    }

    /// Drops every list.
    mutating func removeAll() {
        lists.removeAll()
        free.removeAll()
    }

    /// Lists in use.
    var count: Int { lists.count - free.count }

    /// Heap held by the pool and its lists, rounded the way glibc malloc rounds requests.
    var heapBytes: Int {
        var bytes = MappingTable.arrayHeapBytes(capacity: lists.capacity, stride: MemoryLayout<[UInt64]>.stride)
            + MappingTable.arrayHeapBytes(capacity: free.capacity, stride: MemoryLayout<UInt32>.stride)
        for list in lists {
            bytes += MappingTable.arrayHeapBytes(capacity: list.capacity, stride: MemoryLayout<UInt64>.stride)
        }
        return bytes
    }
}
