import MATDNS

/// The records of one name and type, with the one TTL they share (RFC 2181 §5.2).
public struct RRset: Hashable, Sendable {
    /// The records' type.
    public var type: DNSType
    /// The TTL they share.
    public var ttl: UInt32
    /// The record data, in the order added.
    public var records: [DNSRecordData]

    /// An RRset of `records`.
    public init(type: DNSType, ttl: UInt32, records: [DNSRecordData]) {
        self.type = type
        self.ttl = ttl
        self.records = records
    }

    /// The RRset as resource records owned by `name`.
    public func resourceRecords(owner name: DNSName) -> [DNSResourceRecord] {
        records.map { DNSResourceRecord(name: name, ttl: ttl, data: $0) }
    }
}

/// RFC 1982 serial number arithmetic on 32-bit SOA serials.
public enum SerialNumber {
    /// Whether `a` is newer than `b`: the distance from b to a is positive and less than 2^31.
    public static func isNewer(_ a: UInt32, than b: UInt32) -> Bool {
        a != b && (a &- b) < 0x8000_0000
    }

    /// The next serial after `s` (wrapping, as RFC 1982 addition does).
    public static func next(_ s: UInt32) -> UInt32 { s &+ 1 }
}

/// The records of one zone, held in memory and answering by name.
///
/// A value type: a copy is cheap (copy-on-write dictionaries), which lets a zone transfer
/// take a consistent picture under the lock and encode it outside.
public struct ZoneStore: Sendable {
    /// The apex.
    public let origin: DNSName
    /// Records by owner name. An owner with no RRsets is not stored.
    public private(set) var nodes: [DNSName: [RRset]]
    /// For every name that has stored names below it: how many. A name with a count and
    /// no node of its own is an empty non-terminal, which answers NODATA, not NXDOMAIN.
    private var descendants: [DNSName: Int]
    /// Names below the apex that own NS records: zone cuts.
    public private(set) var delegations: Set<DNSName>
    /// For every PTR target: how many names hold a PTR to it. A node key's share of the
    /// zone is its own name plus these names, and the update limits bound it without a
    /// scan of the zone.
    private var ptrTargets: [DNSName: Int]
    /// The SOA record (kept beside the apex node for quick access).
    public private(set) var soaRecord: DNSResourceRecord

    /// A zone with only its SOA (and whatever `apexRecords` adds).
    public init(origin: DNSName, soa: DNSSOA, soaTTL: UInt32) {
        self.origin = origin
        nodes = [:]
        descendants = [:]
        delegations = []
        ptrTargets = [:]
        soaRecord = DNSResourceRecord(name: origin, ttl: soaTTL, data: .soa(soa))
        nodes[origin] = [RRset(type: .soa, ttl: soaTTL, records: [.soa(soa)])]
    }

    /// The SOA data.
    public var soa: DNSSOA {
        guard case .soa(let s) = soaRecord.data else { preconditionFailure("SOA record without SOA data") }
        return s
    }

    /// The current serial.
    public var serial: UInt32 { soa.serial }

    /// Number of owner names.
    public var nameCount: Int { nodes.count }

    /// The RRsets at `name`, nil if the name owns none.
    public func rrsets(at name: DNSName) -> [RRset]? { nodes[name] }

    /// The RRset of `type` at `name`.
    public func rrset(at name: DNSName, type: DNSType) -> RRset? {
        nodes[name]?.first { $0.type == type }
    }

    /// How many names hold a PTR record pointing at `target`.
    public func ptrCount(to target: DNSName) -> Int { ptrTargets[target] ?? 0 }

    /// Whether `name` exists in the DNS sense: it owns records or has names below it.
    public func nameExists(_ name: DNSName) -> Bool {
        nodes[name] != nil || descendants[name] != nil
    }

    /// Replaces the SOA.
    public mutating func setSOA(_ record: DNSResourceRecord) {
        soaRecord = record
        guard case .soa = record.data else { return }
        var sets = nodes[origin] ?? []
        if let i = sets.firstIndex(where: { $0.type == .soa }) {
            sets[i] = RRset(type: .soa, ttl: record.ttl, records: [record.data])
        } else {
            sets.insert(RRset(type: .soa, ttl: record.ttl, records: [record.data]), at: 0)
        }
        nodes[origin] = sets
    }

    /// Replaces everything at `name` (an empty list removes the name), keeping the
    /// empty-non-terminal counts and the zone-cut set right. The SOA is not touched here.
    public mutating func setRRsets(_ sets: [RRset], at name: DNSName) {
        let existed = nodes[name] != nil
        let oldPTRs = nodes[name]?.first { $0.type == .ptr }?.records ?? []
        let newPTRs = sets.first { $0.type == .ptr }?.records ?? []
        if oldPTRs != newPTRs {
            // An RRset holds each record once, so a name counts once per target.
            for case .ptr(let target) in oldPTRs {
                let count = (ptrTargets[target] ?? 0) - 1
                ptrTargets[target] = count > 0 ? count : nil
            }
            for case .ptr(let target) in newPTRs { ptrTargets[target, default: 0] += 1 }
        }
        if sets.isEmpty {
            guard existed else { return }
            nodes[name] = nil
            delegations.remove(name)
            adjustAncestors(of: name, by: -1)
        } else {
            nodes[name] = sets
            if name != origin, sets.contains(where: { $0.type == .ns }) {
                delegations.insert(name)
            } else {
                delegations.remove(name)
            }
            if !existed { adjustAncestors(of: name, by: 1) }
        }
    }

    private mutating func adjustAncestors(of name: DNSName, by delta: Int) {
        guard name != origin else { return }
        var cursor = name.parent
        while let ancestor = cursor {
            let count = (descendants[ancestor] ?? 0) + delta
            descendants[ancestor] = count > 0 ? count : nil
            if ancestor == origin { break }
            cursor = ancestor.parent
        }
    }

    /// Adds one record, making the RRset's TTL the record's (as BIND does). Returns false
    /// if the record was already there with that TTL.
    @discardableResult
    public mutating func add(_ record: DNSResourceRecord) -> Bool {
        if record.type == .soa {
            setSOA(record)
            return true
        }
        var sets = nodes[record.name] ?? []
        if let i = sets.firstIndex(where: { $0.type == record.type }) {
            let had = sets[i].records.contains(record.data)
            if had && sets[i].ttl == record.ttl { return false }
            if !had { sets[i].records.append(record.data) }
            sets[i].ttl = record.ttl
        } else {
            sets.append(RRset(type: record.type, ttl: record.ttl, records: [record.data]))
        }
        setRRsets(sets, at: record.name)
        return true
    }

    /// Removes one record (matched by type and data, TTL ignored).
    @discardableResult
    public mutating func remove(_ name: DNSName, _ data: DNSRecordData) -> Bool {
        guard var sets = nodes[name], let i = sets.firstIndex(where: { $0.type == data.type }),
              let j = sets[i].records.firstIndex(of: data) else { return false }
        sets[i].records.remove(at: j)
        if sets[i].records.isEmpty { sets.remove(at: i) }
        setRRsets(sets, at: name)
        return true
    }

    /// The closest zone cut at or above `name` (below the apex), if any.
    public func delegation(covering name: DNSName) -> DNSName? {
        guard !delegations.isEmpty, name != origin else { return nil }
        var found: DNSName? = nil
        var cursor: DNSName? = name
        while let current = cursor, current != origin {
            if delegations.contains(current) { found = current }
            cursor = current.parent
        }
        return found
    }

    /// Every record, SOA first, for a full transfer or a snapshot.
    public func allRecords() -> [DNSResourceRecord] {
        var result: [DNSResourceRecord] = [soaRecord]
        result.reserveCapacity(nodes.count * 2 + 1)
        for (name, sets) in nodes {
            for set in sets where set.type != .soa {
                for data in set.records {
                    result.append(DNSResourceRecord(name: name, ttl: set.ttl, data: data))
                }
            }
        }
        return result
    }

    /// Applies a recorded change (journal replay, rollback).
    public mutating func apply(_ diff: ZoneDiff) {
        for record in diff.deleted { remove(record.name, record.data) }
        for record in diff.added { add(record) }
        setSOA(diff.newSOA)
    }

    /// Undoes a change just applied.
    public mutating func revert(_ diff: ZoneDiff) {
        for record in diff.added { remove(record.name, record.data) }
        for record in diff.deleted { add(record) }
        setSOA(diff.oldSOA)
    }
}

/// One accepted change of a zone: what it removed and added, and the SOA before and after.
/// It is the unit of the journal, of IXFR and of rollback.
public struct ZoneDiff: Hashable, Sendable {
    /// The SOA record before the change.
    public var oldSOA: DNSResourceRecord
    /// The SOA record after it (serial advanced).
    public var newSOA: DNSResourceRecord
    /// Records removed, with the TTL they had.
    public var deleted: [DNSResourceRecord]
    /// Records added, with their TTL.
    public var added: [DNSResourceRecord]

    /// A change as the journal or IXFR history holds it.
    public init(oldSOA: DNSResourceRecord, newSOA: DNSResourceRecord, deleted: [DNSResourceRecord],
                added: [DNSResourceRecord]) {
        self.oldSOA = oldSOA
        self.newSOA = newSOA
        self.deleted = deleted
        self.added = added
    }

    /// The serial before the change.
    public var oldSerial: UInt32 { Self.serial(of: oldSOA) }
    /// The serial after it.
    public var newSerial: UInt32 { Self.serial(of: newSOA) }

    static func serial(of record: DNSResourceRecord) -> UInt32 {
        if case .soa(let s) = record.data { return s.serial }
        return 0
    }
}
