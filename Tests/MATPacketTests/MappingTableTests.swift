import Testing
@testable import MATPacket

// The table is non-copyable, so every test reads lookups into locals before `#expect`
// (the macro would otherwise try to capture the table).

private func v4(_ text: String) -> IPAddress { .v4(IPv4Address(text)!) }
private func v6(_ text: String) -> IPAddress { .v6(IPv6Address(text)!) }
private func a4(_ text: String) -> IPv4Address { IPv4Address(text)! }
private func a6(_ text: String) -> IPv6Address { IPv6Address(text)! }

private func bind(_ address: IPAddress, priority: UInt8 = 0, expiresAt: UInt64 = 0,
                  flags: MappingFlags = []) -> MoABinding {
    MoABinding(address: address, priority: priority, expiresAt: expiresAt, flags: flags)
}

/// The error `body` throws, or nil if it does not throw.
private func thrown(_ body: () throws(MappingError) -> Void) -> MappingError? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

@Suite("MappingTable")
struct MappingTableTests {
    @Test func insertLookupBothFamilies() throws {
        var table = MappingTable(hashSeed: 1)
        try table.insert(PeerMapping(hoa: v4("198.51.100.10"), moas: [bind(v4("203.0.113.7"))], sequence: 3))
        try table.insert(PeerMapping(hoa: v6("2001:db8:1::10"), moas: [bind(v6("2001:db8:2::7"))]))

        let moa4 = table.preferredMoA(forHoA: a4("198.51.100.10"))
        let hoa4 = table.hoa(forMoA: a4("203.0.113.7"))
        let moa6 = table.preferredMoA(forHoA: a6("2001:db8:1::10"))
        let hoa6 = table.hoa(forMoA: a6("2001:db8:2::7"))
        #expect(moa4 == a4("203.0.113.7"))
        #expect(hoa4 == a4("198.51.100.10"))
        #expect(moa6 == a6("2001:db8:2::7"))
        #expect(hoa6 == a6("2001:db8:1::10"))

        // Unknown addresses, and the unspecified ones that mark empty slots, are misses.
        let misses = [
            table.preferredMoA(forHoA: a4("198.51.100.11")) == nil,
            table.hoa(forMoA: a4("198.51.100.10")) == nil,
            table.preferredMoA(forHoA: IPv4Address(0)) == nil,
            table.hoa(forMoA: IPv4Address(0)) == nil,
            table.preferredMoA(forHoA: IPv6Address(high: 0, low: 0)) == nil,
            table.hoa(forMoA: IPv6Address(high: 0, low: 0)) == nil,
            table.preferredMoA(forHoA: a6("2001:db8:1::11")) == nil,
        ]
        #expect(misses.allSatisfy { $0 })

        let stored = table.mapping(for: v4("198.51.100.10"))
        #expect(stored?.sequence == 3)
        #expect(stored?.moas.map(\.address) == [v4("203.0.113.7")])
        let generic = table.preferredMoA(forHoA: v6("2001:db8:1::10"))
        let genericOwner = table.hoa(forMoA: v4("203.0.113.7"))
        #expect(generic == v6("2001:db8:2::7"))
        #expect(genericOwner == v4("198.51.100.10"))
        #expect(table.count == 2)
        #expect(table.mappings.count == 2)
    }

    @Test func replaceKeepsReverseIndexConsistent() throws {
        var table = MappingTable(hashSeed: 2)
        let hoa = v4("198.51.100.10")
        try table.insert(PeerMapping(hoa: hoa, moas: [bind(v4("203.0.113.1")), bind(v4("203.0.113.2"), priority: 5)],
                                     sequence: 1))
        try table.replace(PeerMapping(hoa: hoa, moas: [bind(v4("203.0.113.2"), priority: 5), bind(v4("203.0.113.3"), priority: 9)],
                                      sequence: 2))

        let dropped = table.hoa(forMoA: a4("203.0.113.1"))
        let kept = table.hoa(forMoA: a4("203.0.113.2"))
        let added = table.hoa(forMoA: a4("203.0.113.3"))
        let preferred = table.preferredMoA(forHoA: a4("198.51.100.10"))
        #expect(dropped == nil)
        #expect(kept == a4("198.51.100.10"))
        #expect(added == a4("198.51.100.10"))
        #expect(preferred == a4("203.0.113.2"))
        #expect(table.count == 1)

        // An older sequence is refused and changes nothing; an equal one is accepted.
        let stale = thrown { () throws(MappingError) in
            try table.replace(PeerMapping(hoa: hoa, moas: [bind(v4("203.0.113.9"))], sequence: 1))
        }
        #expect(stale == .staleSequence(hoa: hoa, stored: 2, offered: 1))
        let stillNil = table.hoa(forMoA: a4("203.0.113.9"))
        #expect(stillNil == nil)
        try table.replace(PeerMapping(hoa: hoa, moas: [bind(v4("203.0.113.9"))], sequence: 2))
        let moved = table.preferredMoA(forHoA: a4("198.51.100.10"))
        let gone = table.hoa(forMoA: a4("203.0.113.2"))
        #expect(moved == a4("203.0.113.9"))
        #expect(gone == nil)

        // replace of an unknown HoA inserts it.
        try table.replace(PeerMapping(hoa: v6("2001:db8::1"), moas: [bind(v6("2001:db8:ff::1"))]))
        #expect(table.count == 2)
    }

    @Test func removeClearsBothDirections() throws {
        var table = MappingTable(hashSeed: 3)
        try table.insert(PeerMapping(hoa: v6("2001:db8::a"), moas: [bind(v6("2001:db8:9::1")), bind(v6("2001:db8:9::2"))]))
        try table.insert(PeerMapping(hoa: v4("192.0.2.1"), moas: [bind(v4("198.51.100.1"))]))
        let removed = table.remove(hoa: v6("2001:db8::a"))
        #expect(removed?.moas.count == 2)
        let forward = table.preferredMoA(forHoA: a6("2001:db8::a"))
        let reverse1 = table.hoa(forMoA: a6("2001:db8:9::1"))
        let reverse2 = table.hoa(forMoA: a6("2001:db8:9::2"))
        let other = table.preferredMoA(forHoA: a4("192.0.2.1"))
        #expect(forward == nil && reverse1 == nil && reverse2 == nil)
        #expect(other == a4("198.51.100.1"))
        #expect(table.remove(hoa: v6("2001:db8::a")) == nil)
        #expect(table.count == 1)

        // A freed MoA can now belong to another HoA.
        try table.insert(PeerMapping(hoa: v6("2001:db8::b"), moas: [bind(v6("2001:db8:9::1"))]))
        let newOwner = table.hoa(forMoA: a6("2001:db8:9::1"))
        #expect(newOwner == a6("2001:db8::b"))

        table.removeAll()
        let afterClear = table.hoa(forMoA: a6("2001:db8:9::1"))
        #expect(afterClear == nil && table.isEmpty)
    }

    @Test func familyMismatchIsRefusedWithAClearReason() {
        var table = MappingTable(hashSeed: 4)
        let error4 = thrown { () throws(MappingError) in
            try table.insert(PeerMapping(hoa: v4("198.51.100.10"), moas: [bind(v6("2001:db8::7"))]))
        }
        #expect(error4 == .addressFamilyMismatch(hoa: v4("198.51.100.10"), moa: v6("2001:db8::7")))
        #expect(error4?.description == "address family mismatch: IPv4 HoA 198.51.100.10 cannot be reached "
            + "through IPv6 MoA 2001:db8::7 (translation between IPv4 and IPv6 is not supported)")

        // A mixed list is refused as a whole: nothing of it is stored.
        let error6 = thrown { () throws(MappingError) in
            try table.replace(PeerMapping(hoa: v6("2001:db8::1"), moas: [bind(v6("2001:db8::2")), bind(v4("192.0.2.9"))]))
        }
        #expect(error6 == .addressFamilyMismatch(hoa: v6("2001:db8::1"), moa: v4("192.0.2.9")))
        let partial = table.hoa(forMoA: a6("2001:db8::2"))
        #expect(partial == nil && table.isEmpty)
    }

    @Test func otherMalformedMappingsAreRefused() throws {
        var table = MappingTable(maximumMappings: 2, hashSeed: 5)
        let hoa = v4("192.0.2.1")
        var error = thrown { () throws(MappingError) in try table.insert(PeerMapping(hoa: hoa, moas: [])) }
        #expect(error == .noMoA(hoa: hoa))
        let many = (1...17).map { bind(.v4(IPv4Address(10, 0, 0, UInt8($0)))) }
        error = thrown { () throws(MappingError) in try table.insert(PeerMapping(hoa: hoa, moas: many)) }
        #expect(error == .tooManyMoAs(hoa: hoa, count: 17, limit: 16))
        error = thrown { () throws(MappingError) in
            try table.insert(PeerMapping(hoa: hoa, moas: [bind(v4("10.0.0.1")), bind(v4("10.0.0.1"), priority: 3)]))
        }
        #expect(error == .duplicateMoA(hoa: hoa, moa: v4("10.0.0.1")))
        error = thrown { () throws(MappingError) in try table.insert(PeerMapping(hoa: v4("0.0.0.0"), moas: [bind(v4("10.0.0.1"))])) }
        #expect(error == .unspecifiedAddress(hoa: v4("0.0.0.0")))
        error = thrown { () throws(MappingError) in try table.insert(PeerMapping(hoa: v6("2001:db8::1"), moas: [bind(v6("::"))])) }
        #expect(error == .unspecifiedAddress(hoa: v6("2001:db8::1")))

        // A MoA belongs to one HoA: a second claimant is refused, the owner is untouched.
        try table.insert(PeerMapping(hoa: hoa, moas: [bind(v4("10.0.0.1"))]))
        error = thrown { () throws(MappingError) in
            try table.insert(PeerMapping(hoa: v4("192.0.2.2"), moas: [bind(v4("10.0.0.2")), bind(v4("10.0.0.1"))]))
        }
        #expect(error == .moaOwnedByAnotherHoA(moa: v4("10.0.0.1"), owner: hoa, hoa: v4("192.0.2.2")))
        let claimed = table.hoa(forMoA: a4("10.0.0.2"))
        #expect(claimed == nil)
        error = thrown { () throws(MappingError) in try table.insert(PeerMapping(hoa: hoa, moas: [bind(v4("10.0.0.3"))])) }
        #expect(error == .hoaAlreadyMapped(hoa: hoa))
        // A node at home has MoA == HoA; that is a normal mapping.
        try table.insert(PeerMapping(hoa: v4("192.0.2.3"), moas: [bind(v4("192.0.2.3"))]))
        error = thrown { () throws(MappingError) in try table.insert(PeerMapping(hoa: v4("192.0.2.4"), moas: [bind(v4("10.0.0.4"))])) }
        #expect(error == .tableFull(limit: 2))
        #expect(table.count == 2)
        for error in [MappingError.noMoA(hoa: hoa), .tableFull(limit: 2), .duplicateMoA(hoa: hoa, moa: hoa)] {
            #expect(!error.description.isEmpty)
        }
    }

    @Test func priorityAndReachabilityPickThePreferredMoA() throws {
        var table = MappingTable(hashSeed: 6)
        let hoa = v4("192.0.2.1")
        try table.insert(PeerMapping(hoa: hoa, moas: [
            bind(v4("10.0.0.1"), priority: 7), bind(v4("10.0.0.2"), priority: 3), bind(v4("10.0.0.3"), priority: 3),
        ], sequence: 1))
        var preferred = table.preferredMoA(forHoA: a4("192.0.2.1"))
        #expect(preferred == a4("10.0.0.2"), "lowest priority wins, ties keep list order")

        // A reachable MoA beats a better priority that has not answered a check yet.
        try table.replace(PeerMapping(hoa: hoa, moas: [
            bind(v4("10.0.0.1"), priority: 7, flags: [.reachable]), bind(v4("10.0.0.2"), priority: 3),
        ], sequence: 2))
        preferred = table.preferredMoA(forHoA: a4("192.0.2.1"))
        #expect(preferred == a4("10.0.0.1"))
        try table.replace(PeerMapping(hoa: hoa, moas: [
            bind(v4("10.0.0.1"), priority: 7, flags: [.reachable]), bind(v4("10.0.0.2"), priority: 3, flags: [.reachable, .confirmed]),
        ], sequence: 2))
        preferred = table.preferredMoA(forHoA: a4("192.0.2.1"))
        #expect(preferred == a4("10.0.0.2"))
    }

    @Test func expirySkipsExpiredBindingsAndRemovesEmptyMappings() throws {
        var table = MappingTable(hashSeed: 7)
        let hoaA = v6("2001:db8::a"), hoaB = v4("192.0.2.2"), hoaC = v4("192.0.2.3")
        try table.insert(PeerMapping(hoa: hoaA, moas: [
            bind(v6("2001:db8:1::1"), priority: 0, expiresAt: 100), bind(v6("2001:db8:1::2"), priority: 5, expiresAt: 0),
        ]))
        try table.insert(PeerMapping(hoa: hoaB, moas: [bind(v4("10.0.0.2"), expiresAt: 150)]))
        try table.insert(PeerMapping(hoa: hoaC, moas: [bind(v4("10.0.0.3"), flags: [.static])]))

        var sweep = table.removeExpired(now: 99)
        #expect(sweep == MappingExpiry())
        var preferred = table.preferredMoA(forHoA: a6("2001:db8::a"))
        #expect(preferred == a6("2001:db8:1::1"))

        // expiresAt is the first instant the binding is invalid.
        sweep = table.removeExpired(now: 100)
        #expect(sweep.changed == [hoaA] && sweep.removed.isEmpty)
        preferred = table.preferredMoA(forHoA: a6("2001:db8::a"))
        let expiredOwner = table.hoa(forMoA: a6("2001:db8:1::1"))
        #expect(preferred == a6("2001:db8:1::2"))
        #expect(expiredOwner == nil)
        #expect(table.mapping(for: hoaA)?.moas.count == 1)

        sweep = table.removeExpired(now: 1000)
        #expect(sweep.removed.map(\.hoa) == [hoaB] && sweep.changed.isEmpty)
        let goneForward = table.preferredMoA(forHoA: a4("192.0.2.2"))
        let goneReverse = table.hoa(forMoA: a4("10.0.0.2"))
        let staticMoA = table.preferredMoA(forHoA: a4("192.0.2.3"))
        #expect(goneForward == nil && goneReverse == nil)
        #expect(staticMoA == a4("10.0.0.3"))
        #expect(table.count == 2)
        #expect(table.earliestExpiry == .max, "nothing left to expire, so sweeps are O(1)")
    }

    /// Drives the table through a long seeded sequence of operations on both families and
    /// checks it against a Dictionary model: a growth phase past many rehashes, then churn.
    @Test func randomizedAgainstDictionaryModel() throws {
        var random = SeededRandom(seed: 0x5EED)
        var table = MappingTable(hashSeed: random.next())
        var model = Model()

        // Growth: 200,000 mappings, half per family, from the minimum capacity up.
        for index in 0..<200_000 {
            let mapping = index % 2 == 0 ? model.freshMapping4(&random) : model.freshMapping6(&random)
            try table.insert(mapping)
            model.store(mapping)
        }
        try model.verifyAll(table)
        let grown = table.slotStatistics
        #expect(grown.capacity4 == 262_144 && grown.capacity6 == 262_144)
        #expect(grown.longestProbe < SlotPolicy.probeLimit)

        // Churn: random inserts, replaces (some stale, some stealing MoAs), removals, lookups.
        for step in 0..<150_000 {
            let roll = random.next() % 100
            switch roll {
            case 0..<30:
                let mapping = random.next() % 2 == 0 ? model.freshMapping4(&random) : model.freshMapping6(&random)
                try table.insert(mapping)
                model.store(mapping)
            case 30..<60:
                guard let hoa = model.randomHoA(&random) else { continue }
                var mapping = model.mappings[hoa]!
                mapping.sequence = random.next() % 10 == 0 ? mapping.sequence &- 1 : mapping.sequence + random.next() % 2
                mapping.moas = model.freshBindings(for: hoa, &random)
                // Sometimes claim a MoA some other HoA owns (of either family, so this also
                // exercises the family check).
                if random.next() % 8 == 0, let other = model.randomHoA(&random), other != hoa {
                    mapping.moas[0].address = model.mappings[other]!.moas[0].address
                }
                let expected = model.expectedError(replacing: mapping)
                let error = thrown { () throws(MappingError) in try table.replace(mapping) }
                #expect(error == expected, "step \(step)")
                if expected == nil { model.store(mapping) }
            case 60..<85:
                guard let hoa = model.randomHoA(&random) else { continue }
                let removed = table.remove(hoa: hoa)
                #expect(removed == model.mappings[hoa])
                model.remove(hoa)
            default:
                let key = model.randomHoA(&random) ?? v4("192.0.2.1")
                let got = table.preferredMoA(forHoA: key)
                #expect(got == model.mappings[key].map { Model.preferred(of: $0) })
            }
            if step % 25_000 == 0 { try model.verifyAll(table) }
        }
        try model.verifyAll(table)
        #expect(table.count == model.mappings.count)
    }

    /// Heavy churn in a small table: backward-shift deletion must keep every key reachable
    /// and, with no tombstones, the table must never need to grow for a bounded live set.
    @Test func deletionUnderHeavyChurnKeepsEveryKeyReachable() throws {
        var random = SeededRandom(seed: 0xC4A2)
        var table = MappingTable(hashSeed: 99)
        var live: [UInt32: UInt32] = [:]
        var live6: [IPv6Address: IPv6Address] = [:]
        // 48 keys from a universe of 96, so clusters form, wrap and break up constantly.
        for step in 0..<40_000 {
            let key = UInt32(random.next() % 96) + 1
            let key6 = IPv6Address(high: 0x2001_0DB8_0000_0000, low: UInt64(key))
            if live[key] != nil {
                table.remove(hoa: .v4(IPv4Address(key)))
                table.remove(hoa: .v6(key6))
                live[key] = nil
                live6[key6] = nil
            } else if live.count < 48 {
                let moa = UInt32(0x0A00_0000) | UInt32(step)
                let moa6 = IPv6Address(high: 0x2001_0DB8_FFFF_0000, low: UInt64(step) + 1)
                try table.insert(PeerMapping(hoa: .v4(IPv4Address(key)), moas: [bind(.v4(IPv4Address(moa)))]))
                try table.insert(PeerMapping(hoa: .v6(key6), moas: [bind(.v6(moa6))]))
                live[key] = moa
                live6[key6] = moa6
            }
            var ok = true
            for candidate in UInt32(1)...96 {
                let got = table.preferredMoA(forHoA: IPv4Address(candidate))?.value
                ok = ok && got == live[candidate]
            }
            for (hoa, moa) in live {
                ok = ok && table.hoa(forMoA: IPv4Address(moa))?.value == hoa
            }
            for (hoa, moa) in live6 {
                ok = ok && table.preferredMoA(forHoA: hoa) == moa && table.hoa(forMoA: moa) == hoa
            }
            if !ok {
                Issue.record("lookup mismatch after step \(step)")
                return
            }
        }
        let stats = table.slotStatistics
        #expect(stats.capacity4 == 128 && stats.capacity6 == 128)
    }

    /// Keys chosen to share one home slot push an insert past the probe limit; the table
    /// must rehash with a new seed (not grow without bound) and still answer correctly.
    @Test func collidingKeysTriggerAReseed() throws {
        var table = MappingTable(ipv4Capacity: 2048, hashSeed: 42)
        let probe = IPv4Slots(capacity: 4096, seed: table.forward4.seed, keepsRecords: false)
        defer { probe.deallocate() }
        let initialCapacity = table.forward4.capacity
        #expect(initialCapacity == 4096)
        var colliding: [UInt32] = []
        var candidate: UInt32 = 1
        while colliding.count < 120 {
            if probe.home(candidate) == 0 { colliding.append(candidate) }
            candidate += 1
        }
        for (index, key) in colliding.enumerated() {
            try table.insert(PeerMapping(hoa: .v4(IPv4Address(key)), moas: [bind(.v4(IPv4Address(0x0A00_0000 + UInt32(index))))]))
        }
        let seed = table.forward4.seed, capacity = table.forward4.capacity
        let longest = table.slotStatistics.longestProbe
        #expect(seed != probe.seed, "the forward table was reseeded")
        #expect(capacity == 4096, "a reseed alone was enough")
        #expect(longest < SlotPolicy.probeLimit)
        for (index, key) in colliding.enumerated() {
            let moa = table.preferredMoA(forHoA: IPv4Address(key))
            if moa != IPv4Address(0x0A00_0000 + UInt32(index)) {
                Issue.record("key \(key) lost after reseed")
                return
            }
        }
    }

    @Test func memoryReportMatchesTheSlotArrays() throws {
        var table = MappingTable(ipv4Capacity: 1000, ipv6Capacity: 100, hashSeed: 8)
        try table.insert(PeerMapping(hoa: v4("192.0.2.1"), moas: [bind(v4("10.0.0.1"))]))
        let memory = table.memory
        // IPv4: 2048 slots per table, forward 8 + 4 (record index), reverse 8 bytes a slot;
        // IPv6: 256 slots, forward 32 + 4, reverse 32.
        #expect(memory.ipv4HotBytes == 2048 * 20)
        #expect(memory.ipv6HotBytes == 256 * 68)
        #expect(memory.controlBytes > 0)
        #expect(memory.totalBytes == memory.ipv4HotBytes + memory.ipv6HotBytes + memory.controlBytes)
        #expect(MemoryLayout<MoABinding>.stride == 32)
    }
}

/// The reference behaviour: plain dictionaries and the documented preference rule.
private struct Model {
    var mappings: [IPAddress: PeerMapping] = [:]
    var owners: [IPAddress: IPAddress] = [:]
    var hoaList: [IPAddress] = []
    var hoaPosition: [IPAddress: Int] = [:]
    var nextAddress: UInt64 = 1

    static func preferred(of mapping: PeerMapping) -> IPAddress {
        var best = mapping.moas[0]
        for binding in mapping.moas.dropFirst() {
            let rank = (binding.flags.contains(.reachable) ? 0 : 1, binding.priority)
            let bestRank = (best.flags.contains(.reachable) ? 0 : 1, best.priority)
            if rank < bestRank { best = binding }
        }
        return best.address
    }

    /// A new, never used address of `family` (unique, so only deliberate steals conflict).
    mutating func freshAddress(_ family: AddressFamily, _ random: inout SeededRandom) -> IPAddress {
        nextAddress += 1
        // Multiplying by an odd constant is a bijection, so the addresses are scattered
        // but never repeat (and never 0).
        switch family {
        case .ipv4: return .v4(IPv4Address(UInt32(truncatingIfNeeded: nextAddress) &* 0x9E37_79B1))
        case .ipv6: return .v6(IPv6Address(high: 0x2001_0DB8_0000_0000 | random.next() % 0x1_0000,
                                           low: nextAddress &* 0x9E37_79B9_7F4A_7C15))
        }
    }

    mutating func freshBindings(for hoa: IPAddress, _ random: inout SeededRandom) -> [MoABinding] {
        (0..<(1 + Int(random.next() % 3))).map { _ in
            MoABinding(address: freshAddress(hoa.family, &random), priority: UInt8(random.next() % 4),
                       expiresAt: 0, flags: random.next() % 3 == 0 ? [.reachable] : [])
        }
    }

    mutating func freshMapping4(_ random: inout SeededRandom) -> PeerMapping {
        let hoa = freshAddress(.ipv4, &random)
        return PeerMapping(hoa: hoa, moas: freshBindings(for: hoa, &random), sequence: random.next() % 1000 + 1)
    }

    mutating func freshMapping6(_ random: inout SeededRandom) -> PeerMapping {
        let hoa = freshAddress(.ipv6, &random)
        return PeerMapping(hoa: hoa, moas: freshBindings(for: hoa, &random), sequence: random.next() % 1000 + 1)
    }

    func randomHoA(_ random: inout SeededRandom) -> IPAddress? {
        hoaList.isEmpty ? nil : hoaList[Int(random.next() % UInt64(hoaList.count))]
    }

    func expectedError(replacing mapping: PeerMapping) -> MappingError? {
        if let old = mappings[mapping.hoa], mapping.sequence < old.sequence {
            return .staleSequence(hoa: mapping.hoa, stored: old.sequence, offered: mapping.sequence)
        }
        for binding in mapping.moas {
            if binding.address.family != mapping.hoa.family {
                return .addressFamilyMismatch(hoa: mapping.hoa, moa: binding.address)
            }
            if let owner = owners[binding.address], owner != mapping.hoa {
                return .moaOwnedByAnotherHoA(moa: binding.address, owner: owner, hoa: mapping.hoa)
            }
        }
        return nil
    }

    mutating func store(_ mapping: PeerMapping) {
        if let old = mappings[mapping.hoa] {
            for binding in old.moas { owners[binding.address] = nil }
        } else {
            hoaPosition[mapping.hoa] = hoaList.count
            hoaList.append(mapping.hoa)
        }
        for binding in mapping.moas { owners[binding.address] = mapping.hoa }
        mappings[mapping.hoa] = mapping
    }

    mutating func remove(_ hoa: IPAddress) {
        guard let old = mappings.removeValue(forKey: hoa) else { return }
        for binding in old.moas { owners[binding.address] = nil }
        let position = hoaPosition.removeValue(forKey: hoa)!
        let last = hoaList.removeLast()
        if last != hoa {
            hoaList[position] = last
            hoaPosition[last] = position
        }
    }

    /// Every mapping resolves both ways, and the table holds nothing else.
    func verifyAll(_ table: borrowing MappingTable) throws {
        #expect(table.count == mappings.count)
        var mismatches = 0
        for (hoa, mapping) in mappings {
            if table.preferredMoA(forHoA: hoa) != Model.preferred(of: mapping) { mismatches += 1 }
            if table.mapping(for: hoa) != mapping { mismatches += 1 }
        }
        for (moa, hoa) in owners where table.hoa(forMoA: moa) != hoa { mismatches += 1 }
        #expect(mismatches == 0)
        var reverseCount = 0
        table.reverse4.forEach { _, _ in reverseCount += 1 }
        table.reverse6.forEach { _, _ in reverseCount += 1 }
        #expect(reverseCount == owners.count, "no stale reverse entries")
    }
}
