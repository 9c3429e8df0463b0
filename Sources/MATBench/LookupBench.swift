#if canImport(Glibc)
import Glibc
#endif
import CReference
@_spi(Benchmark) import MATPacket

/// Mapping-table lookups at 1,000,000 mappings per family: the Swift table's hot-path
/// lookups against the C reference of the same algorithm (`reference_table.c`), in the same
/// process, both probing the same slot arrays (which the C reference, built from the same
/// keys with the same capacities and hash seeds, must reproduce byte for byte).
///
/// Also prints what the Swift table costs per mapping at that size, presized, grown and
/// with two MoAs per mapping: the exact raw-slot bytes, the table's own estimate of its
/// records, and the heap (`mallinfo2`) and resident-set growth measured while the table is
/// built.
func runLookupBenchmarks() {
    let mappings = 1_000_000
    let lookups = 1_000_000
    var random = LookupRandom(seed: 0x4D41_545F_4C4F_4F4B)

    // IPv4: HoAs drawn from 10.0.0.0/8, MoAs from 100.64.0.0/10 (no traffic is sent).
    let hoas4 = distinctValues(mappings, using: &random) { UInt32(0x0A00_0000) | UInt32(truncatingIfNeeded: $0.next()) & 0x00FF_FFFF }
    let moas4 = distinctValues(mappings, using: &random) { UInt32(0x6440_0000) | UInt32(truncatingIfNeeded: $0.next()) & 0x003F_FFFF }
    let mapping4 = { (index: Int) in
        PeerMapping(hoa: .v4(IPv4Address(hoas4.values[index])), moas: [
            MoABinding(address: .v4(IPv4Address(moas4.values[index])), priority: 1, flags: [.confirmed, .reachable]),
        ], sequence: 1)
    }
    // IPv6: HoAs under 2001:db8:1::/48, MoAs under 2001:db8:2::/48, random below the /48.
    let hoas6 = distinctValues(mappings, using: &random) { IPv6Address(high: 0x2001_0DB8_0001_0000 | $0.next() & 0xFFFF, low: $0.next()) }
    let moas6 = distinctValues(mappings, using: &random) { IPv6Address(high: 0x2001_0DB8_0002_0000 | $0.next() & 0xFFFF, low: $0.next()) }
    let mapping6 = { (index: Int) in
        PeerMapping(hoa: .v6(hoas6.values[index]), moas: [
            MoABinding(address: .v6(moas6.values[index]), priority: 1, flags: [.confirmed, .reachable]),
        ], sequence: 1)
    }

    // Presized, as a daemon sizes it from its configuration: the slot arrays are then
    // allocated once at their final size. These are the tables the lookups use.
    let built4 = measuredBuild(mappings, ipv4Capacity: mappings, seed: 0x1234_5678_9ABC_DEF0, mapping4)
    printMemory("ipv4", built4, mappings: mappings, hot: built4.table.memory.ipv4HotBytes)
    let built6 = measuredBuild(mappings, ipv6Capacity: mappings, seed: 0x0FED_CBA9_8765_4321, mapping6)
    printMemory("ipv6", built6, mappings: mappings, hot: built6.table.memory.ipv6HotBytes)
    // Grown, as matd builds its table today (no capacity given: rehashes and array
    // doublings on the way), measured and freed before the lookups.
    do {
        let grown4 = measuredBuild(mappings, seed: 0x1234_5678_9ABC_DEF0, mapping4)
        printMemory("ipv4-grown", grown4, mappings: mappings, hot: grown4.table.memory.ipv4HotBytes)
    }
    do {
        let grown6 = measuredBuild(mappings, seed: 0x0FED_CBA9_8765_4321, mapping6)
        printMemory("ipv6-grown", grown6, mappings: mappings, hot: grown6.table.memory.ipv6HotBytes)
    }
    // Two MoAs per mapping: the list no longer fits the record and goes to the spilled
    // pool, whose cost this line shows (the reverse slots grow to 2M entries on the way).
    // The second MoAs come from 192.0.0.0/12 by index, apart from the first ones' range.
    do {
        let twoMoAs = measuredBuild(mappings, ipv4Capacity: mappings, seed: 0x1234_5678_9ABC_DEF0) { index in
            PeerMapping(hoa: .v4(IPv4Address(hoas4.values[index])), moas: [
                MoABinding(address: .v4(IPv4Address(moas4.values[index])), priority: 1, flags: [.confirmed, .reachable]),
                MoABinding(address: .v4(IPv4Address(0xC000_0000 | UInt32(index))), priority: 2, flags: [.confirmed]),
            ], sequence: 1)
        }
        printMemory("ipv4-2moas", twoMoAs, mappings: mappings, hot: twoMoAs.table.memory.ipv4HotBytes)
    }
    let table4 = built4.table, table6 = built6.table

    // Lookup keys: 90% present, 10% absent from the same ranges, in random order.
    let forwardKeys4 = lookupKeys(lookups, present: hoas4, using: &random) { UInt32(0x0A00_0000) | UInt32(truncatingIfNeeded: $0.next()) & 0x00FF_FFFF }
    let reverseKeys4 = lookupKeys(lookups, present: moas4, using: &random) { UInt32(0x6440_0000) | UInt32(truncatingIfNeeded: $0.next()) & 0x003F_FFFF }
    let forwardKeys6 = lookupKeys(lookups, present: hoas6, using: &random) { IPv6Address(high: 0x2001_0DB8_0001_0000 | $0.next() & 0xFFFF, low: $0.next()) }
    let reverseKeys6 = lookupKeys(lookups, present: moas6, using: &random) { IPv6Address(high: 0x2001_0DB8_0002_0000 | $0.next() & 0xFFFF, low: $0.next()) }

    // C tables built from the same keys with the Swift tables' capacities and seeds. Each
    // must come out byte-identical to its Swift slot array (every key in the same slot),
    // which checks that both sides implement the same table. The C lookups are then timed
    // over the Swift tables' arrays rather than over the C tables' own copies: the contents
    // are the same, and this keeps out of the ratio where the kernel happened to place each
    // array in physical memory. With separate copies that placement favoured the arrays
    // allocated last (the C ones) by about 3% under load; see docs/benchmarks.md.
    let parameters4 = table4.slotParameters, parameters6 = table6.slotParameters
    let cForward4 = hoas4.values.withUnsafeBufferPointer { keys in
        moas4.values.withUnsafeBufferPointer { values in
            referenceView(mat_ref_table4_create(parameters4[0].capacity, parameters4[0].seed, keys.baseAddress, values.baseAddress, mappings)!,
                          over: parameters4[0].slots, bytes: parameters4[0].capacity * 8, destroy: mat_ref_table4_destroy)
        }
    }
    let cReverse4 = moas4.values.withUnsafeBufferPointer { keys in
        hoas4.values.withUnsafeBufferPointer { values in
            referenceView(mat_ref_table4_create(parameters4[1].capacity, parameters4[1].seed, keys.baseAddress, values.baseAddress, mappings)!,
                          over: parameters4[1].slots, bytes: parameters4[1].capacity * 8, destroy: mat_ref_table4_destroy)
        }
    }
    let hoaWords6 = words(hoas6.values), moaWords6 = words(moas6.values)
    let cForward6 = referenceView(mat_ref_table6_create(parameters6[2].capacity, parameters6[2].seed, hoaWords6, moaWords6, mappings)!,
                                  over: parameters6[2].slots, bytes: parameters6[2].capacity * 32, destroy: mat_ref_table6_destroy)
    let cReverse6 = referenceView(mat_ref_table6_create(parameters6[3].capacity, parameters6[3].seed, moaWords6, hoaWords6, mappings)!,
                                  over: parameters6[3].slots, bytes: parameters6[3].capacity * 32, destroy: mat_ref_table6_destroy)

    let box4 = TableBox(table4), box6 = TableBox(table6)
    let cases = [
        ComparedCase(name: "lookup-ipv4-1m", operations: lookups,
                     swift: { swiftForward4(box4.table, forwardKeys4) },
                     c: { mat_ref_table4_lookup_batch(cForward4, forwardKeys4.baseAddress, forwardKeys4.count) }),
        ComparedCase(name: "reverse-ipv4-1m", operations: lookups,
                     swift: { swiftReverse4(box4.table, reverseKeys4) },
                     c: { mat_ref_table4_lookup_batch(cReverse4, reverseKeys4.baseAddress, reverseKeys4.count) }),
        ComparedCase(name: "lookup-ipv6-1m", operations: lookups,
                     swift: { swiftForward6(box6.table, forwardKeys6) },
                     c: { mat_ref_table6_lookup_batch(cForward6, forwardKeys6.baseAddress, lookups) }),
        ComparedCase(name: "reverse-ipv6-1m", operations: lookups,
                     swift: { swiftReverse6(box6.table, reverseKeys6) },
                     c: { mat_ref_table6_lookup_batch(cReverse6, reverseKeys6.baseAddress, lookups) }),
    ]
    for benchCase in cases {
        // Both sides must find the same values, or the comparison is meaningless.
        let swiftSum = benchCase.swift(), cSum = benchCase.c()
        precondition(swiftSum == cSum, "\(benchCase.name): Swift checksum \(swiftSum) != C checksum \(cSum)")
        // Twice the harness's default rounds: each round is short (~20-40 ms per side), so
        // on the shared 2-core VM a median of more rounds moves less from run to run.
        runCompared(benchCase, rounds: 41)
    }

    cForward4.deallocate()
    cReverse4.deallocate()
    cForward6.deallocate()
    cReverse6.deallocate()
    for pointer in [hoaWords6, moaWords6, forwardKeys6.baseAddress!] { pointer.deallocate() }
    forwardKeys4.deallocate()
    reverseKeys4.deallocate()
}

// MARK: - Measured loops (the Swift side of each case)

/// Sums forward IPv4 lookups. `@inline(never)` so it is one loop like the C batch function.
@inline(never)
private func swiftForward4(_ table: borrowing MappingTable, _ keys: UnsafeMutableBufferPointer<UInt32>) -> UInt64 {
    var sum: UInt64 = 0
    for key in keys {
        if let moa = table.preferredMoA(forHoA: IPv4Address(key)) { sum &+= UInt64(moa.value) }
    }
    return sum
}

/// Sums reverse IPv4 lookups.
@inline(never)
private func swiftReverse4(_ table: borrowing MappingTable, _ keys: UnsafeMutableBufferPointer<UInt32>) -> UInt64 {
    var sum: UInt64 = 0
    for key in keys {
        if let hoa = table.hoa(forMoA: IPv4Address(key)) { sum &+= UInt64(hoa.value) }
    }
    return sum
}

/// Sums forward IPv6 lookups (value high + low, like the C side).
@inline(never)
private func swiftForward6(_ table: borrowing MappingTable, _ keys: UnsafeMutableBufferPointer<UInt64>) -> UInt64 {
    var sum: UInt64 = 0
    let words = keys.baseAddress!
    for index in 0..<keys.count / 2 {
        let key = IPv6Address(high: words[2 &* index], low: words[2 &* index &+ 1])
        if let moa = table.preferredMoA(forHoA: key) { sum &+= moa.high &+ moa.low }
    }
    return sum
}

/// Sums reverse IPv6 lookups.
@inline(never)
private func swiftReverse6(_ table: borrowing MappingTable, _ keys: UnsafeMutableBufferPointer<UInt64>) -> UInt64 {
    var sum: UInt64 = 0
    let words = keys.baseAddress!
    for index in 0..<keys.count / 2 {
        let key = IPv6Address(high: words[2 &* index], low: words[2 &* index &+ 1])
        if let hoa = table.hoa(forMoA: key) { sum &+= hoa.high &+ hoa.low }
    }
    return sum
}

// MARK: - C reference over the Swift slots

/// The C reference's table headers (`mat_ref_table4`, `mat_ref_table6`): both keep their
/// slot array in `slots`.
private protocol ReferenceTable {
    var slots: UnsafeMutablePointer<UInt64>! { get set }
}

extension mat_ref_table4: ReferenceTable {}
extension mat_ref_table6: ReferenceTable {}

/// Checks that the C-built `table` holds exactly the `bytes` bytes at `slots` (a Swift slot
/// array), destroys it, and returns a copy of its header (capacity, shift, seed) that
/// probes `slots` instead. The Swift table owns `slots` and must outlive the copy, which
/// the caller deallocates.
private func referenceView<Table: ReferenceTable>(_ table: UnsafeMutablePointer<Table>, over slots: UnsafeRawPointer, bytes: Int,
                                                 destroy: (UnsafeMutablePointer<Table>) -> Void) -> UnsafeMutablePointer<Table> {
    precondition(memcmp(table.pointee.slots, slots, bytes) == 0, "the C reference table's slots differ from the Swift table's")
    let view = UnsafeMutablePointer<Table>.allocate(capacity: 1)
    view.initialize(to: table.pointee)
    view.pointee.slots = UnsafeMutablePointer(mutating: slots.assumingMemoryBound(to: UInt64.self))
    destroy(table)
    return view
}

// MARK: - Data

/// Holds a table for the benchmark's escaping closures; `let` so reading it needs no
/// exclusivity check.
private final class TableBox {
    let table: MappingTable
    init(_ table: consuming MappingTable) { self.table = table }
}

/// SplitMix64: small, seedable, good enough to scatter keys.
private struct LookupRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

/// `count` distinct values from `make`, in draw order, plus the set for membership tests.
private func distinctValues<Value: Hashable>(_ count: Int, using random: inout LookupRandom,
                                     _ make: (inout LookupRandom) -> Value) -> (values: [Value], set: Set<Value>) {
    var set = Set<Value>(minimumCapacity: count)
    var values: [Value] = []
    values.reserveCapacity(count)
    while values.count < count {
        let value = make(&random)
        if set.insert(value).inserted { values.append(value) }
    }
    return (values, set)
}

/// `count` lookup keys: nine in ten drawn from `present`, the rest absent from it.
private func lookupKeys(_ count: Int, present: (values: [UInt32], set: Set<UInt32>), using random: inout LookupRandom,
                _ make: (inout LookupRandom) -> UInt32) -> UnsafeMutableBufferPointer<UInt32> {
    let keys = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: count)
    for index in 0..<count {
        if random.below(10) != 0 {
            keys[index] = present.values[random.below(present.values.count)]
        } else {
            var key = make(&random)
            while present.set.contains(key) { key = make(&random) }
            keys[index] = key
        }
    }
    return keys
}

/// IPv6 lookup keys as (high, low) word pairs, the layout the C side reads.
private func lookupKeys(_ count: Int, present: (values: [IPv6Address], set: Set<IPv6Address>), using random: inout LookupRandom,
                _ make: (inout LookupRandom) -> IPv6Address) -> UnsafeMutableBufferPointer<UInt64> {
    let keys = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: 2 * count)
    for index in 0..<count {
        var key: IPv6Address
        if random.below(10) != 0 {
            key = present.values[random.below(present.values.count)]
        } else {
            key = make(&random)
            while present.set.contains(key) { key = make(&random) }
        }
        keys[2 * index] = key.high
        keys[2 * index + 1] = key.low
    }
    return keys
}

/// Addresses as (high, low) word pairs in a fresh allocation.
private func words(_ addresses: [IPv6Address]) -> UnsafeMutablePointer<UInt64> {
    let words = UnsafeMutablePointer<UInt64>.allocate(capacity: 2 * addresses.count)
    for (index, address) in addresses.enumerated() {
        words[2 * index] = address.high
        words[2 * index + 1] = address.low
    }
    return words
}

// MARK: - Memory

/// A table built from `count` mappings, with what its building took from the heap and
/// from the resident set.
private struct MeasuredTable: ~Copyable {
    var table: MappingTable
    /// Growth of glibc's heap in use (small chunks plus mmap-served blocks).
    var heap: Int
    /// Growth of the process's resident set.
    var resident: Int
}

/// Builds a table from `mapping(0..<count)`, measuring heap and resident-set growth. The
/// mappings are made one at a time, so each `[MoABinding]` the caller passes in is freed
/// or kept by the table, and only what the table keeps counts.
private func measuredBuild(_ count: Int, ipv4Capacity: Int = 0, ipv6Capacity: Int = 0, seed: UInt64,
                           _ mapping: (Int) -> PeerMapping) -> MeasuredTable {
    let heap = heapInUse(), resident = residentBytes()
    var table = MappingTable(ipv4Capacity: ipv4Capacity, ipv6Capacity: ipv6Capacity, hashSeed: seed)
    for index in 0..<count { try! table.insert(mapping(index)) }
    return MeasuredTable(table: table, heap: heapInUse() - heap, resident: residentBytes() - resident)
}

/// Heap bytes in use according to glibc (small chunks plus mmap-served blocks).
private func heapInUse() -> Int { Int(mat_ref_heap_bytes_in_use()) }

/// Resident set size of this process, from /proc/self/statm, after handing free heap
/// pages back to the kernel (`malloc_trim`): otherwise memory freed earlier, by a rehash or
/// by a previous table, stays resident, and is either counted against the table or reused
/// by it without adding to the resident set. What remains is what live allocations touch,
/// a check that the heap figure misses nothing (for example memory mapped directly).
private func residentBytes() -> Int {
    mat_ref_trim_heap()
    let fd = open("/proc/self/statm", O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var text: [UInt8] = []
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buffer in
        let got = read(fd, buffer.baseAddress, buffer.count)
        if got > 0 { text = Array(buffer[..<got]) }
    }
    // "size resident shared text lib data dt": the second field.
    let fields = text.split(separator: UInt8(ascii: " "))
    guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
    return pages * sysconf(Int32(_SC_PAGESIZE))
}

/// Prints one `bench: mapping-memory-<name>` line: the table's own figure (exact slot
/// sizes plus its estimate of the control half), then the heap and resident-set growth
/// measured while it was built, all per mapping.
private func printMemory(_ name: String, _ built: borrowing MeasuredTable, mappings: Int, hot: Int) {
    let control = built.table.memory.controlBytes
    func perEntry(_ bytes: Int) -> String { format(Double(bytes) / Double(mappings), 1) }
    print("bench: mapping-memory-\(name) entries=\(mappings) bytes_per_entry=\(perEntry(hot + control))"
        + " hot_bytes_per_entry=\(perEntry(hot)) control_bytes_per_entry=\(perEntry(control))"
        + " measured_heap_bytes_per_entry=\(perEntry(built.heap)) measured_rss_bytes_per_entry=\(perEntry(built.resident))")
}
