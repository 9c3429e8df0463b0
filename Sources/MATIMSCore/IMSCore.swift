import MATDNS
import MATPacket
import Synchronization

/// One request as it arrived.
public struct IMSRequest: Sendable {
    /// The DNS message as received (over TCP without its length prefix).
    public var bytes: [UInt8]
    /// Who sent it (nil in tests and fuzzing: no address-based rights).
    public var source: IPEndpoint?

    /// A request of `bytes` from `source`.
    public init(bytes: [UInt8], source: IPEndpoint? = nil) {
        self.bytes = bytes
        self.source = source
    }
}

/// How a request arrived, which decides size limits and what may be asked.
public enum IMSTransport: Sendable {
    case udp
    case tcp
}

/// The mapping server without sockets, files or clocks of its own: DNS messages in, DNS
/// messages out. The server (MATIMS) gives it the clocks and the zones' journals.
///
/// Thread-safe. Each call handles a batch in three phases: checks that need no shared
/// state (TSIG, parsing) run without the lock; zone work for the whole batch runs under
/// one lock, ending with one journal write and sync for all accepted updates (group
/// commit); replies are encoded and signed after the lock is released. Nothing leaves
/// before the journal has it, so an acknowledged update is durable.
public final class IMSCore: Sendable {
    /// What the core was started with (keys since replaced by `replaceKeys`).
    public let configuration: IMSConfiguration
    /// The TSIG keys, replaced whole by a reload (SIGHUP): a request is checked and its
    /// answer signed with the keys as they were when it was read.
    private let keys: Mutex<TSIGKeyring>
    var keyring: TSIGKeyring { keys.withLock { $0 } }
    /// The zones, in configuration order: a zone's index here is its index everywhere.
    public let zoneConfigs: [ZoneConfiguration]
    let policies: [UpdatePolicy]
    let clock: @Sendable () -> UInt64
    /// Seconds from an arbitrary start, for rate limiting.
    let monotonic: @Sendable () -> Double
    /// UDP response rate limiting, used when `rrl-responses-per-second` is not 0.
    let rateLimiter: Mutex<ResponseRateLimiter>
    let state: Mutex<CoreState>
    let changeHandler = Mutex<(@Sendable (_ zone: Int, _ serial: UInt32) -> Void)?>(nil)
    /// Bumped (under the zone lock) whenever any zone may have changed; cached answers
    /// from an older generation are never served.
    let generation = Atomic<UInt64>(0)
    let cache = ResponseCache()
    /// What happened that the server should log (``takeEvents()``); a leaf lock, never
    /// held while taking another.
    let eventQueue = Mutex(EventQueue())
    /// Events queued and not yet taken, so that a take with none costs no lock.
    let pendingEvents = Atomic<Int>(0)
    /// `counters.ims.` in class CH.
    static let countersName = try! DNSName("counters.ims.")

    struct ZoneRuntime {
        var store: ZoneStore
        var history: [ZoneDiff]
        var journal: (any ZoneJournaling)?
    }

    struct CoreState {
        var zones: [ZoneRuntime]
        var replay: ReplayGuard
        var counters: IMSCounters
        /// Per zone, the registration lifetimes (nil for a zone too long for `hoa.`).
        var expiry: [MappingExpiry?] = []
    }

    /// Loads every zone (through `journals`, which gives each zone's stored state and
    /// journal; nil keeps the zones in memory only) or creates it from the configuration.
    /// `clock` is wall-clock seconds, for TSIG; `monotonic` seconds from an arbitrary
    /// start, for rate limiting and registration lifetimes.
    public init(configuration: IMSConfiguration, clock: @escaping @Sendable () -> UInt64,
                monotonic: @escaping @Sendable () -> Double, journals: ZoneJournalOpener?) throws(JournalError) {
        self.configuration = configuration
        self.clock = clock
        self.monotonic = monotonic
        rateLimiter = Mutex(ResponseRateLimiter(configuration.rateLimit))
        keys = Mutex(TSIGKeyring(configuration.keys))
        zoneConfigs = configuration.zones
        policies = configuration.zones.map(UpdatePolicy.init)
        var zones: [ZoneRuntime] = []
        var replay = ReplayGuard()
        for zone in configuration.zones {
            let initial = Self.initialStore(zone, serial: UInt32(truncatingIfNeeded: clock()))
            var runtime: ZoneRuntime
            if let journals {
                let (journal, loaded) = try journals(zone, initial)
                for stamp in loaded.stamps.sorted(by: { $0.timeSigned < $1.timeSigned }) { replay.restore(stamp) }
                runtime = ZoneRuntime(store: loaded.store, history: loaded.history, journal: journal)
            } else {
                runtime = ZoneRuntime(store: initial, history: [], journal: nil)
            }
            // The configuration is authoritative for the apex: NS set, glue, SOA fields.
            if let diff = runtime.store.apply(Self.reconcile(runtime.store, with: zone)) {
                if let journal = runtime.journal {
                    guard journal.stage(diff, signer: nil) else { throw JournalError(description: "cannot encode apex change") }
                    try journal.commit()
                }
                runtime.history.append(diff)
            }
            zones.append(runtime)
        }
        let start = monotonic()
        var tooLong: [DNSName] = []
        let expiry = zip(configuration.zones, zones).map { zone, runtime -> MappingExpiry? in
            guard var expiry = try? MappingExpiry(zone: zone.name) else {
                tooLong.append(zone.name)
                return nil
            }
            expiry.track(runtime.store, now: start)
            return expiry
        }
        state = Mutex(CoreState(zones: zones, replay: replay, counters: IMSCounters(), expiry: expiry))
        for zone in tooLong { record(.zoneWithoutExpiry(zone: zone)) }
    }

    /// Takes `keys` in place of the configured ones, for requests read from now on: a
    /// node's key added to a key file works after a SIGHUP, without a restart or a journal
    /// replay. Which keys are admin or transfer keys is zone configuration, read at start.
    public func replaceKeys(_ keys: [TSIGKey]) {
        let fresh = TSIGKeyring(keys)
        self.keys.withLock { $0 = fresh }
    }

    /// A zone as the configuration describes it before any update.
    static func initialStore(_ zone: ZoneConfiguration, serial: UInt32) -> ZoneStore {
        let soa = DNSSOA(primary: zone.nameServers.first ?? zone.name, mailbox: zone.mailbox, serial: serial,
                         refresh: zone.refresh, retry: zone.retry, expire: zone.expire, minimum: zone.negativeTTL)
        var store = ZoneStore(origin: zone.name, soa: soa, soaTTL: zone.apexTTL)
        for ns in zone.nameServers { store.add(DNSResourceRecord(name: zone.name, ttl: zone.apexTTL, data: .ns(ns))) }
        for (name, address) in zone.glue { store.add(glueRecord(name, address, ttl: zone.apexTTL)) }
        return store
    }

    static func glueRecord(_ name: DNSName, _ address: IPAddress, ttl: UInt32) -> DNSResourceRecord {
        switch address {
        case .v4(let a): DNSResourceRecord(name: name, ttl: ttl, data: .a(a.value))
        case .v6(let a): DNSResourceRecord(name: name, ttl: ttl, data: .aaaa(high: a.high, low: a.low))
        }
    }

    /// Operations that bring the apex in line with the configuration.
    static func reconcile(_ store: ZoneStore, with zone: ZoneConfiguration) -> [DNSUpdateOperation] {
        var operations: [DNSUpdateOperation] = []
        let wantedNS = zone.nameServers.map { DNSRecordData.ns($0) }
        let currentNS = store.rrset(at: zone.name, type: .ns)
        for ns in wantedNS where currentNS?.records.contains(ns) != true || currentNS?.ttl != zone.apexTTL {
            operations.append(.add(DNSResourceRecord(name: zone.name, ttl: zone.apexTTL, data: ns)))
        }
        for ns in currentNS?.records ?? [] where !wantedNS.contains(ns) {
            operations.append(.deleteRecord(zone.name, ns))
        }
        for (name, address) in zone.glue {
            let record = glueRecord(name, address, ttl: zone.apexTTL)
            if store.rrset(at: name, type: record.type)?.records.contains(record.data) != true {
                operations.append(.add(record))
            }
        }
        var soa = store.soa
        let wanted = DNSSOA(primary: zone.nameServers.first ?? zone.name, mailbox: zone.mailbox, serial: soa.serial,
                            refresh: zone.refresh, retry: zone.retry, expire: zone.expire, minimum: zone.negativeTTL)
        if wanted != soa || store.soaRecord.ttl != zone.apexTTL {
            soa = wanted
            operations.append(.add(DNSResourceRecord(name: zone.name, ttl: zone.apexTTL, data: .soa(soa))))
        }
        return operations
    }

    /// Called (outside the lock) after a change to zone `index` is durable; the server
    /// hooks NOTIFY here.
    public func onZoneChange(_ handler: @escaping @Sendable (_ zone: Int, _ serial: UInt32) -> Void) {
        changeHandler.withLock { $0 = handler }
    }

    // MARK: Public entry points

    /// Handles one UDP datagram; nil means no reply (dropped). This is also the fuzzing
    /// entry point: it needs no sockets, and every input ends in a reply or a counted drop.
    public func handleDatagram(_ bytes: [UInt8], from source: IPEndpoint? = nil) -> [UInt8]? {
        handle([IMSRequest(bytes: bytes, source: source)], transport: .udp)[0].first
    }

    /// Handles one message received over TCP (without its length prefix); a zone
    /// transfer gives several messages.
    public func handleStream(_ bytes: [UInt8], from source: IPEndpoint? = nil) -> [[UInt8]] {
        handle([IMSRequest(bytes: bytes, source: source)], transport: .tcp)[0]
    }

    /// Handles a batch (one `recvmmsg` worth): one lock, one journal commit. Returns the
    /// replies per request (empty: no reply). Over UDP, requests from sources past their
    /// response rate are dropped or slipped first, before any parsing or signing.
    public func handle(_ requests: [IMSRequest], transport: IMSTransport) -> [[[UInt8]]] {
        guard transport == .udp, configuration.rateLimit.responsesPerSecond > 0 else {
            return process(requests, transport: transport)
        }
        return rateLimited(requests) { process($0, transport: .udp) }
    }

    func process(_ requests: [IMSRequest], transport: IMSTransport) -> [[[UInt8]]] {
        let now = clock()
        var delta = IMSCounters()
        // Plain queries whose answer is cached skip parsing and the zone lock entirely.
        let fast = requests.map { FastQuery($0.bytes, maxUDPSize: configuration.maxUDPSize, tcp: transport == .tcp) }
        let hits = fast.contains { $0 != nil }
            ? cache.lookup(fast, generation: generation.load(ordering: .acquiring))
            : Array(repeating: nil, count: requests.count)
        var prepared: [Prepared] = []
        prepared.reserveCapacity(requests.count)
        for index in requests.indices {
            if let hit = hits[index], let query = fast[index] {
                delta.add(.queries)
                if let counter = hit.counter { delta.add(counter) }
                prepared.append(.reply(query.reply(from: hit.response, request: requests[index].bytes)))
                continue
            }
            var item = prepare(requests[index], transport: transport, now: now, counters: &delta)
            if case .query(var job) = item, job.tsig == nil, let query = fast[index] {
                job.cacheKey = query.key
                item = .query(job)
            }
            prepared.append(item)
        }
        if hits.allSatisfy({ $0 != nil }) {
            state.withLock { $0.counters.merge(delta) }
            return prepared.map { item in
                if case .reply(let bytes) = item, let bytes { return [bytes] }
                return []
            }
        }
        var changed: [(Int, UInt32)] = []
        let worked: [Worked] = state.withLock { state in
            var results = prepared.map { work($0, state: &state, transport: transport, counters: &delta) }
            commit(&results, state: &state, counters: &delta, changed: &changed)
            state.counters.merge(delta)
            return results
        }
        if !changed.isEmpty, let handler = changeHandler.withLock({ $0 }) {
            for (zone, serial) in changed { handler(zone, serial) }
        }
        var inserts: [([UInt8], ResponseCache.Entry)] = []
        let replies = worked.map { item -> [[UInt8]] in
            let reply = render(item, transport: transport, now: now)
            if case .query(let job, let answer, let generation) = item, let key = job.cacheKey, reply.count == 1 {
                let counter: IMSCounter? = answer.responseCode == .nxDomain ? .queriesNXDomain
                    : (answer.answers.isEmpty && answer.authoritative ? .queriesNoData : nil)
                inserts.append((key, ResponseCache.Entry(generation: generation, response: reply[0], counter: counter)))
            }
            return reply
        }
        cache.insert(inserts)
        return replies
    }

    /// A copy of the counters.
    public var counters: IMSCounters { state.withLock { $0.counters } }

    /// Adds to a counter (the socket layer counts its own events here).
    public func count(_ counter: IMSCounter, _ amount: Int = 1) {
        state.withLock { $0.counters.add(counter, amount) }
    }

    /// Adds a set of counts under one lock.
    func count(_ delta: IMSCounters) {
        state.withLock { $0.counters.merge(delta) }
    }

    /// A copy of a zone's records, by apex.
    public func zone(_ name: DNSName) -> ZoneStore? {
        guard let index = zoneConfigs.firstIndex(where: { $0.name == name }) else { return nil }
        return state.withLock { $0.zones[index].store }
    }

    /// The current SOA serial of zone `index`.
    public func serial(ofZone index: Int) -> UInt32 {
        state.withLock { $0.zones[index].store.serial }
    }

    /// The current SOA record of zone `index`.
    public func soaRecord(ofZone index: Int) -> DNSResourceRecord {
        state.withLock { $0.zones[index].store.soaRecord }
    }

    /// Whether a background compaction is still running (tests wait for it).
    public var isCompacting: Bool {
        state.withLock { $0.zones.contains { $0.journal?.isCompacting ?? false } }
    }

    /// Syncs and closes the journals. Later requests that change a zone fail.
    public func close() {
        state.withLock { state in
            for zone in state.zones { zone.journal?.close() }
        }
    }
}
