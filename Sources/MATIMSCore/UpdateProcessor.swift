import MATDNS

/// The result of processing one UPDATE against a zone.
public struct UpdateResult: Sendable {
    /// The RCODE for the reply.
    public var responseCode: DNSResponseCode
    /// The change applied, nil when nothing changed (refused, or a no-op update).
    public var diff: ZoneDiff?
    /// Set when the update was refused because it would pass an `UpdateLimits` bound.
    public var violation: LimitViolation? = nil
}

extension ZoneStore {
    /// RFC 2136 §3.2: every prerequisite, in order; the first that fails decides the RCODE.
    public func checkPrerequisites(_ prerequisites: [DNSUpdatePrerequisite]) -> DNSResponseCode? {
        for prerequisite in prerequisites {
            switch prerequisite {
            case .nameInUse(let name):
                if nodes[name] == nil { return .nxDomain }
            case .nameNotInUse(let name):
                if nodes[name] != nil { return .yxDomain }
            case .rrsetExists(let name, let type):
                if rrset(at: name, type: type) == nil { return .nxRRset }
            case .rrsetDoesNotExist(let name, let type):
                if rrset(at: name, type: type) != nil { return .yxRRset }
            case .rrsetEquals(let name, let type, let values):
                guard let set = rrset(at: name, type: type) else { return .nxRRset }
                // Compared as sets: same members, duplicates in the request ignored.
                guard values.allSatisfy(set.records.contains), set.records.allSatisfy(values.contains) else {
                    return .nxRRset
                }
            }
        }
        return nil
    }

    /// RFC 2136 §3.2-3.4 for a decoded UPDATE: prerequisites, permissions (a node's deletion
    /// of a MoA's PTR set narrowed to its own PTRs, ``UpdatePolicy/narrowed(_:role:store:)``), then the
    /// operations, all or nothing, then the policy's limits on the result (REFUSED, and
    /// undone, if a node would pass one). The serial goes up by one when anything changed
    /// (or to the SOA serial the update set, if newer). On return the store holds the
    /// new state; `revert(result.diff)` undoes it if the journal cannot take it.
    public mutating func process(_ request: DNSUpdateRequest, role: KeyRole, policy: UpdatePolicy) -> UpdateResult {
        if let failed = checkPrerequisites(request.prerequisites) {
            return UpdateResult(responseCode: failed, diff: nil)
        }
        let operations = policy.narrowed(request.operations, role: role, store: self)
        guard policy.permits(operations, role: role, store: self) else {
            return UpdateResult(responseCode: .refused, diff: nil)
        }
        guard let diff = apply(operations) else { return UpdateResult(responseCode: .noError, diff: nil) }
        // The limits are checked on the outcome, which is simpler and exact (deletes and
        // adds in one update, duplicates, TTL changes); undoing is cheap.
        if let violation = policy.violation(of: diff, role: role, store: self) {
            revert(diff)
            return UpdateResult(responseCode: .refused, diff: nil, violation: violation)
        }
        return UpdateResult(responseCode: .noError, diff: diff)
    }

    /// Applies operations that already passed the checks, returning the net change (nil if
    /// none). Operations RFC 2136 §3.4.2 says to ignore (apex SOA/NS deletion, the last
    /// apex NS, CNAME conflicts, an older SOA) are skipped silently.
    public mutating func apply(_ operations: [DNSUpdateOperation]) -> ZoneDiff? {
        var originals: [DNSName: [RRset]] = [:]
        var order: [DNSName] = []
        var newSOA: DNSResourceRecord? = nil

        func touch(_ name: DNSName, _ store: ZoneStore) {
            if originals[name] == nil {
                originals[name] = store.nodes[name] ?? []
                order.append(name)
            }
        }

        for operation in operations {
            switch operation {
            case .add(let record):
                let name = record.name
                if record.type == .soa {
                    // Only the apex has an SOA; a newer serial (or the same serial with
                    // other fields, which then gets bumped) replaces it.
                    guard name == origin, case .soa(let proposed) = record.data else { continue }
                    let current = newSOA.map(ZoneDiff.serial(of:)) ?? serial
                    if SerialNumber.isNewer(proposed.serial, than: current) || proposed.serial == current {
                        newSOA = DNSResourceRecord(name: origin, ttl: record.ttl, data: record.data)
                    }
                    continue
                }
                let sets = nodes[name] ?? []
                if record.type == .cname {
                    if sets.contains(where: { $0.type != .cname }) { continue }
                } else if sets.contains(where: { $0.type == .cname }) {
                    continue
                }
                touch(name, self)
                if record.type == .cname, let old = sets.first(where: { $0.type == .cname }) {
                    // One CNAME per name: a new one replaces the old.
                    var replaced = sets.filter { $0.type != .cname }
                    replaced.append(RRset(type: .cname, ttl: record.ttl, records: [record.data]))
                    if old.records != [record.data] || old.ttl != record.ttl { setRRsets(replaced, at: name) }
                    continue
                }
                add(DNSResourceRecord(name: name, ttl: record.ttl, data: record.data))
            case .deleteRRset(let name, let type):
                if name == origin && (type == .soa || type == .ns) { continue }
                guard var sets = nodes[name], let i = sets.firstIndex(where: { $0.type == type }) else { continue }
                touch(name, self)
                sets.remove(at: i)
                setRRsets(sets, at: name)
            case .deleteAllRRsets(let name):
                guard let sets = nodes[name] else { continue }
                touch(name, self)
                if name == origin {
                    setRRsets(sets.filter { $0.type == .soa || $0.type == .ns }, at: name)
                } else {
                    setRRsets([], at: name)
                }
            case .deleteRecord(let name, let data):
                if data.type == .soa { continue }
                if name == origin, data.type == .ns, let set = rrset(at: name, type: .ns), set.records.count <= 1 {
                    continue
                }
                guard rrset(at: name, type: data.type)?.records.contains(data) == true else { continue }
                touch(name, self)
                remove(name, data)
            }
        }

        var deleted: [DNSResourceRecord] = []
        var added: [DNSResourceRecord] = []
        for name in order {
            let before = (originals[name] ?? []).filter { $0.type != .soa }
            let after = (nodes[name] ?? []).filter { $0.type != .soa }
            Self.compare(before, after, owner: name, deleted: &deleted, added: &added)
        }
        let oldSOA = soaRecord
        guard !deleted.isEmpty || !added.isEmpty || (newSOA != nil && newSOA != oldSOA) else { return nil }

        var soaData = newSOA.flatMap { record -> DNSSOA? in
            if case .soa(let s) = record.data { return s }
            return nil
        } ?? soa
        if soaData.serial == serial { soaData.serial = SerialNumber.next(serial) }
        let updatedSOA = DNSResourceRecord(name: origin, ttl: newSOA?.ttl ?? oldSOA.ttl, data: .soa(soaData))
        setSOA(updatedSOA)
        return ZoneDiff(oldSOA: oldSOA, newSOA: updatedSOA, deleted: deleted, added: added)
    }

    /// The net change between two versions of a name's RRsets. A TTL change shows as the
    /// whole set deleted with the old TTL and added with the new, which IXFR needs.
    static func compare(_ before: [RRset], _ after: [RRset], owner: DNSName,
                        deleted: inout [DNSResourceRecord], added: inout [DNSResourceRecord]) {
        for old in before {
            if let new = after.first(where: { $0.type == old.type }) {
                if new.ttl != old.ttl {
                    deleted += old.resourceRecords(owner: owner)
                } else {
                    for data in old.records where !new.records.contains(data) {
                        deleted.append(DNSResourceRecord(name: owner, ttl: old.ttl, data: data))
                    }
                }
            } else {
                deleted += old.resourceRecords(owner: owner)
            }
        }
        for new in after {
            if let old = before.first(where: { $0.type == new.type }) {
                if new.ttl != old.ttl {
                    added += new.resourceRecords(owner: owner)
                } else {
                    for data in new.records where !old.records.contains(data) {
                        added.append(DNSResourceRecord(name: owner, ttl: new.ttl, data: data))
                    }
                }
            } else {
                added += new.resourceRecords(owner: owner)
            }
        }
    }
}
