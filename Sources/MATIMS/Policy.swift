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

/// The update policy of one zone: BIND's
/// `grant * self * A AAAA TXT; grant * subdomain moa.<zone> PTR;`, with the PTR grant
/// narrowed to PTRs whose target is the key's own name.
public struct UpdatePolicy: Sendable {
    public let zone: DNSName
    public let hoaSuffix: DNSName
    public let moaSuffix: DNSName
    public let adminKeys: Set<DNSName>
    /// Types a node may write at its own name; nil is every type.
    public let nodeTypes: Set<DNSType>?

    public init(_ config: ZoneConfiguration) {
        zone = config.name
        hoaSuffix = config.hoaSuffix
        moaSuffix = config.moaSuffix
        adminKeys = config.adminKeys
        nodeTypes = config.nodeTypes
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
}
