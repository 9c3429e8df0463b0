// libFuzzer target over MATPacket's MappingTable: the input is a program of table
// operations (insert, replace, remove, removeExpired, removeAll) that runs against the
// table and against a plain-dictionary model of docs/mapping-table.md side by side.
// After every operation the two must agree on everything the API shows: which
// operations are refused (and then nothing changes), what remove/removeExpired return,
// the stored mappings, and every hot-path lookup (preferred MoA by HoA, HoA by MoA) for
// every address the program has used, mapped or not. Like the other targets it has no
// `main` of its own.
//
// Input: byte 0 sets maximumMappings (1...64), byte 1 the initial capacities (low nibble
// times 4 for IPv4, high nibble times 4 for IPv6), bytes 2-9 the hash seed (fixed per input, so a run is reproducible); the rest is operations.
// Addresses come mostly from a small pool (so MoAs collide, change owners, and keys
// cluster in the slots) and sometimes raw from the input (0.0.0.0 and :: included).

import MATPacket

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMapping(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = ByteReader(UnsafeBufferPointer(start: data, count: size))
    let maximumMappings = 1 + Int(input.byte() % 64)
    let capacities = input.byte()
    var seed: UInt64 = 0
    for _ in 0..<8 { seed = seed << 8 | UInt64(input.byte()) }
    var table = MappingTable(ipv4Capacity: Int(capacities & 0x0F) * 4, ipv6Capacity: Int(capacities >> 4) * 4,
                             maximumMappings: maximumMappings, hashSeed: seed)
    var model = Model(maximumMappings: maximumMappings)
    var seen = Set<IPAddress>()
    var step = 0

    while !input.isAtEnd {
        step += 1
        let op = input.byte() % 8
        switch op {
        case 0, 1, 2:  // insert (0) or replace (1, 2: the common case)
            let mapping = input.mapping()
            seen.insert(mapping.hoa)
            for binding in mapping.moas { seen.insert(binding.address) }
            let expected = op == 0 ? model.insert(mapping) : model.replace(mapping)
            var refused: MappingError? = nil
            do {
                if op == 0 { try table.insert(mapping) } else { try table.replace(mapping) }
            } catch {
                refused = error
            }
            check(expected == (refused == nil),
                  "step \(step): \(op == 0 ? "insert" : "replace")(\(mapping)) \(refused.map { "refused: \($0)" } ?? "accepted"), model \(expected ? "accepts" : "refuses")")
        case 3, 4:
            let hoa = input.address()
            seen.insert(hoa)
            let removed = table.remove(hoa: hoa)
            let expected = model.remove(hoa)
            check(removed == expected, "step \(step): remove(\(hoa)) = \(String(describing: removed)), model \(String(describing: expected))")
        case 5, 6:
            let now = UInt64(input.byte())
            let expiry = table.removeExpired(now: now)
            let expected = model.removeExpired(now: now)
            check(Set(expiry.removed) == Set(expected.removed) && expiry.removed.count == expected.removed.count,
                  "step \(step): removeExpired(\(now)) removed \(expiry.removed), model \(expected.removed)")
            check(Set(expiry.changed) == Set(expected.changed) && expiry.changed.count == expected.changed.count,
                  "step \(step): removeExpired(\(now)) changed \(expiry.changed), model \(expected.changed)")
        default:
            // removeAll is rare, or programs would seldom build up a full table.
            if input.byte() % 8 == 0 {
                table.removeAll()
                model.mappings.removeAll()
            }
        }
        compare(table, model, seen, step)
    }
    return 0
}

/// Everything the table shows must match the model.
func compare(_ table: borrowing MappingTable, _ model: Model, _ seen: Set<IPAddress>, _ step: Int) {
    check(table.count == model.mappings.count, "step \(step): count \(table.count), model \(model.mappings.count)")
    check(table.isEmpty == model.mappings.isEmpty, "step \(step): isEmpty disagrees")
    let stored = table.mappings
    check(stored.count == model.mappings.count && Set(stored) == Set(model.mappings.values),
          "step \(step): mappings \(stored), model \(Array(model.mappings.values))")
    let reverse = model.reverse
    for address in seen {
        // Forward: HoA -> mapping and preferred MoA, through both API forms.
        let mapping = model.mappings[address]
        check(table.mapping(for: address) == mapping, "step \(step): mapping(for: \(address)) disagrees")
        let preferred = mapping.map { Model.preferred($0.moas) }
        check(table.preferredMoA(forHoA: address) == preferred,
              "step \(step): preferredMoA(forHoA: \(address)) = \(String(describing: table.preferredMoA(forHoA: address))), model \(String(describing: preferred))")
        // Reverse: MoA -> HoA.
        let owner = reverse[address]
        check(table.hoa(forMoA: address) == owner,
              "step \(step): hoa(forMoA: \(address)) = \(String(describing: table.hoa(forMoA: address))), model \(String(describing: owner))")
        // The typed hot-path lookups the engine calls per packet.
        switch address {
        case .v4(let v4):
            check(table.preferredMoA(forHoA: v4).map(IPAddress.v4) == preferred, "step \(step): IPv4 preferredMoA(\(address)) disagrees")
            check(table.hoa(forMoA: v4).map(IPAddress.v4) == owner, "step \(step): IPv4 hoa(forMoA: \(address)) disagrees")
        case .v6(let v6):
            check(table.preferredMoA(forHoA: v6).map(IPAddress.v6) == preferred, "step \(step): IPv6 preferredMoA(\(address)) disagrees")
            check(table.hoa(forMoA: v6).map(IPAddress.v6) == owner, "step \(step): IPv6 hoa(forMoA: \(address)) disagrees")
        }
    }
}

/// The table as docs/mapping-table.md describes it, with dictionaries.
struct Model {
    let maximumMappings: Int
    var mappings: [IPAddress: PeerMapping] = [:]

    init(maximumMappings: Int) { self.maximumMappings = maximumMappings }

    var reverse: [IPAddress: IPAddress] {
        var result: [IPAddress: IPAddress] = [:]
        for mapping in mappings.values {
            for binding in mapping.moas { result[binding.address] = mapping.hoa }
        }
        return result
    }

    /// Reachable first, then the lowest priority, then the earliest in the list.
    static func preferred(_ moas: [MoABinding]) -> IPAddress {
        var best = moas[0]
        for binding in moas.dropFirst() {
            let better = binding.flags.contains(.reachable) != best.flags.contains(.reachable)
                ? binding.flags.contains(.reachable)
                : binding.priority < best.priority
            if better { best = binding }
        }
        return best.address
    }

    /// Whether `mapping` is acceptable for its HoA (all refusals other than stale
    /// sequence, already mapped and table full).
    func isValid(_ mapping: PeerMapping) -> Bool {
        guard !isUnspecified(mapping.hoa), !mapping.moas.isEmpty,
              mapping.moas.count <= MappingTable.maximumMoAsPerMapping else { return false }
        let owners = reverse
        var listed = Set<IPAddress>()
        for binding in mapping.moas {
            let moa = binding.address
            guard moa.family == mapping.hoa.family, !isUnspecified(moa), listed.insert(moa).inserted else {
                return false
            }
            if let owner = owners[moa], owner != mapping.hoa { return false }
        }
        return true
    }

    mutating func insert(_ mapping: PeerMapping) -> Bool {
        guard mappings[mapping.hoa] == nil, isValid(mapping), mappings.count < maximumMappings else { return false }
        mappings[mapping.hoa] = mapping
        return true
    }

    mutating func replace(_ mapping: PeerMapping) -> Bool {
        if let old = mappings[mapping.hoa] {
            guard mapping.sequence >= old.sequence, isValid(mapping) else { return false }
        } else {
            guard isValid(mapping), mappings.count < maximumMappings else { return false }
        }
        mappings[mapping.hoa] = mapping
        return true
    }

    mutating func remove(_ hoa: IPAddress) -> PeerMapping? {
        mappings.removeValue(forKey: hoa)
    }

    mutating func removeExpired(now: UInt64) -> (removed: [PeerMapping], changed: [IPAddress]) {
        var removed: [PeerMapping] = [], changed: [IPAddress] = []
        for (hoa, mapping) in mappings {
            let live = mapping.moas.filter { !($0.expiresAt != 0 && $0.expiresAt <= now) }
            if live.isEmpty {
                removed.append(mapping)
                mappings[hoa] = nil
            } else if live.count != mapping.moas.count {
                mappings[hoa]!.moas = live
                changed.append(hoa)
            }
        }
        return (removed, changed)
    }

    func isUnspecified(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let a): a.value == 0
        case .v6(let a): a.high | a.low == 0
        }
    }
}

/// Reads the operation program; past the end it reads zeros.
struct ByteReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    var isAtEnd: Bool { position >= bytes.count }

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// One byte: bit 7 picks the family; with bit 6 clear, bits 0-5 pick one of 64 pool
    /// addresses (pool 0 is the unspecified address); with bit 6 set, 4 more bytes give
    /// the address (IPv4 whole, IPv6 as the low 32 bits under 2001:db8::/96).
    mutating func address() -> IPAddress {
        let selector = byte()
        let v6 = selector & 0x80 != 0
        var value: UInt32
        if selector & 0x40 == 0 {
            let index = UInt32(selector & 0x3F)
            value = index == 0 ? 0 : (v6 ? index : 0xC633_6400 | index)  // 198.51.100.index
        } else {
            value = 0
            for _ in 0..<4 { value = value << 8 | UInt32(byte()) }
        }
        if v6 {
            return .v6(IPv6Address(high: value == 0 ? 0 : 0x2001_0DB8_0000_0000, low: UInt64(value)))
        }
        return .v4(IPv4Address(value))
    }

    /// HoA, MoA count (0...17, so both "no MoA" and "too many" occur), bindings, sequence.
    mutating func mapping() -> PeerMapping {
        let hoa = address()
        let count = Int(byte() % 18)
        var moas: [MoABinding] = []
        for _ in 0..<count {
            let moa = address()
            let details = byte()
            let expiresAt = UInt64(byte() % 4 == 0 ? byte() : 0)
            moas.append(MoABinding(address: moa, priority: details & 0x03, expiresAt: expiresAt,
                                   flags: MappingFlags(rawValue: details >> 2 & 0x07)))
        }
        return PeerMapping(hoa: hoa, moas: moas, sequence: UInt64(byte() % 8))
    }
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("FuzzMapping invariant violated: \(message())") }
}
