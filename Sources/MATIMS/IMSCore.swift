#if canImport(Glibc)
import Glibc
#endif
import MATDNS
import MATLog
import MATPacket
import Synchronization

/// One request as it arrived.
public struct IMSRequest: Sendable {
    public var bytes: [UInt8]
    /// Who sent it (nil in tests and fuzzing: no address-based rights).
    public var source: IMSEndpoint?

    public init(bytes: [UInt8], source: IMSEndpoint? = nil) {
        self.bytes = bytes
        self.source = source
    }
}

/// How a request arrived, which decides size limits and what may be asked.
public enum IMSTransport: Sendable {
    case udp
    case tcp
}

/// The mapping server without sockets: DNS messages in, DNS messages out.
///
/// Thread-safe. Each call handles a batch in three phases: checks that need no shared
/// state (TSIG, parsing) run without the lock; zone work for the whole batch runs under
/// one lock, ending with one journal write and sync for all accepted updates (group
/// commit); replies are encoded and signed after the lock is released. Nothing leaves
/// before the journal has it, so an acknowledged update is durable.
public final class IMSCore: Sendable {
    public let configuration: IMSConfiguration
    /// The TSIG keys, replaced whole by a reload (SIGHUP): a request is checked and its
    /// answer signed with the keys as they were when it was read.
    private let keys: Mutex<TSIGKeyring>
    var keyring: TSIGKeyring { keys.withLock { $0 } }
    let zoneConfigs: [ZoneConfiguration]
    let policies: [UpdatePolicy]
    let clock: @Sendable () -> UInt64
    /// Seconds from an arbitrary start, for rate limiting.
    let monotonic: @Sendable () -> Double
    /// UDP response rate limiting, used when `rrl-responses-per-second` is not 0.
    let rateLimiter: Mutex<ResponseRateLimiter>
    private let state: Mutex<CoreState>
    private let changeHandler = Mutex<(@Sendable (_ zone: Int, _ serial: UInt32) -> Void)?>(nil)
    /// Bumped (under the zone lock) whenever any zone may have changed; cached answers
    /// from an older generation are never served.
    private let generation = Atomic<UInt64>(0)
    private let cache = ResponseCache()
    /// `counters.ims.` in class CH.
    static let countersName = try! DNSName("counters.ims.")

    struct ZoneRuntime {
        var store: ZoneStore
        var history: [ZoneDiff]
        var journal: ZoneJournal?
    }

    struct CoreState {
        var zones: [ZoneRuntime]
        var replay: ReplayGuard
        var counters: IMSCounters
    }

    /// Wall-clock seconds, for TSIG.
    public static let systemClock: @Sendable () -> UInt64 = { UInt64(max(0, time(nil))) }
    /// `CLOCK_MONOTONIC` in seconds, for rate limiting.
    public static let monotonicClock: @Sendable () -> Double = { monotonicSeconds() }

    /// Loads every zone (snapshot, then journal) or creates it from the configuration.
    public init(configuration: IMSConfiguration, clock: @escaping @Sendable () -> UInt64 = IMSCore.systemClock,
                monotonic: @escaping @Sendable () -> Double = IMSCore.monotonicClock) throws(JournalError) {
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
            if let directory = configuration.stateDirectory {
                let journal = ZoneJournal(directory: directory, zone: zone.name, sync: configuration.journalSync)
                let loaded = try journal.load(initial: initial, historyLimit: zone.ixfrHistory)
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
        state = Mutex(CoreState(zones: zones, replay: replay, counters: IMSCounters()))
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
    func onZoneChange(_ handler: @escaping @Sendable (_ zone: Int, _ serial: UInt32) -> Void) {
        changeHandler.withLock { $0 = handler }
    }

    // MARK: Public entry points

    /// Handles one UDP datagram; nil means no reply (dropped). This is also the fuzzing
    /// entry point: it needs no sockets, and every input ends in a reply or a counted drop.
    public func handleDatagram(_ bytes: [UInt8], from source: IMSEndpoint? = nil) -> [UInt8]? {
        handle([IMSRequest(bytes: bytes, source: source)], transport: .udp)[0].first
    }

    /// Handles one message received over TCP (without its length prefix); a zone
    /// transfer gives several messages.
    public func handleStream(_ bytes: [UInt8], from source: IMSEndpoint? = nil) -> [[UInt8]] {
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

    private func process(_ requests: [IMSRequest], transport: IMSTransport) -> [[[UInt8]]] {
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
    func count(_ counter: IMSCounter, _ amount: Int = 1) {
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
    func serial(ofZone index: Int) -> UInt32 {
        state.withLock { $0.zones[index].store.serial }
    }

    /// The current SOA record of zone `index`.
    func soaRecord(ofZone index: Int) -> DNSResourceRecord {
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

    // MARK: Phase 1: no shared state

    struct QueryJob {
        var message: DNSMessage
        var question: DNSQuestion
        var zone: Int
        var tsig: TSIGContext?
        var udpLimit: Int
        /// Set for plain queries (no TSIG), whose answer may be cached.
        var cacheKey: [UInt8]? = nil
    }

    struct UpdateJob {
        var raw: [UInt8]
        var message: DNSMessage
        var request: DNSUpdateRequest
        var context: TSIGContext
        var zone: Int?
    }

    enum TransferKind {
        case axfr
        case ixfr(serial: UInt32)
    }

    struct TransferJob {
        var message: DNSMessage
        var kind: TransferKind
        var zone: Int
        var tsig: TSIGContext?
    }

    enum Prepared {
        case reply([UInt8]?)
        case query(QueryJob)
        case update(UpdateJob)
        case transfer(TransferJob)
        case counters(DNSMessage, TSIGContext?)
    }

    private func prepare(_ request: IMSRequest, transport: IMSTransport, now: UInt64,
                         counters: inout IMSCounters) -> Prepared {
        let bytes = request.bytes
        guard let header = RawHeader(bytes), !header.isResponse else {
            counters.add(.malformedDropped)
            return .reply(nil)
        }
        switch header.opcode {
        case .update:
            return prepareUpdate(bytes, now: now, counters: &counters)
        case .query:
            break
        default:
            counters.add(.notImplemented)
            return .reply(RawHeader.reply(to: bytes, rcode: header.opcode == .notify ? .refused : .notImp,
                                          echoQuestion: true))
        }
        let message: DNSMessage
        do {
            message = try DNSMessage(bytes: bytes)
        } catch {
            counters.add(.malformedFormErr)
            return .reply(RawHeader.reply(to: bytes, rcode: .formErr, echoQuestion: false))
        }
        var tsig: TSIGContext? = nil
        if message.additionals.contains(where: { $0.type == .tsig }) || message.answers.contains(where: { $0.type == .tsig })
            || message.authorities.contains(where: { $0.type == .tsig }) {
            let outcome = TSIG.verifyRequest(bytes, keyring: keyring, now: now)
            guard case .verified(let context) = outcome else { return tsigFailure(bytes, outcome, now: now, counters: &counters) }
            tsig = context
        }
        guard message.questions.count == 1 else {
            counters.add(.malformedFormErr)
            return .reply(simpleReply(to: message, rcode: .formErr, tsig: tsig, now: now))
        }
        let options = message.additionals.filter { $0.type == .opt }
        guard options.count <= 1, options.first.map({ $0.name.isRoot }) ?? true else {
            counters.add(.malformedFormErr)
            return .reply(simpleReply(to: message, rcode: .formErr, tsig: tsig, now: now))
        }
        if let edns = message.edns, edns.version != 0 {
            counters.add(.badVersion)
            return .reply(simpleReply(to: message, rcode: .badVers, tsig: tsig, now: now))
        }
        let question = message.questions[0]
        if question.questionClass == .ch {
            if question.name == Self.countersName, question.type == .txt || question.type == .any,
               request.source?.isLoopback == true {
                return .counters(message, tsig)
            }
            counters.add(.queriesRefused)
            return .reply(simpleReply(to: message, rcode: .refused, tsig: tsig, now: now))
        }
        guard question.questionClass == .in || question.questionClass == .any,
              let zone = zoneIndex(for: question.name) else {
            counters.add(.queriesRefused)
            return .reply(simpleReply(to: message, rcode: .refused, tsig: tsig, now: now, authoritative: false))
        }
        switch question.type {
        case .axfr, .ixfr:
            let isAXFR = question.type == .axfr
            guard question.name == zoneConfigs[zone].name else {
                counters.add(.transfersRefused)
                return .reply(simpleReply(to: message, rcode: .notAuth, tsig: tsig, now: now))
            }
            guard transferAllowed(zone: zone, source: request.source, tsig: tsig) else {
                counters.add(.transfersRefused)
                return .reply(simpleReply(to: message, rcode: .refused, tsig: tsig, now: now))
            }
            if isAXFR {
                guard transport == .tcp else {
                    // RFC 5936 §4.2: AXFR is a TCP-only operation.
                    counters.add(.malformedFormErr)
                    return .reply(simpleReply(to: message, rcode: .formErr, tsig: tsig, now: now))
                }
                return .transfer(TransferJob(message: message, kind: .axfr, zone: zone, tsig: tsig))
            }
            guard let soa = message.authorities.first, case .soa(let clientSOA) = soa.data else {
                counters.add(.malformedFormErr)
                return .reply(simpleReply(to: message, rcode: .formErr, tsig: tsig, now: now))
            }
            return .transfer(TransferJob(message: message, kind: .ixfr(serial: clientSOA.serial), zone: zone, tsig: tsig))
        default:
            let limit: Int
            if let edns = message.edns {
                limit = max(512, min(Int(edns.udpPayloadSize), configuration.maxUDPSize))
            } else {
                limit = 512
            }
            return .query(QueryJob(message: message, question: question, zone: zone, tsig: tsig, udpLimit: limit))
        }
    }

    /// UPDATE: authenticate on the raw bytes (one framing scan and one HMAC) before
    /// anything in the message is allocated.
    private func prepareUpdate(_ bytes: [UInt8], now: UInt64, counters: inout IMSCounters) -> Prepared {
        let outcome = TSIG.verifyRequest(bytes, keyring: keyring, now: now)
        guard case .verified(let context) = outcome else {
            if outcome == .unsigned {
                counters.add(.updatesRefusedUnsigned)
                return .reply(RawHeader.reply(to: bytes, rcode: .refused, echoQuestion: true))
            }
            return tsigFailure(bytes, outcome, now: now, counters: &counters)
        }
        let message: DNSMessage
        do {
            message = try DNSMessage(bytes: bytes)
        } catch {
            counters.add(.updatesRefusedFormErr)
            return .reply(signedHeaderReply(bytes, rcode: .formErr, context: context, now: now))
        }
        let request: DNSUpdateRequest
        do {
            request = try DNSUpdateRequest(message)
        } catch {
            counters.add(error.responseCode == .notZone ? .updatesRefusedNotZone : .updatesRefusedFormErr)
            return .reply(simpleReply(to: message, rcode: error.responseCode, tsig: context, now: now, authoritative: false))
        }
        let zone = request.zoneClass == .in ? zoneConfigs.firstIndex(where: { $0.name == request.zone }) : nil
        return .update(UpdateJob(raw: bytes, message: message, request: request, context: context, zone: zone))
    }

    private func tsigFailure(_ bytes: [UInt8], _ outcome: TSIGOutcome, now: UInt64, counters: inout IMSCounters) -> Prepared {
        switch outcome {
        case .badKey: counters.add(.tsigBadKey)
        case .badSig: counters.add(.tsigBadSig)
        case .badTime: counters.add(.tsigBadTime)
        case .badTrunc: counters.add(.tsigBadTrunc)
        default: counters.add(.tsigFormErr)
        }
        return .reply(TSIG.errorResponse(to: bytes, outcome: outcome, keyring: keyring, now: now))
    }

    func zoneIndex(for name: DNSName) -> Int? {
        // Longest match, should zones ever nest (the configuration forbids it today).
        var best: Int? = nil
        for (index, zone) in zoneConfigs.enumerated() where name.isSubdomain(of: zone.name) {
            if best == nil || zone.name.labelCount > zoneConfigs[best!].name.labelCount { best = index }
        }
        return best
    }

    func transferAllowed(zone: Int, source: IMSEndpoint?, tsig: TSIGContext?) -> Bool {
        let config = zoneConfigs[zone]
        if let tsig, config.adminKeys.contains(tsig.keyName) { return true }
        let rules = config.allowTransfer.isEmpty
            ? config.notify.compactMap { IMSPrefix($0.address.description) }.map(TransferRule.prefix)
            : config.allowTransfer
        for rule in rules {
            switch rule {
            case .any: return true
            case .key(let name): if tsig?.keyName == name { return true }
            case .prefix(let prefix): if let source, prefix.contains(source.address) { return true }
            }
        }
        return false
    }

    // MARK: Phase 2: under the lock

    enum Worked {
        case reply([UInt8]?)
        case query(QueryJob, QueryAnswer, generation: UInt64)
        /// An update with its final RCODE (NOERROR may still turn SERVFAIL at commit).
        case update(UpdateJob, DNSResponseCode, ZoneDiff?)
        case replayed(UpdateJob)
        /// Refused: a node key would pass one of the zone's update limits (logged).
        case limited(UpdateJob, LimitViolation)
        case axfr(TransferJob, ZoneStore)
        case ixfr(TransferJob, [DNSResourceRecord])
        case ixfrUpToDate(TransferJob, DNSResourceRecord)
        case counters(DNSMessage, TSIGContext?, IMSCounters)
    }

    private func work(_ prepared: Prepared, state: inout CoreState, transport: IMSTransport,
                      counters: inout IMSCounters) -> Worked {
        switch prepared {
        case .reply(let bytes):
            return .reply(bytes)
        case .counters(let message, let tsig):
            var snapshot = state.counters
            snapshot.merge(counters)
            return .counters(message, tsig, snapshot)
        case .query(let job):
            counters.add(.queries)
            let answer = state.zones[job.zone].store.answer(name: job.question.name, owner: job.question.name, type: job.question.type,
                                      allTypesForAny: transport == .tcp)
            if answer.responseCode == .nxDomain {
                counters.add(.queriesNXDomain)
            } else if answer.answers.isEmpty && answer.authoritative {
                counters.add(.queriesNoData)
            }
            return .query(job, answer, generation: generation.load(ordering: .acquiring))
        case .transfer(let job):
            let zone = state.zones[job.zone]
            switch job.kind {
            case .axfr:
                counters.add(.axfrServed)
                return .axfr(job, zone.store)
            case .ixfr(let serial):
                let current = zone.store.soaRecord
                if !SerialNumber.isNewer(zone.store.serial, than: serial) {
                    return .ixfrUpToDate(job, current)
                }
                if transport == .udp {
                    // RFC 1995 §2: over UDP, only the SOA; the client retries over TCP.
                    return .ixfrUpToDate(job, current)
                }
                counters.add(.ixfrServed)
                if let start = zone.history.firstIndex(where: { $0.oldSerial == serial }) {
                    return .ixfr(job, TransferBuilder.ixfrRecords(current: current, diffs: Array(zone.history[start...])))
                }
                // History does not reach back that far: a full zone in IXFR form.
                return .axfr(job, zone.store)
            }
        case .update(let job):
            guard let zone = job.zone else {
                counters.add(.updatesRefusedNotAuth)
                return .update(job, .notAuth, nil)
            }
            let context = job.context
            guard state.replay.admit(key: context.keyName, time: context.data.timeSigned, mac: context.data.mac) else {
                counters.add(.updatesRefusedReplay)
                return .replayed(job)
            }
            let policy = policies[zone]
            let role = policy.role(of: context.keyName)
            guard role != .none else {
                counters.add(.updatesRefusedPolicy)
                return .update(job, .refused, nil)
            }
            let result = state.zones[zone].store.process(job.request, role: role, policy: policy)
            if let violation = result.violation {
                counters.add(.updatesRefusedLimit)
                return .limited(job, violation)
            }
            switch result.responseCode {
            case .noError: break
            case .refused: counters.add(.updatesRefusedPolicy)
            default: counters.add(.updatesRefusedPrerequisite)
            }
            guard let diff = result.diff else {
                if result.responseCode == .noError { counters.add(.updatesNoChange) }
                return .update(job, result.responseCode, nil)
            }
            if let journal = state.zones[zone].journal {
                let stamp = SignerStamp(keyName: context.keyName, timeSigned: context.data.timeSigned, mac: context.data.mac)
                guard journal.stage(diff, signer: stamp) else {
                    state.zones[zone].store.revert(diff)
                    counters.add(.updatesFailedJournal)
                    return .update(job, .servFail, nil)
                }
            }
            return .update(job, .noError, diff)
        }
    }

    /// Writes the batch's journal records, one write and sync per zone. If a zone's
    /// journal fails, that zone's updates of this batch are undone (newest first) and
    /// answered SERVFAIL.
    private func commit(_ results: inout [Worked], state: inout CoreState, counters: inout IMSCounters,
                        changed: inout [(Int, UInt32)]) {
        var byZone: [Int: [Int]] = [:]
        for (index, result) in results.enumerated() {
            if case .update(let job, .noError, .some(_)) = result, let zone = job.zone { byZone[zone, default: []].append(index) }
        }
        if !byZone.isEmpty {
            // Even a failed commit (rolled back) must retire answers computed meanwhile.
            generation.add(1, ordering: .acquiringAndReleasing)
        }
        for (zone, indices) in byZone.sorted(by: { $0.key < $1.key }) {
            var failed = false
            if let journal = state.zones[zone].journal {
                do {
                    try journal.commit()
                } catch {
                    IMSLog.write("mat-ims: \(error)")
                    failed = true
                }
            }
            for index in indices {
                guard case .update(_, _, .some(let diff)) = results[index] else { continue }
                if failed {
                    counters.add(.updatesFailedJournal)
                } else {
                    counters.add(.updatesAccepted)
                    state.zones[zone].history.append(diff)
                }
            }
            if failed {
                for index in indices.reversed() {
                    guard case .update(let job, _, .some(let diff)) = results[index] else { continue }
                    state.zones[zone].store.revert(diff)
                    results[index] = .update(job, .servFail, nil)
                }
                continue
            }
            let limit = zoneConfigs[zone].ixfrHistory
            if state.zones[zone].history.count > limit {
                state.zones[zone].history.removeFirst(state.zones[zone].history.count - limit)
            }
            if let journal = state.zones[zone].journal,
               journal.compactIfNeeded(threshold: configuration.journalCompactBytes, store: state.zones[zone].store,
                                       stamps: state.replay.stamps) {
                counters.add(.journalCompactions)
            }
            changed.append((zone, state.zones[zone].store.serial))
        }
    }

    // MARK: Phase 3: no lock

    private func render(_ worked: Worked, transport: IMSTransport, now: UInt64) -> [[UInt8]] {
        switch worked {
        case .reply(let bytes):
            return bytes.map { [$0] } ?? []
        case .query(let job, let answer, _):
            return renderQuery(job, answer, transport: transport, now: now).map { [$0] } ?? []
        case .update(let job, let rcode, _):
            var response = job.message.response(code: rcode, authoritative: false)
            if response.edns != nil { response.edns = EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)) }
            return sign(response, tsig: job.context, now: now).map { [$0] } ?? []
        case .limited(let job, let violation):
            // Logged here, outside the zone lock; only a key holder can cause this line.
            IMSLog.write("mat-ims: update signed by \(job.context.keyName) refused: \(violation)", level: .notice)
            return render(.update(job, .refused, nil), transport: transport, now: now)
        case .replayed(let job):
            return TSIG.errorResponse(to: job.raw, outcome: .badTime(job.context), keyring: keyring, now: now).map { [$0] } ?? []
        case .axfr(let job, let store):
            return renderTransfer(job, records: TransferBuilder.axfrRecords(store), now: now)
        case .ixfr(let job, let records):
            return renderTransfer(job, records: records, now: now)
        case .ixfrUpToDate(let job, let soa):
            var response = job.message.response()
            response.edns = nil
            response.answers = [soa]
            return sign(response, tsig: job.tsig, now: now).map { [$0] } ?? []
        case .counters(let message, let tsig, let counters):
            var response = message.response(authoritative: true)
            if response.edns != nil { response.edns = EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)) }
            let name = message.questions[0].name
            response.answers = counters.lines(includeZero: true).map {
                DNSResourceRecord(name: name, class: .ch, ttl: 0, data: .txt(strings: [$0]))
            }
            // All counters take about 2 KB: over UDP that is truncated like any answer.
            let limit = message.edns.map { max(512, min(Int($0.udpPayloadSize), configuration.maxUDPSize)) } ?? 512
            let overhead = tsig.map { $0.keyName.wireLength + $0.data.algorithm.wireLength + 16 + 64 } ?? 0
            if transport == .udp, ((try? response.encode())?.count ?? .max) + overhead > limit {
                response.header.isTruncated = true
                response.answers = []
                count(.responsesTruncated)
            }
            return sign(response, tsig: tsig, now: now).map { [$0] } ?? []
        }
    }

    private func renderQuery(_ job: QueryJob, _ answer: QueryAnswer, transport: IMSTransport, now: UInt64) -> [UInt8]? {
        let request = job.message
        let header = DNSHeader(id: request.header.id, isResponse: true, opcode: .query,
                               isAuthoritative: answer.authoritative, recursionDesired: request.header.recursionDesired,
                               responseCode: answer.responseCode)
        var response = DNSMessage(header: header, questions: request.questions, answers: answer.answers,
                                  authorities: answer.authorities, additionals: answer.additionals)
        let hasEDNS = request.edns != nil
        if hasEDNS { response.additionals.append(EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)).record) }
        let limit = transport == .udp ? job.udpLimit : 65535
        let overhead = job.tsig.map { $0.keyName.wireLength + $0.data.algorithm.wireLength + 16 + 64 } ?? 0
        var bytes = (try? response.encode()) ?? []
        if bytes.isEmpty || bytes.count + overhead > limit {
            // RFC 2181 §9: what does not fit is dropped whole, TC tells the client to use TCP.
            response.header.isTruncated = true
            response.answers = []
            response.authorities = []
            response.additionals = hasEDNS ? [EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)).record] : []
            guard let truncated = try? response.encode() else { return nil }
            bytes = truncated
            count(.responsesTruncated)
        }
        guard let tsig = job.tsig, let key = keyring.key(named: tsig.keyName) else { return bytes }
        return (try? TSIG.signResponse(bytes, key: key, request: tsig, now: now))?.bytes
    }

    private func renderTransfer(_ job: TransferJob, records: [DNSResourceRecord], now: UInt64) -> [[UInt8]] {
        let messages = TransferBuilder.messages(for: job.message, records: records)
        let signing = job.tsig.flatMap { context in keyring.key(named: context.keyName).map { (key: $0, context: context) } }
        return TransferBuilder.encode(messages, signing: signing, now: now) ?? []
    }

    /// A reply with only the header and question (and OPT when asked with EDNS).
    private func simpleReply(to message: DNSMessage, rcode: DNSResponseCode, tsig: TSIGContext?, now: UInt64,
                             authoritative: Bool = true) -> [UInt8]? {
        var response = message.response(code: rcode, authoritative: authoritative && rcode != .refused)
        if response.edns != nil {
            var edns = EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize))
            edns.extendedRCode = UInt8(truncatingIfNeeded: rcode.rawValue >> 4)
            response.edns = edns
        }
        return sign(response, tsig: tsig, now: now)
    }

    private func signedHeaderReply(_ bytes: [UInt8], rcode: DNSResponseCode, context: TSIGContext, now: UInt64) -> [UInt8]? {
        guard let reply = RawHeader.reply(to: bytes, rcode: rcode, echoQuestion: false),
              let key = keyring.key(named: context.keyName) else { return nil }
        return (try? TSIG.signResponse(reply, key: key, request: context, now: now))?.bytes
    }

    private func sign(_ response: DNSMessage, tsig: TSIGContext?, now: UInt64) -> [UInt8]? {
        guard let bytes = try? response.encode() else { return nil }
        guard let tsig, let key = keyring.key(named: tsig.keyName) else { return bytes }
        return (try? TSIG.signResponse(bytes, key: key, request: tsig, now: now))?.bytes
    }
}
