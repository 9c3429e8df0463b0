/// Builds an RFC 2136 UPDATE message one operation at a time.
///
/// Each method writes the exact CLASS/TTL/RDLENGTH encoding RFC 2136 §2.4-2.5 prescribes,
/// so callers think in operations ("delete the AAAA RRset") rather than in class tricks.
/// An idempotent "set MoA" is `deleteRRset(name, .aaaa)` followed by `add(...)`, in one
/// message, which servers apply atomically.
public struct DNSUpdateBuilder: Hashable, Sendable {
    /// Message ID.
    public var id: UInt16
    /// The zone being updated.
    public var zone: DNSName
    /// The zone's class; prerequisites that compare values and additions use it.
    public var zoneClass: DNSClass
    /// Prerequisite records, in order.
    public private(set) var prerequisites: [DNSResourceRecord] = []
    /// Update records, in order.
    public private(set) var updates: [DNSResourceRecord] = []

    /// Starts an empty update of `zone`.
    public init(id: UInt16, zone: DNSName, zoneClass: DNSClass = .in) {
        self.id = id
        self.zone = zone
        self.zoneClass = zoneClass
    }

    /// Prerequisite: `name` owns at least one record (§2.4.4), else NXDOMAIN.
    public mutating func requireNameInUse(_ name: DNSName) {
        prerequisites.append(DNSResourceRecord(name: name, class: .any, ttl: 0, data: .empty(.any)))
    }

    /// Prerequisite: `name` owns no records at all (§2.4.5), else YXDOMAIN.
    public mutating func requireNameNotInUse(_ name: DNSName) {
        prerequisites.append(DNSResourceRecord(name: name, class: .none, ttl: 0, data: .empty(.any)))
    }

    /// Prerequisite: an RRset of `type` exists at `name`, whatever its value (§2.4.1),
    /// else NXRRSET.
    public mutating func requireRRsetExists(_ name: DNSName, type: DNSType) {
        prerequisites.append(DNSResourceRecord(name: name, class: .any, ttl: 0, data: .empty(type)))
    }

    /// Prerequisite: the RRset at `name` is exactly `values` (§2.4.2), else NXRRSET. All
    /// values must be of one type; this is the compare-and-swap for racing updaters.
    public mutating func requireRRset(_ name: DNSName, equals values: [DNSRecordData]) {
        for value in values {
            prerequisites.append(DNSResourceRecord(name: name, class: zoneClass, ttl: 0, data: value))
        }
    }

    /// Prerequisite: no RRset of `type` exists at `name` (§2.4.3), else YXRRSET.
    public mutating func requireRRsetDoesNotExist(_ name: DNSName, type: DNSType) {
        prerequisites.append(DNSResourceRecord(name: name, class: .none, ttl: 0, data: .empty(type)))
    }

    /// Adds a record to an RRset (§2.5.1); a duplicate is silently ignored by servers.
    public mutating func add(_ name: DNSName, ttl: UInt32, _ data: DNSRecordData) {
        updates.append(DNSResourceRecord(name: name, class: zoneClass, ttl: ttl, data: data))
    }

    /// Deletes the whole RRset of `type` at `name` (§2.5.2).
    public mutating func deleteRRset(_ name: DNSName, type: DNSType) {
        updates.append(DNSResourceRecord(name: name, class: .any, ttl: 0, data: .empty(type)))
    }

    /// Deletes every RRset at `name` (§2.5.3).
    public mutating func deleteAllRRsets(_ name: DNSName) {
        updates.append(DNSResourceRecord(name: name, class: .any, ttl: 0, data: .empty(.any)))
    }

    /// Deletes the one record at `name` whose data is `data` (§2.5.4).
    public mutating func delete(_ name: DNSName, _ data: DNSRecordData) {
        updates.append(DNSResourceRecord(name: name, class: .none, ttl: 0, data: data))
    }

    /// The UPDATE message, ready to encode and sign.
    public var message: DNSMessage {
        DNSMessage(header: DNSHeader(id: id, opcode: .update),
                   questions: [DNSQuestion(name: zone, type: .soa, class: zoneClass)],
                   answers: prerequisites, authorities: updates)
    }
}

/// One prerequisite of a received UPDATE, decoded from its class/type encoding.
public enum DNSUpdatePrerequisite: Hashable, Sendable {
    /// The name owns some record (else NXDOMAIN).
    case nameInUse(DNSName)
    /// The name owns no record (else YXDOMAIN).
    case nameNotInUse(DNSName)
    /// An RRset of the type exists (else NXRRSET).
    case rrsetExists(DNSName, DNSType)
    /// The RRset of the type is exactly these values (else NXRRSET). Records of one
    /// name and type are gathered here, as RFC 2136 §3.2.3 compares whole RRsets.
    case rrsetEquals(DNSName, DNSType, [DNSRecordData])
    /// No RRset of the type exists (else YXRRSET).
    case rrsetDoesNotExist(DNSName, DNSType)
}

/// One change of a received UPDATE, decoded from its class/type encoding.
public enum DNSUpdateOperation: Hashable, Sendable {
    /// Add this record (ignore if already present).
    case add(DNSResourceRecord)
    /// Delete the RRset of the type at the name.
    case deleteRRset(DNSName, DNSType)
    /// Delete all RRsets at the name.
    case deleteAllRRsets(DNSName)
    /// Delete the one record with this data at the name.
    case deleteRecord(DNSName, DNSRecordData)
}

/// Why a received UPDATE is refused before any change is tried.
public enum DNSUpdateError: Error, Hashable, Sendable {
    /// The opcode is not UPDATE, or the message is a response.
    case notAnUpdate
    /// The zone section must hold exactly one SOA question (§3.1.1).
    case badZoneSection
    /// A prerequisite with a class/TTL/RDATA combination §3.2 does not allow.
    case badPrerequisite(index: Int)
    /// An update record that fails the §3.4.1.2 prescan.
    case badUpdate(index: Int)
    /// A prerequisite or update names something outside the zone (§3.2.1, §3.4.1.3).
    case outOfZone(DNSName)

    /// The response code RFC 2136 prescribes for this refusal.
    public var responseCode: DNSResponseCode {
        switch self {
        case .notAnUpdate: .notImp
        case .outOfZone: .notZone
        case .badZoneSection, .badPrerequisite, .badUpdate: .formErr
        }
    }
}

/// A received UPDATE, checked for form and decoded into operations, so the server's
/// apply step deals only in meaning (RFC 2136 §3.1-3.4 prescans).
public struct DNSUpdateRequest: Hashable, Sendable {
    /// Message ID, for the reply.
    public var id: UInt16
    /// The zone named in the zone section.
    public var zone: DNSName
    /// The zone's class.
    public var zoneClass: DNSClass
    /// Prerequisites, all of which must hold.
    public var prerequisites: [DNSUpdatePrerequisite]
    /// Changes, applied in order and atomically.
    public var operations: [DNSUpdateOperation]

    /// Decodes `message`, refusing it with the RFC 2136 error that a server must return.
    /// Whether this server is authoritative for `zone` (NOTAUTH) is the caller's check.
    public init(_ message: DNSMessage) throws(DNSUpdateError) {
        guard message.header.opcode == .update, !message.header.isResponse else { throw .notAnUpdate }
        guard message.questions.count == 1, message.questions[0].type == .soa else { throw .badZoneSection }
        id = message.header.id
        zone = message.questions[0].name
        zoneClass = message.questions[0].questionClass
        prerequisites = try Self.prerequisites(message.prerequisites, zone: zone, zoneClass: zoneClass)
        operations = try Self.operations(message.updates, zone: zone, zoneClass: zoneClass)
    }

    private static func prerequisites(_ records: [DNSResourceRecord], zone: DNSName,
                                      zoneClass: DNSClass) throws(DNSUpdateError) -> [DNSUpdatePrerequisite] {
        var result: [DNSUpdatePrerequisite] = []
        // Value-dependent records gathered per (name, type), placed where first seen.
        var gathered: [RRsetKey: Int] = [:]
        for (index, rr) in records.enumerated() {
            guard rr.ttl == 0 else { throw .badPrerequisite(index: index) }
            guard rr.name.isSubdomain(of: zone) else { throw .outOfZone(rr.name) }
            let isEmpty = if case .empty = rr.data { true } else { false }
            switch rr.recordClass {
            case .any:
                guard isEmpty else { throw .badPrerequisite(index: index) }
                result.append(rr.type == .any ? .nameInUse(rr.name) : .rrsetExists(rr.name, rr.type))
            case .none:
                guard isEmpty else { throw .badPrerequisite(index: index) }
                result.append(rr.type == .any ? .nameNotInUse(rr.name) : .rrsetDoesNotExist(rr.name, rr.type))
            case zoneClass:
                guard !isEmpty, !rr.type.isMetaType else { throw .badPrerequisite(index: index) }
                let key = RRsetKey(name: rr.name, type: rr.type)
                if let at = gathered[key], case .rrsetEquals(let n, let t, var values) = result[at] {
                    values.append(rr.data)
                    result[at] = .rrsetEquals(n, t, values)
                } else {
                    gathered[key] = result.count
                    result.append(.rrsetEquals(rr.name, rr.type, [rr.data]))
                }
            default:
                throw .badPrerequisite(index: index)
            }
        }
        return result
    }

    private static func operations(_ records: [DNSResourceRecord], zone: DNSName,
                                   zoneClass: DNSClass) throws(DNSUpdateError) -> [DNSUpdateOperation] {
        var result: [DNSUpdateOperation] = []
        result.reserveCapacity(records.count)
        for (index, rr) in records.enumerated() {
            guard rr.name.isSubdomain(of: zone) else { throw .outOfZone(rr.name) }
            let isEmpty = if case .empty = rr.data { true } else { false }
            let isTransferType = rr.type == .axfr || rr.type == .ixfr || rr.type == .maila || rr.type == .mailb
            switch rr.recordClass {
            case zoneClass:
                guard !isEmpty, !rr.type.isMetaType else { throw .badUpdate(index: index) }
                result.append(.add(rr))
            case .any:
                guard rr.ttl == 0, isEmpty, !isTransferType else { throw .badUpdate(index: index) }
                result.append(rr.type == .any ? .deleteAllRRsets(rr.name) : .deleteRRset(rr.name, rr.type))
            case .none:
                guard rr.ttl == 0, !isEmpty, !rr.type.isMetaType else { throw .badUpdate(index: index) }
                result.append(.deleteRecord(rr.name, rr.data))
            default:
                throw .badUpdate(index: index)
            }
        }
        return result
    }
}

private struct RRsetKey: Hashable {
    var name: DNSName
    var type: DNSType
}
