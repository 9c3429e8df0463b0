import MATDNS
import MATPacket

/// How hard the journal pushes an accepted change to disk before the reply goes out.
public enum JournalSync: String, Sendable {
    /// `write(2)` completed and then `fdatasync(2)`: survives `kill -9` and power loss.
    case fsync
    /// `write(2)` completed: the page cache survives `kill -9` and a daemon crash, not a
    /// power loss or kernel crash.
    case write
}

/// Who may fetch a zone with AXFR/IXFR.
public enum TransferRule: Hashable, Sendable {
    /// Requests from an address inside the prefix.
    case prefix(IMSPrefix)
    /// Requests signed (and verified) with this key.
    case key(DNSName)
    /// Anyone.
    case any
}

/// One zone mat-ims is authoritative for.
public struct ZoneConfiguration: Sendable {
    /// The apex, e.g. `mat.example.`.
    public var name: DNSName
    /// Name servers placed at the apex (NS) and the first one as the SOA MNAME.
    public var nameServers: [DNSName]
    /// Glue: addresses of in-zone name servers.
    public var glue: [(name: DNSName, address: IPAddress)]
    /// SOA RNAME.
    public var mailbox: DNSName
    /// TTL of the SOA, NS and glue records the server itself creates.
    public var apexTTL: UInt32
    /// SOA MINIMUM: how long resolvers may cache a negative answer. Kept as short as the
    /// mapping TTL, so a node that appears is seen quickly.
    public var negativeTTL: UInt32
    /// The TTL the documentation and clients use for mappings; informative for the server.
    public var defaultTTL: UInt32
    /// SOA REFRESH, RETRY and EXPIRE, for secondaries.
    public var refresh: UInt32
    /// SOA RETRY.
    public var retry: UInt32
    /// SOA EXPIRE.
    public var expire: UInt32
    /// Keys that may change anything in the zone.
    public var adminKeys: Set<DNSName>
    /// Types a node key may write at its own HoA name; nil means every type.
    public var nodeTypes: Set<DNSType>?
    /// Secondaries to NOTIFY after each change.
    public var notify: [IPEndpoint]
    /// Who may transfer the zone. Admin keys always may; notify targets' addresses are
    /// added when nothing is configured.
    public var allowTransfer: [TransferRule]
    /// How many past changes IXFR can serve incrementally.
    public var ixfrHistory: Int
    /// How far one node key may grow the zone.
    public var updateLimits: UpdateLimits

    /// A zone with the defaults: one name server `ns.<zone>`, mailbox `hostmaster.<zone>`,
    /// 10 s mapping and negative TTLs, node keys limited to A, AAAA and TXT.
    public init(name: DNSName) {
        self.name = name
        let ns = (try? name.prepending(label: "ns")) ?? name
        nameServers = [ns]
        glue = []
        mailbox = (try? name.prepending(label: "hostmaster")) ?? name
        apexTTL = 3600
        negativeTTL = 10
        defaultTTL = 10
        refresh = 300
        retry = 30
        expire = 86400
        adminKeys = []
        nodeTypes = [.a, .aaaa, .txt]
        notify = []
        allowTransfer = []
        ixfrHistory = 1000
        updateLimits = UpdateLimits()
    }

    /// `hoa.<zone>`: node keys live below it.
    public var hoaSuffix: DNSName { (try? name.prepending(label: "hoa")) ?? name }
    /// `moa.<zone>`: the reverse first-contact names.
    public var moaSuffix: DNSName { (try? name.prepending(label: "moa")) ?? name }
}

/// Everything mat-ims runs with.
public struct IMSConfiguration: Sendable {
    /// UDP and TCP listening endpoints (port 0: any free port, the same for both).
    public var listen: [IPEndpoint]
    /// Where the journal and snapshots live; nil keeps state in memory only (tests, fuzzing).
    public var stateDirectory: String?
    /// Where the Prometheus metrics endpoint listens (`metrics-listen`); nil: none.
    public var metricsListen: IPEndpoint?
    /// Journal durability.
    public var journalSync: JournalSync
    /// The journal is compacted into a snapshot when it grows past this.
    public var journalCompactBytes: Int
    /// Concurrent TCP connections; more are closed at once.
    public var maxTCPConnections: Int
    /// Concurrent TCP connections from one IPv4 address or IPv6 /64; more are closed at once.
    public var maxTCPConnectionsPerSource: Int
    /// Seconds a TCP connection may sit idle, and the most a request may take to arrive
    /// or a reply to be taken by the client once begun.
    public var tcpIdleTimeout: Int
    /// UDP response rate limiting.
    public var rateLimit: RateLimitConfiguration
    /// Largest UDP response sent, whatever the client's EDNS size says.
    public var maxUDPSize: Int
    /// UDP receive threads per listen address (sockets sharing the port); 0 means one
    /// per online CPU.
    public var udpThreads: Int
    /// Every key the server knows.
    public var keys: [TSIGKey]
    /// The zones served.
    public var zones: [ZoneConfiguration]

    /// A configuration with the documented defaults (docs/ims.md) for everything not given.
    public init(listen: [IPEndpoint] = [], stateDirectory: String? = nil, journalSync: JournalSync = .fsync,
                keys: [TSIGKey] = [], zones: [ZoneConfiguration] = []) {
        self.listen = listen
        self.stateDirectory = stateDirectory
        self.journalSync = journalSync
        journalCompactBytes = 16 << 20
        maxTCPConnections = 64
        maxTCPConnectionsPerSource = 8
        tcpIdleTimeout = 10
        rateLimit = RateLimitConfiguration()
        maxUDPSize = 1232
        udpThreads = 0
        self.keys = keys
        self.zones = zones
    }
}
