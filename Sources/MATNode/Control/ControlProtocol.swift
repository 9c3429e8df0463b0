/// The control socket protocol: one JSON request per connection, one JSON reply, each a
/// single line. Versioned so `matctl` and `matd` of different builds fail clearly.
public enum ControlProtocol {
    /// Bumped on any incompatible change.
    public static let version = 1
}

/// A request to the daemon.
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable, CaseIterable {
        case status, peers, stats, rebind, events, rotateKey, deregister
    }

    public var version: Int
    public var command: Command
    /// `rebind`: take the MoA from this uplink only.
    public var interface: String?
    /// `rebind`: use this address (on an uplink) as the MoA.
    public var mobileAddress: String?
    /// `events`: the events numbered above this one; nil: none, only the next number.
    public var after: UInt64?

    public init(command: Command, interface: String? = nil, mobileAddress: String? = nil, after: UInt64? = nil) {
        version = ControlProtocol.version
        self.command = command
        self.interface = interface
        self.mobileAddress = mobileAddress
        self.after = after
    }
}

/// The daemon's reply: exactly one of the payloads, or an error.
public struct ControlReply: Codable, Sendable, Equatable {
    public var version: Int
    public var error: String?
    public var status: StatusReport?
    public var peers: [PeerReport]?
    public var stats: StatsReport?
    public var rebind: RebindReport?
    /// `rotateKey`: the new key and its registration.
    public var keyRotation: KeyRotationReport?
    /// `deregister`: what the IMS no longer holds.
    public var deregistration: DeregistrationReport?
    /// `events`: what happened after the asked number, oldest first.
    public var events: [MonitorEvent]?
    /// `events`: the number the next event will have.
    public var nextEvent: UInt64?

    public init(error: String? = nil, status: StatusReport? = nil, peers: [PeerReport]? = nil,
                stats: StatsReport? = nil, rebind: RebindReport? = nil, events: [MonitorEvent]? = nil,
                nextEvent: UInt64? = nil, keyRotation: KeyRotationReport? = nil,
                deregistration: DeregistrationReport? = nil) {
        self.deregistration = deregistration
        version = ControlProtocol.version
        self.error = error
        self.keyRotation = keyRotation
        self.status = status
        self.peers = peers
        self.stats = stats
        self.rebind = rebind
        self.events = events
        self.nextEvent = nextEvent
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
    /// The Ed25519 key peers check this node's alerts with (base64; pin it in their `[peer]`).
    public var publicKey: String
    /// How IPv6 HoA traffic leaves (`sysctl`, `nftables`, `none`; docs/datapath.md).
    public var ipv6Outbound: String?
    /// The MoAs registered and announced, when they differ from `mobileAddresses` (behind
    /// 1:1 NAT: the public addresses; `public-address` in docs/config.md).
    public var publicAddresses: [String]?
    /// The kernel fast path: `on, N peer(s)`, `off`, or why it is not carrying traffic
    /// (docs/datapath.md, "Kernel fast path").
    public var kernelFastPath: String?

    public init(tunDevice: String, homeAddresses: [String], mobileAddresses: [String], uplinks: [String],
                domainPrefixes: [String], offloads: String, uptimeSeconds: UInt64, peerCount: Int,
                publicKey: String, ipv6Outbound: String? = nil) {
        self.publicKey = publicKey
        self.ipv6Outbound = ipv6Outbound
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
    /// Where the control plane's mapping came from ("configured" or "learned"); nil when
    /// only the engine's table has it, and no MoAs when only the control plane has it.
    /// Either means the two disagree, which they never should.
    public var origin: String?
    /// The last alert to this peer: `acknowledged`, `awaiting_ack`, `unanswered`; nil
    /// when this node never alerted it.
    public var alert: String?
    /// Seconds since the peer last acknowledged an alert.
    public var lastAckSecondsAgo: Double?
    /// Round trip of the last alert that was acknowledged after one send, milliseconds.
    public var roundTripMilliseconds: UInt64?
    /// `udp-encap` while its traffic goes in UDP (docs/datapath.md, "Behind NAT"), `relay`
    /// while that traffic goes through the relay, `kernel` while nftables translates it
    /// (the kernel fast path); nil: the engine.
    public var path: String?

    public init(homeAddress: String, mobileAddresses: [Binding], preferred: String?, sequence: UInt64,
                origin: String? = nil, alert: String? = nil, lastAckSecondsAgo: Double? = nil,
                roundTripMilliseconds: UInt64? = nil) {
        self.homeAddress = homeAddress
        self.mobileAddresses = mobileAddresses
        self.preferred = preferred
        self.sequence = sequence
        self.origin = origin
        self.alert = alert
        self.lastAckSecondsAgo = lastAckSecondsAgo
        self.roundTripMilliseconds = roundTripMilliseconds
    }
}

/// `matctl stats`: packet and byte counters, drops by reason.
public struct StatsReport: Codable, Sendable, Equatable {
    public var outboundPackets: UInt64
    public var outboundBytes: UInt64
    public var inboundPackets: UInt64
    public var inboundBytes: UInt64
    public var superPackets: UInt64
    /// Reads from the TUN device that failed.
    public var tunReadErrors: UInt64?
    /// Mappings the engine's table refused (stale sequence, a MoA owned by another HoA).
    public var refusedMappings: UInt64?
    /// Held packets sent once their peer was released.
    public var heldPacketsSent: UInt64?
    /// Every drop reason with its count, zeros included, so scripts can rely on the keys.
    public var drops: [String: UInt64]
    /// The IMS client's counters (queries, timeouts, stale answers served, ...), when an
    /// `[ims]` section is configured.
    public var ims: [String: UInt64]?
    /// The mobility signaling's counters (alerts sent and acknowledged, refusals by reason).
    public var signaling: [String: UInt64]?
    /// The control socket's counters (connections, clients that hung up or timed out, ...).
    public var control: [String: UInt64]?
    /// How long peers took to acknowledge this node's alerts.
    public var alertAcknowledged: DurationHistogram?
    /// How long IMS registrations and lookups took, by kind (`registration`, `lookup`).
    public var imsRequests: [String: DurationHistogram]?
    /// The UDP encapsulation's counters (`encap_packets_sent`, ...), unless it is off.
    public var encapsulation: [String: UInt64]?
    /// A relay's counters (`[relay] serve = on`, docs/signaling.md, "Relay"):
    /// `registrations_accepted`, `registrations_refused` (of which `bad_signatures`,
    /// `refused_source_budget`, `refused_verification_budget`), `forwarded`, the relayed
    /// packets refused by reason, `bindings`, the NAT bindings registered now, and
    /// `listening_ipv4`, `listening_ipv6` (1 when `encap-port` is bound in the family).
    /// nil on a node that is no relay.
    public var relay: [String: UInt64]?
    /// What the kernel fast path translated (`out4_packets`, `in6_bytes`, ...): packets
    /// not in the engine's counters above; and `rule_writes`, the transactions that changed
    /// its rules or its maps' elements. nil when it is off.
    public var kernelFastPath: [String: UInt64]?
    /// The engine's last listing of its table for `matctl peers` (`mappings`, `parts`,
    /// `longest_part_us`, the longest the engine thread stopped for one part, `total_us`);
    /// nil before the first.
    public var peerListing: [String: UInt64]?

    public init(_ counters: EngineCounters, ims: [String: UInt64]? = nil, signaling: [String: UInt64]? = nil,
                control: [String: UInt64]? = nil, alertAcknowledged: DurationHistogram? = nil,
                imsRequests: [String: DurationHistogram]? = nil) {
        self.imsRequests = imsRequests
        self.ims = ims
        self.signaling = signaling
        self.control = control
        self.alertAcknowledged = alertAcknowledged
        tunReadErrors = counters.tunReadErrors
        refusedMappings = counters.refusedMappings
        heldPacketsSent = counters.heldPacketsSent
        outboundPackets = counters.outboundPackets
        outboundBytes = counters.outboundBytes
        inboundPackets = counters.inboundPackets
        inboundBytes = counters.inboundBytes
        superPackets = counters.superPackets
        drops = Dictionary(uniqueKeysWithValues: counters.dropsByReason)
    }
}

/// `matctl rebind`: what the forced move did.
public struct RebindReport: Codable, Sendable, Equatable {
    /// What failed before any peer was alerted; nil when the rebind ran.
    public var error: String?
    /// The MoAs in use afterwards.
    public var mobileAddresses: [String]
    /// Whether the IMS confirmed the registration; nil without an IMS key.
    public var registered: Bool?
    /// How many peers the move alerted: `acknowledged` and `unanswered` together.
    public var alerted: Int
    /// Peers (HoAs) that acknowledged the new mapping.
    public var acknowledged: [String]
    /// Peers that did not acknowledge before the retransmissions ran out.
    public var unanswered: [String]
    /// From the request to the last acknowledgement, milliseconds.
    public var milliseconds: UInt64

    public init(error: String? = nil, mobileAddresses: [String] = [], registered: Bool? = nil, alerted: Int = 0,
                acknowledged: [String] = [], unanswered: [String] = [], milliseconds: UInt64 = 0) {
        self.error = error
        self.mobileAddresses = mobileAddresses
        self.registered = registered
        self.alerted = alerted
        self.acknowledged = acknowledged
        self.unanswered = unanswered
        self.milliseconds = milliseconds
    }
}
