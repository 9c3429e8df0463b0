import Testing
@testable import MATPacket

/// The table read a part at a time (`startListing`/`continueListing`) while it changes
/// between the parts, as the engine reads it for `matctl peers`.
@Suite("MappingListing")
struct MappingListingTests {
    private static func mapping(_ index: Int, sequence: UInt64 = 1) -> PeerMapping {
        if index % 3 == 0 {
            let hoa = IPAddress.v6(IPv6Address(high: 0x2001_0db8_4000_0000, low: UInt64(index)))
            let moa = IPAddress.v6(IPv6Address(high: 0x2001_0db8_4001_0000, low: UInt64(index)))
            return PeerMapping(hoa: hoa, moas: [MoABinding(address: moa)], sequence: sequence)
        }
        let hoa = IPAddress.v4(IPv4Address(0x0a00_0000 | UInt32(index)))
        let moa = IPAddress.v4(IPv4Address(0x0b00_0000 | UInt32(index)))
        return PeerMapping(hoa: hoa, moas: [MoABinding(address: moa)], sequence: sequence)
    }

    @Test func aQuietTableComesWholeInParts() throws {
        var table = MappingTable(hashSeed: 7)
        for index in 0..<1_000 { try table.insert(Self.mapping(index)) }
        table.startListing()
        var seen: [IPAddress] = []
        var parts = 0
        while true {
            let (part, done) = table.continueListing(limit: 64)
            #expect(part.count <= 64)
            seen += part.map(\.hoa)
            parts += 1
            if done { break }
        }
        #expect(seen.count == 1_000)
        #expect(Set(seen) == Set((0..<1_000).map { Self.mapping($0).hoa }))
        #expect(parts == 16)
        let listing = table.isListing
        #expect(!listing)
        let after = table.continueListing(limit: 64)
        #expect(after.mappings.isEmpty && after.done)
    }

    @Test func anEmptyTableIsOnePart() {
        var table = MappingTable()
        table.startListing()
        let (part, done) = table.continueListing(limit: 10)
        #expect(part.isEmpty && done)
    }

    /// Removals between the parts move the family's last record behind the walk; inserts,
    /// replacements and removals come at random. Every mapping stored throughout comes
    /// exactly once and as it was when read; nothing that was never stored comes.
    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func everyMappingStoredThroughoutComesOnce(seed: UInt64) throws {
        var random = SeededRandom(seed: seed)
        var table = MappingTable(hashSeed: seed)
        var stored = Set<Int>()
        for index in 0..<600 {
            try table.insert(Self.mapping(index))
            stored.insert(index)
        }
        var untouched = stored
        var everStored = stored
        var sequences: [Int: UInt64] = [:]
        table.startListing()
        var seen: [IPAddress: Int] = [:]
        var done = false
        var next = 600
        while !done {
            let part = table.continueListing(limit: Int.random(in: 1...40, using: &random))
            for mapping in part.mappings {
                seen[mapping.hoa, default: 0] += 1
                let index = Self.index(of: mapping.hoa)
                #expect(everStored.contains(index))
                #expect(mapping.sequence == (sequences[index] ?? 1), "read as stored when its part was taken")
            }
            done = part.done
            for _ in 0..<Int.random(in: 0...8, using: &random) {
                switch Int.random(in: 0..<3, using: &random) {
                case 0:
                    guard let victim = stored.randomElement(using: &random) else { continue }
                    #expect(table.remove(hoa: Self.mapping(victim).hoa) != nil)
                    stored.remove(victim)
                    untouched.remove(victim)
                case 1:
                    try table.insert(Self.mapping(next))
                    stored.insert(next)
                    everStored.insert(next)
                    next += 1
                default:
                    guard let changed = stored.randomElement(using: &random) else { continue }
                    let sequence = (sequences[changed] ?? 1) + 1
                    try table.replace(Self.mapping(changed, sequence: sequence))
                    sequences[changed] = sequence
                }
            }
        }
        for index in untouched {
            #expect(seen[Self.mapping(index).hoa] == 1, "\(Self.mapping(index).hoa) came \(seen[Self.mapping(index).hoa] ?? 0) times")
        }
        #expect(seen.values.allSatisfy { $0 == 1 }, "no HoA was removed and added again, so none comes twice")
    }

    @Test func startingAgainRestartsTheWalk() throws {
        var table = MappingTable(hashSeed: 3)
        for index in 0..<100 { try table.insert(Self.mapping(index)) }
        table.startListing()
        _ = table.continueListing(limit: 60)
        table.startListing()
        var count = 0
        while true {
            let (part, done) = table.continueListing(limit: 30)
            count += part.count
            if done { break }
        }
        #expect(count == 100)
    }

    @Test func removeAllMidWalkStillListsWhatComesAfter() throws {
        var table = MappingTable(hashSeed: 5)
        for index in 0..<100 { try table.insert(Self.mapping(index)) }
        table.startListing()
        _ = table.continueListing(limit: 80)
        table.removeAll()
        for index in 200..<210 { try table.insert(Self.mapping(index)) }
        var listed: Set<IPAddress> = []
        while true {
            let (part, done) = table.continueListing(limit: 30)
            listed.formUnion(part.map(\.hoa))
            if done { break }
        }
        #expect(listed == Set((200..<210).map { Self.mapping($0).hoa }))
    }

    private static func index(of hoa: IPAddress) -> Int {
        switch hoa {
        case .v4(let address): Int(address.value & 0x00ff_ffff)
        case .v6(let address): Int(address.low)
        }
    }
}
