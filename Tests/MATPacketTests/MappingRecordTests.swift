import Testing
@testable import MATPacket

// The control half's compact records (MappingRecords.swift): a one-MoA mapping keeps its
// binding inline and its address in the forward slot; longer lists spill to a pool. These
// tests move mappings between the two forms and check that nothing of a binding is lost.

private func v4(_ text: String) -> IPAddress { .v4(IPv4Address(text)!) }
private func v6(_ text: String) -> IPAddress { .v6(IPv6Address(text)!) }

private func bind(_ address: IPAddress, priority: UInt8 = 0, expiresAt: UInt64 = 0,
                  flags: MappingFlags = []) -> MoABinding {
    MoABinding(address: address, priority: priority, expiresAt: expiresAt, flags: flags)
}

/// Everything the table shows about `mapping` must be `mapping`: the stored value (every
/// field of every binding, in order), the preferred MoA, and the owner of each MoA.
private func expectStored(_ table: borrowing MappingTable, _ mapping: PeerMapping,
                          sourceLocation: SourceLocation = #_sourceLocation) {
    let stored = table.mapping(for: mapping.hoa)
    #expect(stored == mapping, sourceLocation: sourceLocation)
    let preferred = table.preferredMoA(forHoA: mapping.hoa)
    #expect(preferred == mapping.moas[MappingTable.preferredIndex(of: mapping.moas)].address, sourceLocation: sourceLocation)
    for binding in mapping.moas {
        let owner = table.hoa(forMoA: binding.address)
        #expect(owner == mapping.hoa, "owner of \(binding.address)", sourceLocation: sourceLocation)
    }
}

@Suite("MappingRecord")
struct MappingRecordTests {
    @Test func recordsHaveTheDocumentedSizes() {
        #expect(MemoryLayout<MappingRecord<IPv4Address>>.stride == 24)
        #expect(MemoryLayout<MappingRecord<IPv6Address>>.stride == 32)
    }

    /// An inline binding keeps every field: the largest expiry the packed word holds, the
    /// largest priority, every flag bit (named or not). A larger expiry spills the binding
    /// instead of truncating it, and moves back inline when it fits again.
    @Test func inlineBindingKeepsEveryField() throws {
        var table = MappingTable(hashSeed: 11)
        let largest = MappingRecord<IPv4Address>.largestInlineExpiry
        #expect(largest == 1 << 47 - 1)
        let mapping4 = PeerMapping(hoa: v4("192.0.2.1"), moas: [
            bind(v4("198.51.100.1"), priority: 255, expiresAt: largest, flags: MappingFlags(rawValue: 0xFF)),
        ], sequence: .max)
        var mapping6 = PeerMapping(hoa: v6("2001:db8::1"), moas: [
            bind(v6("2001:db8:ff::1"), priority: 3, expiresAt: 12345, flags: [.reachable, MappingFlags(rawValue: 0x80)]),
        ], sequence: 7)
        try table.insert(mapping4)
        try table.insert(mapping6)
        #expect(table.spilled.count == 0, "one-MoA mappings stay inline")
        expectStored(table, mapping4)
        expectStored(table, mapping6)
        var all = Set(table.mappings)
        #expect(all == [mapping4, mapping6])

        let far = PeerMapping(hoa: v4("192.0.2.2"), moas: [bind(v4("198.51.100.2"), priority: 1, expiresAt: largest + 1)])
        try table.insert(far)
        mapping6.moas[0].expiresAt = .max - 1
        mapping6.sequence += 1
        try table.replace(mapping6)
        #expect(table.spilled.count == 2, "expiries past the packed word's range spill")
        expectStored(table, far)
        expectStored(table, mapping6)
        mapping6.moas[0].expiresAt = largest
        try table.replace(mapping6)
        #expect(table.spilled.count == 1, "and come back inline when they fit")
        expectStored(table, mapping6)
        let sweep = table.removeExpired(now: largest)
        let removedHoAs = Set(sweep.removed.map(\.hoa))
        #expect(removedHoAs == [v4("192.0.2.1"), v6("2001:db8::1")] && sweep.removed.count == 2)
        all = Set(table.mappings)
        #expect(all == [far])
    }

    /// One MoA -> three (spills) -> one other (back inline, pool entry freed) -> two
    /// (reuses the freed entry) -> two others (updates the list in place).
    @Test func replaceMovesBindingsBetweenInlineAndSpilled() throws {
        var table = MappingTable(hashSeed: 12)
        let hoa = v4("192.0.2.10")
        var mapping = PeerMapping(hoa: hoa, moas: [bind(v4("10.0.0.1"), priority: 4, expiresAt: 50)], sequence: 1)
        try table.insert(mapping)
        expectStored(table, mapping)

        mapping = PeerMapping(hoa: hoa, moas: [
            bind(v4("10.0.0.1"), priority: 4, expiresAt: 50),
            bind(v4("10.0.0.2"), priority: 1, expiresAt: 70, flags: [.confirmed]),
            bind(v4("10.0.0.3"), priority: 9, flags: [.reachable]),
        ], sequence: 2)
        try table.replace(mapping)
        #expect(table.spilled.count == 1)
        expectStored(table, mapping)
        let spilledPreferred = table.preferredMoA(forHoA: hoa)
        #expect(spilledPreferred == v4("10.0.0.3"), "reachable beats a better priority")

        mapping = PeerMapping(hoa: hoa, moas: [bind(v4("10.0.0.4"), priority: 2, expiresAt: 90)], sequence: 3)
        try table.replace(mapping)
        #expect(table.spilled.count == 0 && table.spilled.free == [0], "back inline, the pool entry is free")
        expectStored(table, mapping)
        for dropped in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            let owner = table.hoa(forMoA: v4(dropped))
            #expect(owner == nil, "\(dropped) no longer resolves")
        }

        mapping = PeerMapping(hoa: hoa, moas: [bind(v4("10.0.0.4"), priority: 2), bind(v4("10.0.0.5"), priority: 1)], sequence: 3)
        try table.replace(mapping)
        #expect(table.spilled.count == 1 && table.spilled.lists.count == 1, "the freed entry was reused")
        expectStored(table, mapping)

        mapping = PeerMapping(hoa: hoa, moas: [bind(v4("10.0.0.6")), bind(v4("10.0.0.7"))], sequence: 4)
        try table.replace(mapping)
        #expect(table.spilled.count == 1 && table.spilled.lists.count == 1)
        expectStored(table, mapping)
        #expect(table.earliestExpiry == 50, "the earliest expiry ever stored stays the sweep's lower bound")
    }

    /// Removal swaps the family's last record into the hole; the moved record's spilled
    /// list stays where it is and its forward slot points at the new index.
    @Test func removalKeepsTheOtherRecordsIntact() throws {
        var table = MappingTable(hashSeed: 13)
        var mappings: [PeerMapping] = []
        for index in 0..<12 {
            let count = index % 3 + 1
            let hoa4 = IPAddress.v4(IPv4Address(192, 0, 2, UInt8(index + 1)))
            let moas4 = (0..<count).map { bind(.v4(IPv4Address(10, 0, UInt8(index), UInt8($0 + 1))), priority: UInt8($0), expiresAt: UInt64(100 + index)) }
            let hoa6 = IPAddress.v6(IPv6Address(high: 0x2001_0DB8_0000_0000, low: UInt64(index + 1)))
            let moas6 = (0..<count).map { bind(.v6(IPv6Address(high: 0x2001_0DB8_00FF_0000, low: UInt64(index * 16 + $0 + 1))), flags: [.confirmed]) }
            mappings.append(PeerMapping(hoa: hoa4, moas: moas4, sequence: UInt64(index)))
            mappings.append(PeerMapping(hoa: hoa6, moas: moas6, sequence: UInt64(index)))
        }
        for mapping in mappings { try table.insert(mapping) }
        #expect(table.spilled.count == 16)

        // Remove spilled and inline records from the front, middle and end of each family.
        for position in [2, 3, 12, 13, 22, 23, 0, 1] {
            let mapping = mappings[position]
            let removed = table.remove(hoa: mapping.hoa)
            #expect(removed == mapping)
            for binding in mapping.moas {
                let owner = table.hoa(forMoA: binding.address)
                #expect(owner == nil)
            }
        }
        let kept = mappings.enumerated().filter { ![2, 3, 12, 13, 22, 23, 0, 1].contains($0.offset) }.map(\.element)
        #expect(table.count == kept.count)
        for mapping in kept { expectStored(table, mapping) }
        #expect(table.spilled.count == kept.filter { $0.moas.count > 1 }.count)
        #expect(Set(table.mappings) == Set(kept))

        table.removeAll()
        #expect(table.isEmpty && table.spilled.count == 0 && table.spilled.lists.isEmpty)
        try table.insert(mappings[5])
        expectStored(table, mappings[5])
    }

    /// Growth from the smallest slot arrays (many rehashes) with inline and spilled
    /// mappings of both families, then a sweep that shrinks some lists back to one binding
    /// (inline again) and empties others.
    @Test func growthAndExpiryWithInlineAndSpilledMappings() throws {
        var table = MappingTable(hashSeed: 14)
        var mappings: [IPAddress: PeerMapping] = [:]
        for index in 0..<6000 {
            let family: AddressFamily = index % 2 == 0 ? .ipv4 : .ipv6
            let count = index % 5 == 0 ? 2 + index % 3 : 1
            func address(_ prefix: UInt64, _ n: Int) -> IPAddress {
                switch family {
                case .ipv4: .v4(IPv4Address(UInt32(prefix) << 24 | UInt32(n)))
                case .ipv6: .v6(IPv6Address(high: 0x2001_0DB8_0000_0000 | prefix, low: UInt64(n)))
                }
            }
            // Binding 0 never expires in every other mapping, so the sweep below leaves
            // some lists with one binding and empties others.
            let moas = (0..<count).map { position in
                bind(address(UInt64(20 + position), index + 1), priority: UInt8(position),
                     expiresAt: position == 0 && index % 2 == 0 ? 0 : 1000,
                     flags: position == count - 1 ? [.reachable] : [])
            }
            let mapping = PeerMapping(hoa: address(10, index + 1), moas: moas, sequence: UInt64(index))
            try table.insert(mapping)
            mappings[mapping.hoa] = mapping
        }
        let statistics = table.slotStatistics
        #expect(statistics.capacity4 == 8192 && statistics.capacity6 == 8192, "grew from 16 slots")
        for mapping in mappings.values { expectStored(table, mapping) }

        let sweep = table.removeExpired(now: 1000)
        var expectedRemoved: Set<PeerMapping> = [], expectedChanged: Set<IPAddress> = []
        for (hoa, mapping) in mappings {
            let live = mapping.moas.filter { !$0.isExpired(at: 1000) }
            if live.isEmpty {
                expectedRemoved.insert(mapping)
                mappings[hoa] = nil
            } else if live.count != mapping.moas.count {
                expectedChanged.insert(hoa)
                mappings[hoa]!.moas = live
            }
        }
        #expect(Set(sweep.removed) == expectedRemoved && sweep.removed.count == expectedRemoved.count)
        #expect(Set(sweep.changed) == expectedChanged && sweep.changed.count == expectedChanged.count)
        #expect(!expectedChanged.isEmpty && !expectedRemoved.isEmpty)
        #expect(table.count == mappings.count)
        #expect(table.spilled.count == 0, "every list that survived shrank to its one binding")
        for mapping in mappings.values { expectStored(table, mapping) }
        // Even a sweep at the top of the clock changes nothing that never expires.
        let none = table.removeExpired(now: .max)
        #expect(none == MappingExpiry(), "what is left never expires")
    }

    /// The memory report counts the record arrays and every spilled list.
    @Test func memoryCountsRecordsAndSpilledLists() throws {
        var table = MappingTable(ipv4Capacity: 100, ipv6Capacity: 10, hashSeed: 15)
        let records = MappingTable.arrayHeapBytes(capacity: table.records4.capacity, stride: 24)
            + MappingTable.arrayHeapBytes(capacity: table.records6.capacity, stride: 32)
        #expect(table.memory.controlBytes == records)
        try table.insert(PeerMapping(hoa: v4("192.0.2.1"), moas: [bind(v4("10.0.0.1"))]))
        #expect(table.memory.controlBytes == records, "an inline binding costs nothing beyond its record")
        let moas = [bind(v4("10.0.0.2")), bind(v4("10.0.0.3"))]
        try table.insert(PeerMapping(hoa: v4("192.0.2.2"), moas: moas))
        let spilled = table.memory.controlBytes - records
        // The list's buffer (32-byte header + 2 x 16-byte compact IPv4 bindings: an 80-byte
        // chunk, where two generic 32-byte bindings took 112) and the pool's own array of
        // list references.
        #expect(spilled == 80 + MappingTable.arrayHeapBytes(capacity: table.spilled.lists.capacity, stride: 8))
        try table.insert(PeerMapping(hoa: v6("2001:db8::1"), moas: [bind(v6("2001:db8:1::1")), bind(v6("2001:db8:1::2"))]))
        // Two compact IPv6 bindings: 32 + 2 x 32 bytes, a 112-byte chunk.
        #expect(table.memory.controlBytes
            == records + 80 + 112 + MappingTable.arrayHeapBytes(capacity: table.spilled.lists.capacity, stride: 8))
    }
}
