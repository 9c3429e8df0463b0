/// The control socket protocol: one JSON request per connection, one JSON reply, each a
/// single line. Versioned so `matctl` and `matd` of different builds fail clearly.
public enum ControlProtocol {
    /// Bumped on any incompatible change.
    public static let version = 1
}

/// A request to the daemon.
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable, CaseIterable {
        case status, peers, stats
    }

    public var version: Int
    public var command: Command

    public init(command: Command) {
        version = ControlProtocol.version
        self.command = command
    }
}

/// The daemon's reply: exactly one of the payloads, or an error.
public struct ControlReply: Codable, Sendable, Equatable {
    public var version: Int
    public var error: String?
    public var status: StatusReport?
    public var peers: [PeerReport]?
    public var stats: StatsReport?

    public init(error: String? = nil, status: StatusReport? = nil, peers: [PeerReport]? = nil,
                stats: StatsReport? = nil) {
        version = ControlProtocol.version
        self.error = error
        self.status = status
        self.peers = peers
        self.stats = stats
    }
}

/// `matctl status`: who this node is and where it is now.
public struct StatusReport: Codable, Sendable, Equatable {
    public var tunDevice: String
    public var homeAddresses: [String]
    public var mobileAddresses: [String]
    public var uplinks: [String]
    public var domainPrefixes: [String]
    public var offloads: String
    public var uptimeSeconds: UInt64
    public var peerCount: Int

    public init(tunDevice: String, homeAddresses: [String], mobileAddresses: [String], uplinks: [String],
                domainPrefixes: [String], offloads: String, uptimeSeconds: UInt64, peerCount: Int) {
        self.tunDevice = tunDevice
        self.homeAddresses = homeAddresses
        self.mobileAddresses = mobileAddresses
        self.uplinks = uplinks
        self.domainPrefixes = domainPrefixes
        self.offloads = offloads
        self.uptimeSeconds = uptimeSeconds
        self.peerCount = peerCount
    }
}

/// One peer in `matctl peers`.
public struct PeerReport: Codable, Sendable, Equatable {
    public struct Binding: Codable, Sendable, Equatable {
        public var address: String
        public var priority: Int
        public var flags: String
    }

    public var homeAddress: String
    public var mobileAddresses: [Binding]
    public var preferred: String?
    public var sequence: UInt64

    public init(homeAddress: String, mobileAddresses: [Binding], preferred: String?, sequence: UInt64) {
        self.homeAddress = homeAddress
        self.mobileAddresses = mobileAddresses
        self.preferred = preferred
        self.sequence = sequence
    }
}

/// `matctl stats`: packet and byte counters, drops by reason.
public struct StatsReport: Codable, Sendable, Equatable {
    public var outboundPackets: UInt64
    public var outboundBytes: UInt64
    public var inboundPackets: UInt64
    public var inboundBytes: UInt64
    public var superPackets: UInt64
    /// Every drop reason with its count, zeros included, so scripts can rely on the keys.
    public var drops: [String: UInt64]
    /// The IMS client's counters (queries, timeouts, stale answers served, ...), when an
    /// `[ims]` section is configured.
    public var ims: [String: UInt64]?

    public init(_ counters: EngineCounters, ims: [String: UInt64]? = nil) {
        self.ims = ims
        outboundPackets = counters.outboundPackets
        outboundBytes = counters.outboundBytes
        inboundPackets = counters.inboundPackets
        inboundBytes = counters.inboundBytes
        superPackets = counters.superPackets
        drops = Dictionary(uniqueKeysWithValues: counters.dropsByReason)
    }
}
