/// Control-plane values of the mapping table: what a peer's mapping is, how one of its
/// mobile addresses is qualified, and why the table refuses a mapping.
///
/// These are ordinary Swift values (arrays, enums) because they are only touched when a
/// mapping changes; the packet path never sees them, it reads the raw slots in
/// `MappingSlots.swift`.

/// Facts the mobility layer has established about one MoA binding.
///
/// Only `reachable` changes which MoA carries traffic (see ``MappingTable``); the others
/// are kept so the control socket and the IMS client can show and reason about them.
public struct MappingFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    /// The flag bits; bits without a name are kept and shown, not dropped.
    public let rawValue: UInt8

    /// Wraps flag bits.
    @inlinable
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The binding was confirmed by the IMS or by a signature whose key the IMS (or pinned
    /// configuration) binds to the HoA, so it is not just a peer's claim.
    public static let confirmed = MappingFlags(rawValue: 1 << 0)
    /// The MoA answered a reachability check, so bulk traffic may go there.
    public static let reachable = MappingFlags(rawValue: 1 << 1)
    /// The binding comes from local configuration rather than signaling; such bindings
    /// normally carry `expiresAt == 0`.
    public static let `static` = MappingFlags(rawValue: 1 << 2)

    /// The set flags by name, e.g. `[confirmed,reachable]`.
    public var description: String {
        var names: [String] = []
        if contains(.confirmed) { names.append("confirmed") }
        if contains(.reachable) { names.append("reachable") }
        if contains(.static) { names.append("static") }
        let unknown = rawValue & ~(MappingFlags.confirmed.rawValue | MappingFlags.reachable.rawValue
            | MappingFlags.static.rawValue)
        if unknown != 0 { names.append("0x" + String(unknown, radix: 16)) }
        return "[" + names.joined(separator: ",") + "]"
    }
}

/// One mobile address (MoA) at which a peer's HoA can currently be reached.
public struct MoABinding: Hashable, Sendable, CustomStringConvertible {
    /// Where packets for the HoA are sent. Must be of the HoA's address family.
    public var address: IPAddress
    /// Preference among the peer's MoAs: lower is preferred.
    public var priority: UInt8
    /// What the mobility layer knows about this binding.
    public var flags: MappingFlags
    /// The caller's monotonic clock, in seconds, at which the binding stops being valid;
    /// 0 means it never expires. Kept in the caller's clock so the table never reads time
    /// itself and tests can drive expiry deterministically.
    public var expiresAt: UInt64

    /// Creates a binding. Fields are declared so that the struct packs into 32 bytes.
    @inlinable
    public init(address: IPAddress, priority: UInt8 = 0, expiresAt: UInt64 = 0,
                flags: MappingFlags = []) {
        self.address = address
        self.priority = priority
        self.flags = flags
        self.expiresAt = expiresAt
    }

    /// Whether the binding is no longer valid at `now` (the same clock as `expiresAt`).
    @inlinable
    public func isExpired(at now: UInt64) -> Bool { expiresAt != 0 && expiresAt <= now }

    /// One line for logs and `matctl`: address, priority, expiry, flags.
    public var description: String {
        "\(address) prio=\(priority) expires=\(expiresAt == 0 ? "never" : String(expiresAt)) \(flags)"
    }
}

/// Everything the table knows about one peer: its HoA and the MoAs it is reachable at.
public struct PeerMapping: Hashable, Sendable, CustomStringConvertible {
    /// The peer's stable home address, the key of the mapping.
    public var hoa: IPAddress
    /// The peer's current mobile addresses, in the order the caller gave them (the order
    /// breaks ties between equally preferred bindings).
    public var moas: [MoABinding]
    /// The mapping's version as published by its owner (IMS TXT record or binding update);
    /// the table refuses to replace a mapping with an older one.
    public var sequence: UInt64

    /// Creates a mapping.
    @inlinable
    public init(hoa: IPAddress, moas: [MoABinding], sequence: UInt64 = 0) {
        self.hoa = hoa
        self.moas = moas
        self.sequence = sequence
    }

    /// One line for logs and `matctl`: HoA, sequence and every binding.
    public var description: String {
        "\(hoa) seq=\(sequence) -> [" + moas.map(\.description).joined(separator: "; ") + "]"
    }
}

/// Why the mapping table refused a change. Each case names the addresses involved so a
/// log line or a `matctl` reply says exactly what was wrong.
public enum MappingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A MoA is not of the HoA's family. MAT here rewrites addresses in place and never
    /// translates between IPv4 and IPv6 (that would change header sizes, checksums and
    /// ICMP semantics), so an IPv4 HoA can only be reached through IPv4 MoAs and likewise
    /// for IPv6.
    case addressFamilyMismatch(hoa: IPAddress, moa: IPAddress)
    /// The mapping lists no MoA; removing a peer is `remove(hoa:)`, not an empty mapping.
    case noMoA(hoa: IPAddress)
    /// The mapping lists more MoAs than ``MappingTable/maximumMoAsPerMapping``.
    case tooManyMoAs(hoa: IPAddress, count: Int, limit: Int)
    /// The same MoA appears twice in one mapping.
    case duplicateMoA(hoa: IPAddress, moa: IPAddress)
    /// `0.0.0.0` or `::` was used as a HoA or MoA. Those addresses mean "no address" and
    /// mark empty slots in the table.
    case unspecifiedAddress(hoa: IPAddress)
    /// The MoA already belongs to another HoA. Inbound packets are translated back by
    /// looking their source MoA up, so one MoA must name exactly one HoA; the control plane
    /// must remove or replace the stale owner first.
    case moaOwnedByAnotherHoA(moa: IPAddress, owner: IPAddress, hoa: IPAddress)
    /// `insert` was given a HoA that is already mapped; use `replace` to change it.
    case hoaAlreadyMapped(hoa: IPAddress)
    /// `replace` was given an older sequence number than the stored mapping's, which is what
    /// a reordered or replayed update looks like.
    case staleSequence(hoa: IPAddress, stored: UInt64, offered: UInt64)
    /// The table already holds its configured maximum number of mappings.
    case tableFull(limit: Int)

    /// A sentence naming the addresses involved and what to do, for logs and `matctl`.
    public var description: String {
        switch self {
        case let .addressFamilyMismatch(hoa, moa):
            "address family mismatch: \(hoa.family) HoA \(hoa) cannot be reached through "
                + "\(moa.family) MoA \(moa) (translation between IPv4 and IPv6 is not supported)"
        case let .noMoA(hoa):
            "mapping for HoA \(hoa) lists no MoA"
        case let .tooManyMoAs(hoa, count, limit):
            "mapping for HoA \(hoa) lists \(count) MoAs, more than the limit of \(limit)"
        case let .duplicateMoA(hoa, moa):
            "mapping for HoA \(hoa) lists MoA \(moa) more than once"
        case let .unspecifiedAddress(hoa):
            "mapping for HoA \(hoa) uses the unspecified address (0.0.0.0 or ::)"
        case let .moaOwnedByAnotherHoA(moa, owner, hoa):
            "MoA \(moa) offered for HoA \(hoa) already belongs to HoA \(owner); "
                + "remove or replace that mapping first"
        case let .hoaAlreadyMapped(hoa):
            "HoA \(hoa) is already mapped (use replace to change it)"
        case let .staleSequence(hoa, stored, offered):
            "mapping for HoA \(hoa) has sequence \(offered), older than the stored \(stored)"
        case let .tableFull(limit):
            "mapping table is full (\(limit) mappings)"
        }
    }
}

/// What one expiry sweep changed, so the caller can re-query the IMS for peers that lost
/// all their MoAs and tell the engine which peers now use another MoA.
public struct MappingExpiry: Hashable, Sendable {
    /// Mappings removed because every MoA binding had expired, as they were before removal.
    public var removed: [PeerMapping]
    /// HoAs that lost some bindings but still have at least one.
    public var changed: [IPAddress]

    /// Creates a sweep result.
    public init(removed: [PeerMapping] = [], changed: [IPAddress] = []) {
        self.removed = removed
        self.changed = changed
    }
}

/// Bytes the table holds, split by who touches them.
public struct MappingMemory: Hashable, Sendable {
    /// Exact size of the raw IPv4 slot arrays (forward, reverse, record index).
    public var ipv4HotBytes: Int
    /// Exact size of the raw IPv6 slot arrays (forward, reverse, record index).
    public var ipv6HotBytes: Int
    /// Estimated heap of the control half: the record arrays' capacities, the spilled
    /// binding lists and their pool, rounded the way glibc malloc rounds each buffer.
    public var controlBytes: Int

    /// Creates a memory report.
    public init(ipv4HotBytes: Int, ipv6HotBytes: Int, controlBytes: Int) {
        self.ipv4HotBytes = ipv4HotBytes
        self.ipv6HotBytes = ipv6HotBytes
        self.controlBytes = controlBytes
    }

    /// All bytes, hot and control.
    public var totalBytes: Int { ipv4HotBytes + ipv6HotBytes + controlBytes }
}
