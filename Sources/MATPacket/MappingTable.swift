/// HoA -> MoA mappings of MAT peers, with the reverse MoA -> HoA index the receive rule
/// needs, for IPv4 and IPv6.
///
/// Two halves (docs/mapping-table.md has the numbers):
/// - the **hot half**, raw open-addressing slots (``IPv4Slots``, ``IPv6Slots``) that the
///   packet engine reads once or twice per packet: `preferredMoA(forHoA:)` on send,
///   `hoa(forMoA:)` on receive. O(1), no allocation, no reference counting, no existentials;
///   each answer is precomputed so a lookup normally touches one cache line;
/// - the **control half**, one compact record per peer (``MappingRecord``: 24 bytes for
///   IPv4, 32 for IPv6) in a dense array per family that the forward slots index, with a
///   one-MoA mapping's binding inline and longer lists out of line. Only inserts,
///   replaces, removals, expiry sweeps and the control socket touch it; the
///   `PeerMapping` values they take and return are rebuilt from it.
///
/// Which MoA is preferred: among a mapping's bindings, those flagged `.reachable` come
/// first, then the lowest `priority`, then the earliest in the list. Expired bindings drop
/// out at the next `removeExpired(now:)` sweep, which recomputes the choice; the table
/// never reads a clock itself.
///
/// Ownership: the table is non-copyable, so exactly one owner (the engine) holds it and the
/// compiler rules out aliasing. It is `@unchecked Sendable` because moving the owner to
/// another thread moves the only access to its memory with it; it must not be shared
/// between threads by reference (for example, by wrapping it in a class), since nothing in
/// it is synchronized.
public struct MappingTable: ~Copyable, @unchecked Sendable {
    /// Most MoAs one mapping may list. A node has a handful of uplinks; a bound keeps a
    /// single update from flooding the reverse index.
    public static let maximumMoAsPerMapping = 16

    @usableFromInline var forward4: IPv4Slots
    @usableFromInline var reverse4: IPv4Slots
    @usableFromInline var forward6: IPv6Slots
    @usableFromInline var reverse6: IPv6Slots
    /// One compact record per IPv4 mapping, densely packed; forward4 stores the index.
    var records4: ContiguousArray<MappingRecord<IPv4Address>> = []
    /// One compact record per IPv6 mapping; forward6 stores the index.
    var records6: ContiguousArray<MappingRecord<IPv6Address>> = []
    /// Binding lists of the mappings with more than one MoA.
    var spilled = SpilledBindings()
    /// Smallest `expiresAt` among all stored bindings, or `.max`, so a sweep with nothing
    /// due is O(1).
    var earliestExpiry: UInt64 = .max
    /// The walk ``startListing()`` began, while one is under way.
    var listing: MappingListingCursor?

    /// Most mappings this table accepts.
    public let maximumMappings: Int

    /// Creates an empty table.
    ///
    /// - Parameters:
    ///   - ipv4Capacity: IPv4 mappings (each with one MoA) to size the slots for up front,
    ///     so a bulk load neither rehashes on the way nor leaves the slot arrays wherever
    ///     the growth steps put them. Sized per family, so an IPv4-only node pays nothing
    ///     for IPv6.
    ///   - ipv6Capacity: the same for IPv6.
    ///   - maximumMappings: inserts beyond this many mappings fail with `.tableFull`, which
    ///     bounds memory whatever peers announce.
    ///   - hashSeed: the hash seed; random by default so which keys collide is not
    ///     predictable. Pass a value only for reproducible tests and benchmarks.
    public init(ipv4Capacity: Int = 0, ipv6Capacity: Int = 0,
                maximumMappings: Int = Int(UInt32.max - 1), hashSeed: UInt64? = nil) {
        precondition(maximumMappings > 0 && maximumMappings < Int(UInt32.max), "maximumMappings out of range")
        precondition(ipv4Capacity >= 0 && ipv6Capacity >= 0, "negative capacity")
        var generator = SystemRandomNumberGenerator()
        let seed = hashSeed ?? generator.next()
        let capacity4 = SlotPolicy.capacity(for: ipv4Capacity)
        let capacity6 = SlotPolicy.capacity(for: ipv6Capacity)
        forward4 = IPv4Slots(capacity: capacity4, seed: seed, keepsRecords: true)
        reverse4 = IPv4Slots(capacity: capacity4, seed: SlotPolicy.nextSeed(after: seed ^ 1), keepsRecords: false)
        forward6 = IPv6Slots(capacity: capacity6, seed: SlotPolicy.nextSeed(after: seed ^ 2), keepsRecords: true)
        reverse6 = IPv6Slots(capacity: capacity6, seed: SlotPolicy.nextSeed(after: seed ^ 3), keepsRecords: false)
        records4.reserveCapacity(min(ipv4Capacity, maximumMappings))
        records6.reserveCapacity(min(ipv6Capacity, maximumMappings))
        self.maximumMappings = maximumMappings
    }

    deinit {
        forward4.deallocate()
        reverse4.deallocate()
        forward6.deallocate()
        reverse6.deallocate()
    }

    // MARK: Hot path

    /// The MoA to send packets for `hoa` to, or nil if `hoa` is not a known peer.
    ///
    /// Called per outbound packet. O(1), allocation-free, no reference counting.
    @inlinable @inline(__always)
    public func preferredMoA(forHoA hoa: IPv4Address) -> IPv4Address? {
        guard let moa = forward4.value(for: hoa.value) else { return nil }
        return IPv4Address(moa)
    }

    /// The HoA that owns `moa`, or nil if `moa` is not a known peer's MoA. Answers the
    /// receive rule: a packet is translated back only when its source is a peer's MoA.
    ///
    /// Called per inbound packet. O(1), allocation-free, no reference counting.
    @inlinable @inline(__always)
    public func hoa(forMoA moa: IPv4Address) -> IPv4Address? {
        guard let hoa = reverse4.value(for: moa.value) else { return nil }
        return IPv4Address(hoa)
    }

    /// The MoA to send packets for `hoa` to, or nil if `hoa` is not a known peer.
    ///
    /// Called per outbound packet. O(1), allocation-free, no reference counting.
    @inlinable @inline(__always)
    public func preferredMoA(forHoA hoa: IPv6Address) -> IPv6Address? {
        forward6.value(high: hoa.high, low: hoa.low)
    }

    /// The HoA that owns `moa`, or nil if `moa` is not a known peer's MoA. Answers the
    /// receive rule for IPv6.
    ///
    /// Called per inbound packet. O(1), allocation-free, no reference counting.
    @inlinable @inline(__always)
    public func hoa(forMoA moa: IPv6Address) -> IPv6Address? {
        reverse6.value(high: moa.high, low: moa.low)
    }

    // MARK: Control plane queries

    /// Number of mappings (peers), both families.
    public var count: Int { records4.count + records6.count }

    /// Whether the table holds no mapping.
    public var isEmpty: Bool { records4.isEmpty && records6.isEmpty }

    /// The stored mapping of `hoa`, as last inserted or replaced (minus expired bindings).
    public func mapping(for hoa: IPAddress) -> PeerMapping? {
        recordIndex(of: hoa).map { storedMapping(hoa.family, $0) }
    }

    /// The MoA the family-specific `preferredMoA(forHoA:)` returns, for either family.
    public func preferredMoA(forHoA hoa: IPAddress) -> IPAddress? {
        switch hoa {
        case .v4(let address): preferredMoA(forHoA: address).map(IPAddress.v4)
        case .v6(let address): preferredMoA(forHoA: address).map(IPAddress.v6)
        }
    }

    /// The HoA owning `moa`, for either family.
    public func hoa(forMoA moa: IPAddress) -> IPAddress? {
        switch moa {
        case .v4(let address): hoa(forMoA: address).map(IPAddress.v4)
        case .v6(let address): hoa(forMoA: address).map(IPAddress.v6)
        }
    }

    /// Every stored mapping, in no particular order (for the control socket).
    public var mappings: [PeerMapping] { allMappings() }

    /// What the table occupies: exact for the raw slots, estimated for the records.
    public var memory: MappingMemory {
        MappingMemory(ipv4HotBytes: forward4.allocatedBytes + reverse4.allocatedBytes,
                      ipv6HotBytes: forward6.allocatedBytes + reverse6.allocatedBytes,
                      controlBytes: controlBytes())
    }

    // MARK: Changes

    /// Adds the mapping of a HoA that is not mapped yet.
    ///
    /// - Throws: `.hoaAlreadyMapped` if the HoA is mapped, `.tableFull`, or any validation
    ///   error (family mismatch, no MoA, too many MoAs, duplicate or unspecified address, a
    ///   MoA owned by another HoA). On error the table is unchanged.
    public mutating func insert(_ mapping: PeerMapping) throws(MappingError) {
        if recordIndex(of: mapping.hoa) != nil { throw .hoaAlreadyMapped(hoa: mapping.hoa) }
        try validate(mapping)
        try add(mapping)
    }

    /// Stores `mapping`, replacing the HoA's current mapping if there is one.
    ///
    /// MoAs the old mapping had and the new one lacks stop resolving in the reverse index
    /// at once. A mapping with a lower `sequence` than the stored one is refused; an equal
    /// one is accepted, so the mobility layer can re-apply a mapping with new flags.
    ///
    /// - Throws: `.staleSequence`, `.tableFull` (when the HoA is new), or any validation
    ///   error. On error the table is unchanged.
    public mutating func replace(_ mapping: PeerMapping) throws(MappingError) {
        guard let index = recordIndex(of: mapping.hoa) else {
            try validate(mapping)
            try add(mapping)
            return
        }
        let old = storedMapping(mapping.hoa.family, index)
        if mapping.sequence < old.sequence {
            throw .staleSequence(hoa: mapping.hoa, stored: old.sequence, offered: mapping.sequence)
        }
        try validate(mapping)
        let added = mapping.moas.filter { binding in !old.moas.contains { $0.address == binding.address } }
        let dropped = old.moas.filter { binding in !mapping.moas.contains { $0.address == binding.address } }
        for binding in dropped { removeReverse(binding.address) }
        reserveReverse(added, family: mapping.hoa.family)
        for binding in added { insertReverse(binding.address, hoa: mapping.hoa) }
        setPreferred(of: mapping)
        setBindings(mapping.hoa.family, index, mapping.moas, sequence: mapping.sequence)
        noteExpiries(of: mapping.moas)
    }

    /// Removes the mapping of `hoa`; its MoAs stop resolving at once.
    ///
    /// - Returns: the removed mapping, or nil if `hoa` was not mapped.
    @discardableResult
    public mutating func remove(hoa: IPAddress) -> PeerMapping? {
        guard let index = recordIndex(of: hoa) else { return nil }
        return removeRecord(hoa.family, at: index)
    }

    /// Removes every mapping. The slot arrays keep their size, so a reload of the same
    /// peers does not rehash.
    public mutating func removeAll() {
        forward4.removeAll()
        reverse4.removeAll()
        forward6.removeAll()
        reverse6.removeAll()
        records4.removeAll(keepingCapacity: true)
        records6.removeAll(keepingCapacity: true)
        spilled.removeAll()
        earliestExpiry = .max
        // Whatever is added next lands on records the walk had passed.
        if listing != nil { listing = MappingListingCursor() }
    }

    /// Drops every binding expired at `now` (same clock as `MoABinding.expiresAt`),
    /// recomputes the preferred MoA of the mappings that lost one, and removes mappings
    /// left with none.
    ///
    /// O(1) when nothing is due (the earliest expiry is tracked); otherwise one pass over
    /// the records. Call it from the engine's timer, e.g. once a second.
    @discardableResult
    public mutating func removeExpired(now: UInt64) -> MappingExpiry {
        var result = MappingExpiry()
        guard now >= earliestExpiry else { return result }
        var next = UInt64.max
        for family in [AddressFamily.ipv4, .ipv6] {
            var index = 0
            while index < recordCount(family) {
                let due = recordExpiry(family, index)
                guard due <= now else {
                    next = min(next, due)
                    index += 1
                    continue
                }
                let mapping = storedMapping(family, index)
                let live = mapping.moas.filter { !$0.isExpired(at: now) }
                if live.isEmpty {
                    // The last record moves into `index`, so the loop looks at it next.
                    result.removed.append(removeRecord(family, at: index))
                    continue
                }
                if live.count != mapping.moas.count {
                    for binding in mapping.moas where binding.isExpired(at: now) { removeReverse(binding.address) }
                    setBindings(family, index, live, sequence: mapping.sequence)
                    setPreferred(of: PeerMapping(hoa: mapping.hoa, moas: live))
                    result.changed.append(mapping.hoa)
                }
                next = min(next, Self.earliestExpiry(of: live))
                index += 1
            }
        }
        earliestExpiry = next
        return result
    }
}

// MARK: - Benchmark access

extension MappingTable {
    /// The four slot tables (IPv4 forward, IPv4 reverse, IPv6 forward, IPv6 reverse): the
    /// start of each slot array with its capacity and hash seed. The benchmark builds the
    /// C reference's tables with the same capacities and seeds, checks that they come out
    /// byte-identical to these arrays, and then times the C lookup over these same arrays.
    /// Not part of the API; the memory belongs to the table and lives as long as it does.
    @_spi(Benchmark)
    public var slotParameters: [(slots: UnsafeRawPointer, capacity: Int, seed: UInt64)] {
        [(UnsafeRawPointer(forward4.slots), forward4.capacity, forward4.seed),
         (UnsafeRawPointer(reverse4.slots), reverse4.capacity, reverse4.seed),
         (UnsafeRawPointer(forward6.slots), forward6.capacity, forward6.seed),
         (UnsafeRawPointer(reverse6.slots), reverse6.capacity, reverse6.seed)]
    }
}
