/// The control-plane machinery behind ``MappingTable``'s public changes: validation, the
/// record array and its index in the forward slots, the reverse index, and the preference
/// rule. None of it runs per packet.
extension MappingTable {
    /// Index of the mapping of `hoa` in its family's record array (`records4` or `records6`).
    func recordIndex(of hoa: IPAddress) -> Int? {
        switch hoa {
        case .v4(let address):
            forward4.find(address.value).map { Int(forward4.record(at: $0)) }
        case .v6(let address):
            forward6.find(high: address.high, low: address.low).map { Int(forward6.record(at: $0)) }
        }
    }

    /// Checks everything that could make `mapping` unusable, before any change.
    func validate(_ mapping: PeerMapping) throws(MappingError) {
        let hoa = mapping.hoa
        if hoa.isUnspecifiedForMapping { throw .unspecifiedAddress(hoa: hoa) }
        if mapping.moas.isEmpty { throw .noMoA(hoa: hoa) }
        if mapping.moas.count > Self.maximumMoAsPerMapping {
            throw .tooManyMoAs(hoa: hoa, count: mapping.moas.count, limit: Self.maximumMoAsPerMapping)
        }
        for (position, binding) in mapping.moas.enumerated() {
            let moa = binding.address
            if moa.family != hoa.family { throw .addressFamilyMismatch(hoa: hoa, moa: moa) }
            if moa.isUnspecifiedForMapping { throw .unspecifiedAddress(hoa: hoa) }
            if mapping.moas[..<position].contains(where: { $0.address == moa }) {
                throw .duplicateMoA(hoa: hoa, moa: moa)
            }
            if let owner = self.hoa(forMoA: moa), owner != hoa {
                throw .moaOwnedByAnotherHoA(moa: moa, owner: owner, hoa: hoa)
            }
        }
    }

    /// Adds a validated mapping of a new HoA.
    mutating func add(_ mapping: PeerMapping) throws(MappingError) {
        guard count < maximumMappings else { throw .tableFull(limit: maximumMappings) }
        let preferred = Self.preferredIndex(of: mapping.moas)
        switch (mapping.hoa, mapping.moas[preferred].address) {
        case let (.v4(hoa), .v4(moa)):
            forward4.reserve(1)
            forward4.insertNew(key: hoa.value, value: moa.value, record: UInt32(records4.count))
            records4.append(MappingRecord(hoa: hoa, sequence: mapping.sequence, bindings: mapping.moas, spilled: &spilled))
        case let (.v6(hoa), .v6(moa)):
            forward6.reserve(1)
            forward6.insertNew(key: hoa, value: moa, record: UInt32(records6.count))
            records6.append(MappingRecord(hoa: hoa, sequence: mapping.sequence, bindings: mapping.moas, spilled: &spilled))
        default:
            preconditionFailure("validated mapping mixes families")
        }
        reserveReverse(mapping.moas, family: mapping.hoa.family)
        for binding in mapping.moas { insertReverse(binding.address, hoa: mapping.hoa) }
        noteExpiries(of: mapping.moas)
    }

    /// Records of `family`.
    func recordCount(_ family: AddressFamily) -> Int {
        switch family {
        case .ipv4: records4.count
        case .ipv6: records6.count
        }
    }

    /// The mapping stored in record `index` of `family`, rebuilt from the record and, for
    /// an inline binding, its address in the forward slot.
    func storedMapping(_ family: AddressFamily, _ index: Int) -> PeerMapping {
        switch family {
        case .ipv4:
            let record = records4[index]
            let moa = IPv4Address(forward4.value(at: forward4.find(record.hoa.value)!))
            return PeerMapping(hoa: .v4(record.hoa), moas: record.bindings(preferred: .v4(moa), spilled: spilled),
                               sequence: record.sequence)
        case .ipv6:
            let record = records6[index]
            let moa = forward6.value(at: forward6.find(high: record.hoa.high, low: record.hoa.low)!)
            return PeerMapping(hoa: .v6(record.hoa), moas: record.bindings(preferred: .v6(moa), spilled: spilled),
                               sequence: record.sequence)
        }
    }

    /// Every stored mapping, in slot order: one sequential pass over each forward slot
    /// array, which holds the HoA, the preferred MoA and the record index side by side, so
    /// nothing is hashed or probed (at 1M mappings about 1.3x as fast as a lookup per
    /// record; the random read of each record is most of what is left).
    func allMappings() -> [PeerMapping] {
        var result: [PeerMapping] = []
        result.reserveCapacity(count)
        for slot in 0..<forward4.capacity where forward4.slots[slot] != 0 {
            let record = records4[Int(forward4.record(at: slot))]
            let moa = IPAddress.v4(IPv4Address(forward4.value(at: slot)))
            result.append(PeerMapping(hoa: .v4(record.hoa), moas: record.bindings(preferred: moa, spilled: spilled),
                                      sequence: record.sequence))
        }
        for slot in 0..<forward6.capacity where forward6.slots[slot &<< 2] | forward6.slots[slot &<< 2 + 1] != 0 {
            let record = records6[Int(forward6.record(at: slot))]
            let moa = IPAddress.v6(forward6.value(at: slot))
            result.append(PeerMapping(hoa: .v6(record.hoa), moas: record.bindings(preferred: moa, spilled: spilled),
                                      sequence: record.sequence))
        }
        return result
    }

    /// Earliest non-zero expiry of record `index` of `family`, or `.max`; reads no slot.
    func recordExpiry(_ family: AddressFamily, _ index: Int) -> UInt64 {
        switch family {
        case .ipv4: records4[index].earliestExpiry(spilled: spilled)
        case .ipv6: records6[index].earliestExpiry(spilled: spilled)
        }
    }

    /// Stores new bindings (validated, non-empty) in record `index` of `family`. The
    /// forward slot is the caller's to update (`setPreferred`).
    mutating func setBindings(_ family: AddressFamily, _ index: Int, _ bindings: [MoABinding], sequence: UInt64) {
        switch family {
        case .ipv4: records4[index].setBindings(bindings, sequence: sequence, spilled: &spilled)
        case .ipv6: records6[index].setBindings(bindings, sequence: sequence, spilled: &spilled)
        }
    }

    /// Removes record `index` of `family` and its slots; the family's last record takes
    /// its place.
    @discardableResult
    mutating func removeRecord(_ family: AddressFamily, at index: Int) -> PeerMapping {
        let removed = storedMapping(family, index)
        for binding in removed.moas { removeReverse(binding.address) }
        switch family {
        case .ipv4:
            let record = records4[index]
            forward4.remove(at: forward4.find(record.hoa.value)!)
            if let spill = record.spill { spilled.release(spill) }
            let last = records4.count - 1
            if index != last {
                records4[index] = records4[last]
                forward4.setRecord(UInt32(index), at: forward4.find(records4[index].hoa.value)!)
                noteRecordMoved(.ipv4, from: last, to: index, hoa: .v4(records4[index].hoa))
            }
            records4.removeLast()
        case .ipv6:
            let record = records6[index]
            forward6.remove(at: forward6.find(high: record.hoa.high, low: record.hoa.low)!)
            if let spill = record.spill { spilled.release(spill) }
            let last = records6.count - 1
            if index != last {
                records6[index] = records6[last]
                let moved = records6[index].hoa
                forward6.setRecord(UInt32(index), at: forward6.find(high: moved.high, low: moved.low)!)
                noteRecordMoved(.ipv6, from: last, to: index, hoa: .v6(moved))
            }
            records6.removeLast()
        }
        return removed
    }

    /// Grows the reverse slots of `family` for `bindings` before any is inserted.
    mutating func reserveReverse(_ bindings: [MoABinding], family: AddressFamily) {
        switch family {
        case .ipv4: reverse4.reserve(bindings.count)
        case .ipv6: reverse6.reserve(bindings.count)
        }
    }

    /// Adds `moa -> hoa` to the reverse index; room must be reserved and `moa` absent.
    mutating func insertReverse(_ moa: IPAddress, hoa: IPAddress) {
        switch (moa, hoa) {
        case let (.v4(moa), .v4(hoa)): reverse4.insertNew(key: moa.value, value: hoa.value)
        case let (.v6(moa), .v6(hoa)): reverse6.insertNew(key: moa, value: hoa)
        default: preconditionFailure("validated mapping mixes families")
        }
    }

    /// Drops `moa` from the reverse index.
    mutating func removeReverse(_ moa: IPAddress) {
        switch moa {
        case .v4(let moa):
            if let slot = reverse4.find(moa.value) { reverse4.remove(at: slot) }
        case .v6(let moa):
            if let slot = reverse6.find(high: moa.high, low: moa.low) { reverse6.remove(at: slot) }
        }
    }

    /// Writes the preferred MoA of a stored mapping into its forward slot.
    mutating func setPreferred(of mapping: PeerMapping) {
        let preferred = mapping.moas[Self.preferredIndex(of: mapping.moas)].address
        switch (mapping.hoa, preferred) {
        case let (.v4(hoa), .v4(moa)): forward4.setValue(moa.value, at: forward4.find(hoa.value)!)
        case let (.v6(hoa), .v6(moa)): forward6.setValue(moa, at: forward6.find(high: hoa.high, low: hoa.low)!)
        default: preconditionFailure("validated mapping mixes families")
        }
    }

    /// Lowers `earliestExpiry` to cover `bindings`.
    mutating func noteExpiries(of bindings: [MoABinding]) {
        earliestExpiry = min(earliestExpiry, Self.earliestExpiry(of: bindings))
    }

    /// The binding that carries traffic: reachable before not yet reachable, then lowest
    /// priority, then first in the list. Non-empty input.
    static func preferredIndex(of bindings: [MoABinding]) -> Int {
        var best = 0
        for index in bindings.indices.dropFirst() where isBetter(bindings[index], than: bindings[best]) {
            best = index
        }
        return best
    }

    /// Strict order behind `preferredIndex`; ties keep the earlier binding.
    static func isBetter(_ a: MoABinding, than b: MoABinding) -> Bool {
        let aReachable = a.flags.contains(.reachable), bReachable = b.flags.contains(.reachable)
        if aReachable != bReachable { return aReachable }
        return a.priority < b.priority
    }

    /// Earliest non-zero `expiresAt` among `bindings`, or `.max`.
    static func earliestExpiry(of bindings: [MoABinding]) -> UInt64 {
        var earliest = UInt64.max
        for binding in bindings where binding.expiresAt != 0 { earliest = min(earliest, binding.expiresAt) }
        return earliest
    }

    /// Heap held by the control half: both record arrays and the spilled binding lists,
    /// estimated from capacities and glibc's chunk rounding.
    func controlBytes() -> Int {
        Self.arrayHeapBytes(capacity: records4.capacity, stride: MemoryLayout<MappingRecord<IPv4Address>>.stride)
            + Self.arrayHeapBytes(capacity: records6.capacity, stride: MemoryLayout<MappingRecord<IPv6Address>>.stride)
            + spilled.heapBytes
    }

    /// Heap of a Swift array buffer of `capacity` elements of `stride` bytes (a 32-byte
    /// header before the elements); 0 for capacity 0, which uses the shared empty buffer.
    static func arrayHeapBytes(capacity: Int, stride: Int) -> Int {
        capacity == 0 ? 0 : mallocChunk(32 + capacity * stride)
    }

    /// Size of the glibc malloc chunk serving a request of `bytes` (8-byte header, 16-byte
    /// granularity, 32-byte minimum); approximate for the large, mmap-served record arrays.
    static func mallocChunk(_ bytes: Int) -> Int { max(32, (bytes + 8 + 15) & ~15) }

    /// Test and diagnostic view of the slot tables.
    var slotStatistics: (capacity4: Int, capacity6: Int, longestProbe: Int) {
        (forward4.capacity, forward6.capacity,
         max(forward4.longestProbe, reverse4.longestProbe, forward6.longestProbe, reverse6.longestProbe))
    }
}

extension IPAddress {
    /// `0.0.0.0` or `::`, which mark empty slots and cannot be mapped.
    var isUnspecifiedForMapping: Bool {
        switch self {
        case .v4(let address): address.value == 0
        case .v6(let address): address.high | address.low == 0
        }
    }
}
