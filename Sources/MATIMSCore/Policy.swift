import MATDNS

/// What a TSIG key may do in a zone.
public enum KeyRole: Hashable, Sendable {
    /// May change anything in the zone (`admin-key`).
    case admin
    /// A node key, named after its HoA name `<reversed HoA>.hoa.<zone>`: may change that
    /// name (the configured types) and PTRs under `moa.<zone>` that point at it.
    case node(DNSName)
    /// A key the server knows but that has no update rights here (e.g. a transfer key).
    case none
}

/// Bounds on what one node key can make the zone hold, so that a key (stolen, or a buggy
/// node) cannot grow the zone without end: the policy lets it add any number of records at
/// its own name and a PTR at every name under `moa.<zone>`.
public struct UpdateLimits: Hashable, Sendable {
    /// A and AAAA records together at one name (a node's MoAs).
    public var addressesPerName: Int
    /// Records of all types at one name (the MoAs, the TXT, PTRs of several nodes at a
    /// MoA name).
    public var recordsPerName: Int
    /// Names a node key has records at: its own name plus every name holding a PTR to it.
    public var namesPerKey: Int

    /// 16 addresses, 20 records per name (the addresses plus a few others), 32 names
    /// (the own name and a PTR for each of 16 MoAs, with room for stale ones).
    public init(addressesPerName: Int = 16, recordsPerName: Int = 20, namesPerKey: Int = 32) {
        self.addressesPerName = addressesPerName
        self.recordsPerName = recordsPerName
        self.namesPerKey = namesPerKey
    }
}

/// An UPDATE that would take a node past one of its `UpdateLimits`.
public struct LimitViolation: Hashable, Sendable, CustomStringConvertible {
    /// Which limit.
    public enum Kind: Hashable, Sendable {
        case addressesPerName
        case recordsPerName
        case namesPerKey
    }

    /// Which limit the update would pass.
    public var kind: Kind
    /// The name that would grow too large, or the key that would own too many names.
    public var name: DNSName
    /// The count the update would lead to.
    public var count: Int
    /// The configured limit.
    public var limit: Int

    /// The log line's wording.
    public var description: String {
        switch kind {
        case .addressesPerName: "\(name) would hold \(count) A/AAAA records (max-addresses-per-name \(limit))"
        case .recordsPerName: "\(name) would hold \(count) records (max-records-per-name \(limit))"
        case .namesPerKey: "key \(name) would have records at \(count) names (max-names-per-key \(limit))"
        }
    }
}

/// The update policy of one zone: BIND's
/// `grant * self * A AAAA TXT; grant * subdomain moa.<zone> PTR;`, with the PTR grant
/// narrowed to PTRs whose target is the key's own name.
public struct UpdatePolicy: Sendable {
    /// The zone apex.
    public let zone: DNSName
    /// `hoa.<zone>`: node keys are named below it.
    public let hoaSuffix: DNSName
    /// `moa.<zone>`: the reverse first-contact names.
    public let moaSuffix: DNSName
    /// Keys that may change anything in the zone.
    public let adminKeys: Set<DNSName>
    /// Types a node may write at its own name; nil is every type.
    public let nodeTypes: Set<DNSType>?
    /// What node keys may grow the zone to; admin keys are not bound.
    public let limits: UpdateLimits

    /// The policy `config` describes.
    public init(_ config: ZoneConfiguration) {
        zone = config.name
        hoaSuffix = config.hoaSuffix
        moaSuffix = config.moaSuffix
        adminKeys = config.adminKeys
        nodeTypes = config.nodeTypes
        limits = config.updateLimits
    }

    /// The role of `keyName` in this zone.
    public func role(of keyName: DNSName) -> KeyRole {
        if adminKeys.contains(keyName) { return .admin }
        if keyName != hoaSuffix, keyName.isSubdomain(of: hoaSuffix) { return .node(keyName) }
        return .none
    }

    /// Whether `role` may perform every operation. State-dependent checks (deleting an
    /// RRset or a name) look at what is there now: a node may delete a set only if all of
    /// it is its own, as BIND's `ssu_checkall` requires.
    public func permits(_ operations: [DNSUpdateOperation], role: KeyRole, store: ZoneStore) -> Bool {
        switch role {
        case .admin:
            return true
        case .none:
            return false
        case .node(let own):
            return operations.allSatisfy { permits($0, node: own, store: store) }
        }
    }

    /// `operations` as `role` may have them: a node key's deletion of the PTR set at a MoA
    /// name deletes only its own PTRs there when others' are in it too.
    ///
    /// A registration replaces the PTR set at each of its MoAs. When the MoA still holds
    /// the PTR of a node that left it (killed, its registration not expired yet), the set is
    /// not all the key's own, and refusing the deletion would refuse the whole registration
    /// until the old node's lifetime ran out. Narrowed, the registration goes in at once and
    /// the MoA has two claimants, which the peers settle by reachability: a peer takes a MoA
    /// for a HoA only when that HoA answers from it, signed with its key (docs/security.md,
    /// S6). No key gains anything by this: adding its own PTR next to others' was always
    /// allowed, and deleting another's still is not.
    public func narrowed(_ operations: [DNSUpdateOperation], role: KeyRole, store: ZoneStore) -> [DNSUpdateOperation] {
        guard case .node(let own) = role else { return operations }
        return operations.flatMap { operation -> [DNSUpdateOperation] in
            guard case .deleteRRset(let name, .ptr) = operation, isMoAName(name),
                  let records = store.rrset(at: name, type: .ptr)?.records,
                  !records.allSatisfy({ isOwnPTR($0, own: own) }) else { return [operation] }
            return records.filter { isOwnPTR($0, own: own) }.map { .deleteRecord(name, $0) }
        }
    }

    private func mayWriteOwn(_ type: DNSType) -> Bool {
        guard type != .soa, type != .ns else { return false }
        return nodeTypes?.contains(type) ?? true
    }

    private func isMoAName(_ name: DNSName) -> Bool {
        name != moaSuffix && name.isSubdomain(of: moaSuffix)
    }

    private func isOwnPTR(_ data: DNSRecordData, own: DNSName) -> Bool {
        if case .ptr(let target) = data { return target == own }
        return false
    }

    private func permits(_ operation: DNSUpdateOperation, node own: DNSName, store: ZoneStore) -> Bool {
        switch operation {
        case .add(let record):
            if record.name == own { return mayWriteOwn(record.type) }
            return isMoAName(record.name) && record.type == .ptr && isOwnPTR(record.data, own: own)
        case .deleteRecord(let name, let data):
            if name == own { return mayWriteOwn(data.type) }
            return isMoAName(name) && data.type == .ptr && isOwnPTR(data, own: own)
        case .deleteRRset(let name, let type):
            if name == own { return mayWriteOwn(type) }
            guard isMoAName(name), type == .ptr else { return false }
            return (store.rrset(at: name, type: .ptr)?.records ?? []).allSatisfy { isOwnPTR($0, own: own) }
        case .deleteAllRRsets(let name):
            let sets = store.rrsets(at: name) ?? []
            if name == own { return sets.allSatisfy { mayWriteOwn($0.type) } }
            guard isMoAName(name) else { return false }
            return sets.allSatisfy { $0.type == .ptr && $0.records.allSatisfy { isOwnPTR($0, own: own) } }
        }
    }

    /// The first limit that `diff`, just applied to `store`, takes a node past. Only
    /// growth counts: a name or key already over a limit (the limit was lowered, or an
    /// admin wrote the records) may shrink or stay as it is.
    public func violation(of diff: ZoneDiff, role: KeyRole, store: ZoneStore) -> LimitViolation? {
        guard case .node(let own) = role else { return nil }
        // Per name: (records, addresses) added minus deleted, for the names that gained any.
        var growth: [DNSName: (records: Int, addresses: Int)] = [:]
        for record in diff.added {
            growth[record.name, default: (0, 0)].records += 1
            if record.type == .a || record.type == .aaaa { growth[record.name, default: (0, 0)].addresses += 1 }
        }
        for record in diff.deleted where growth[record.name] != nil {
            growth[record.name]!.records -= 1
            if record.type == .a || record.type == .aaaa { growth[record.name]!.addresses -= 1 }
        }
        for (name, delta) in growth {
            let sets = store.rrsets(at: name) ?? []
            let addresses = sets.filter { $0.type == .a || $0.type == .aaaa }.reduce(0) { $0 + $1.records.count }
            if delta.addresses > 0, addresses > limits.addressesPerName {
                return LimitViolation(kind: .addressesPerName, name: name, count: addresses, limit: limits.addressesPerName)
            }
            let records = sets.reduce(0) { $0 + $1.records.count }
            if delta.records > 0, records > limits.recordsPerName {
                return LimitViolation(kind: .recordsPerName, name: name, count: records, limit: limits.recordsPerName)
            }
        }
        let ownPTRs = { (records: [DNSResourceRecord]) in records.filter { isOwnPTR($0.data, own: own) }.count }
        let names = 1 + store.ptrCount(to: own)
        if ownPTRs(diff.added) > ownPTRs(diff.deleted), names > limits.namesPerKey {
            return LimitViolation(kind: .namesPerKey, name: own, count: names, limit: limits.namesPerKey)
        }
        return nil
    }
}
