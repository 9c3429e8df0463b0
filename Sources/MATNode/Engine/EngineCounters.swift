import MATPacket

/// Why the engine, rather than the packet core, refused a packet.
public enum EngineDropReason: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// An outbound packet to a HoA with no known mapping.
    case noMapping = 0
    /// An outbound packet whose source is not this node's HoA.
    case notFromHomeAddress
    /// No mobile address for the packet's family (the uplink has none right now).
    case noMobileAddress
    /// An inbound packet whose source is not a known peer's MoA.
    case unknownPeer
    /// An inbound packet not addressed to this node's MoA.
    case notToMobileAddress
    /// A read shorter than the virtio header, or a header the engine cannot honour.
    case badVirtioHeader
    /// The kernel refused the translated packet (for example no route to the peer's MoA).
    case writeFailed
    /// An outbound packet to a peer that has not yet confirmed this node's new MoA (or
    /// first contact): sent now, it would reach the peer from an address the peer does not
    /// divert, and the peer's stack would answer it with a reset.
    case awaitingBinding
    /// An outbound packet to a MoA a peer announced but has not yet proven it answers at,
    /// past three times the bytes received from it (QUIC's anti-amplification limit, RFC
    /// 9000 section 8.1): a forged or mistaken alert cannot aim a flood at a bystander.
    case unvalidatedPath

    public var description: String {
        switch self {
        case .noMapping: "no_mapping"
        case .notFromHomeAddress: "not_from_home_address"
        case .noMobileAddress: "no_mobile_address"
        case .unknownPeer: "unknown_peer"
        case .notToMobileAddress: "not_to_mobile_address"
        case .badVirtioHeader: "bad_virtio_header"
        case .writeFailed: "write_failed"
        case .awaitingBinding: "awaiting_binding"
        case .unvalidatedPath: "unvalidated_path"
        }
    }
}

/// Packet and byte counters of the engine, in fixed storage so counting never allocates.
public struct EngineCounters: Sendable, Equatable {
    public var outboundPackets: UInt64 = 0
    public var outboundBytes: UInt64 = 0
    public var inboundPackets: UInt64 = 0
    public var inboundBytes: UInt64 = 0
    /// GSO super-packets among the packets above (one read, many wire packets).
    public var superPackets: UInt64 = 0
    /// Reads from the TUN device that failed (not "nothing waiting").
    public var tunReadErrors: UInt64 = 0
    /// Mappings the table refused (stale sequence, a MoA owned by another HoA, ...).
    public var refusedMappings: UInt64 = 0
    /// Kept packets sent when their peer was released or the unvalidated MoA they were
    /// going to answered (the last one of each flow).
    public var heldPacketsSent: UInt64 = 0
    /// Drops by packet-core reason, indexed by `DropReason.rawValue`.
    public var packetDrops = [UInt64](repeating: 0, count: DropReason.allCases.count)
    /// Drops by engine reason, indexed by `EngineDropReason.rawValue`.
    public var engineDrops = [UInt64](repeating: 0, count: EngineDropReason.allCases.count)

    public init() {}

    /// All drops as (name, count), for the control socket and metrics.
    public var dropsByReason: [(String, UInt64)] {
        DropReason.allCases.map { ($0.description, packetDrops[Int($0.rawValue)]) }
            + EngineDropReason.allCases.map { ($0.description, engineDrops[Int($0.rawValue)]) }
    }

    /// The total of all drops.
    public var totalDrops: UInt64 { packetDrops.reduce(0, +) + engineDrops.reduce(0, +) }
}
