import Glibc
import MATDNS
import MATPacket
import MATSystem
import Synchronization

/// Counters of an IMS client since it was created.
public struct IMSClientStatistics: Hashable, Sendable {
    /// The transport's counters (queries, timeouts, retries, truncation fallbacks...).
    public var transport = DNSTransportStatistics()
    /// Forward lookups that went to the IMS.
    public var lookups: UInt64 = 0
    /// Forward lookups answered from the cache within the TTL.
    public var cacheHits: UInt64 = 0
    /// Mappings served past their TTL because the IMS was unreachable.
    public var staleAnswersServed: UInt64 = 0
    /// Lookups for which the IMS said there is no mapping.
    public var noMapping: UInt64 = 0
    /// Reverse lookups tried.
    public var reverseLookups: UInt64 = 0
    /// Reverse hints that the forward name did not confirm.
    public var reverseUnconfirmed: UInt64 = 0
    /// Registrations accepted and confirmed.
    public var registrations: UInt64 = 0
    /// Updates the server refused (policy, TSIG errors).
    public var refusedUpdates: UInt64 = 0
    /// Update replies and answers to signed queries whose TSIG did not verify.
    public var unauthenticatedResponses: UInt64 = 0
    /// Accepted updates that did not read back as written.
    public var confirmationFailures: UInt64 = 0
    /// Times the IMS's signed BADTIME refusal moved the clock TSIG uses.
    public var clockCorrections: UInt64 = 0

    /// Creates zeroed counters.
    public init() {}

    /// Every counter under its metric name, for the control socket and metrics.
    public var named: [(name: String, value: UInt64)] {
        [("ims_queries_sent", transport.queriesSent), ("ims_timeouts", transport.timeouts),
         ("ims_retries", transport.retries), ("ims_truncation_fallbacks", transport.truncationFallbacks),
         ("ims_tcp_queries", transport.tcpQueries), ("ims_ignored_responses", transport.ignoredResponses),
         ("ims_network_errors", transport.networkErrors), ("ims_lookups", lookups),
         ("ims_cache_hits", cacheHits), ("stale_answers_served", staleAnswersServed),
         ("ims_no_mapping", noMapping), ("ims_reverse_lookups", reverseLookups),
         ("ims_reverse_unconfirmed", reverseUnconfirmed), ("ims_registrations", registrations),
         ("ims_refused_updates", refusedUpdates), ("ims_unauthenticated_responses", unauthenticatedResponses),
         ("ims_confirmation_failures", confirmationFailures), ("ims_clock_corrections", clockCorrections)]
    }
}

/// matd's client of the IMS: registers the node's mapping and resolves peers' mappings.
///
/// Every call blocks (poll() deadlines inside the transport), so call it from a thread
/// that may wait, never the packet engine's. Calls from several threads are safe: the
/// cache and counters sit behind a lock that is never held across I/O.
public final class IMSClient: Sendable {
    /// What the client was configured with.
    public let configuration: IMSClientConfiguration
    let transport: any DNSExchanging
    let clock: IMSClock
    let log: IMSLogger
    let state: Mutex<ClientState>

    struct ClientState {
        var cache: MappingCache
        var statistics = IMSClientStatistics()
        /// MoAs this client last had accepted per HoA, so the next update can drop
        /// their PTRs.
        var published: [IPAddress: [IPAddress]] = [:]
        /// Seconds added to `clock` for TSIG: the IMS's time minus this host's, learned
        /// from a signed BADTIME refusal (``IMSClient/learnServerTime(from:key:requestMAC:)``).
        var clockCorrection: Int64 = 0
        /// The IMS's clock minus this host's at its latest verified signed answer
        /// (``IMSClient/serverTimeAhead``).
        var serverTimeAhead: Int64?
    }

    /// The system clock: whole seconds since the epoch.
    public static let systemClock: IMSClock = WallClock.seconds

    /// Creates a client. `transport` defaults to UDP/TCP sockets; `clock` to the system
    /// clock; `log` to nothing.
    public init(configuration: IMSClientConfiguration, transport: any DNSExchanging = DNSTransport(),
                clock: @escaping IMSClock = IMSClient.systemClock,
                log: @escaping IMSLogger = { _, _ in }) {
        self.configuration = configuration
        self.transport = transport
        self.clock = clock
        self.log = log
        state = Mutex(ClientState(cache: MappingCache(capacity: configuration.cacheCapacity)))
    }

    /// Counters so far, the transport's included.
    public var statistics: IMSClientStatistics {
        var snapshot = state.withLock { $0.statistics }
        snapshot.transport = transport.statistics
        return snapshot
    }

    /// The mapping of `hoa`: from the cache while its TTL lasts (unless `allowCached` is
    /// false, e.g. after a path failure), else from the IMS. If no IMS server answers, a
    /// cached mapping is served past its TTL, flagged `.stale`, logged and counted.
    public func lookup(hoa: IPAddress, allowCached: Bool = true) throws(IMSClientError) -> PeerMappingAnswer {
        let now = clock()
        if allowCached, let cached = state.withLock({ $0.cache.fresh(hoa, now: now) }) {
            count { $0.cacheHits += 1 }
            return cached
        }
        count { $0.lookups += 1 }
        do throws(IMSClientError) {
            guard let answer = try fetch(hoa: hoa, servers: configuration.servers, now: now) else {
                state.withLock {
                    $0.cache.remove(hoa)
                    $0.statistics.noMapping += 1
                }
                throw IMSClientError.noMapping(hoa)
            }
            state.withLock { $0.cache.store(answer) }
            return answer
        } catch {
            guard error.isUnreachable else { throw error }
            let stale = state.withLock { s -> PeerMappingAnswer? in
                guard let entry = s.cache.stale(hoa, now: now, maxStaleness: configuration.maxStaleness) else {
                    return nil
                }
                s.statistics.staleAnswersServed += 1
                return entry
            }
            guard let stale else { throw error }
            let age = now >= stale.expiresAt ? now - stale.expiresAt : 0
            log(.warning, "\(error); serving stale mapping \(stale), \(age) s past its TTL")
            return stale
        }
    }

    /// The node that holds `moa`, for first contact from an unknown address: the PTR at
    /// the MoA name is only a hint, believed once a fresh forward lookup of the HoA it
    /// names lists `moa`. Stale mappings never confirm.
    public func reverseLookup(moa: IPAddress) throws(IMSClientError) -> ReverseLookupResult {
        count { $0.reverseLookups += 1 }
        let owner = configuration.names.moaName(for: moa)
        let pointers = try query(owner, type: .ptr, servers: configuration.servers)
        var candidates: [IPAddress] = []
        for record in pointers.records {
            guard case .ptr(let target) = record.data,
                  let hoa = configuration.names.hoa(fromName: target),
                  hoa.family == moa.family, !candidates.contains(hoa) else { continue }
            candidates.append(hoa)
        }
        for hoa in candidates {
            guard let answer = try? lookup(hoa: hoa, allowCached: false), !answer.isStale,
                  answer.moas.contains(moa) else { continue }
            return ReverseLookupResult(moa: moa, hoa: hoa, mapping: answer)
        }
        count { $0.reverseUnconfirmed += 1 }
        log(.warning, "reverse hint for \(moa) not confirmed by any forward name (candidates \(candidates))")
        throw .reverseNotConfirmed(moa: moa, candidates: candidates)
    }

    /// Forgets cached mappings (all of them, or one HoA's).
    public func invalidate(hoa: IPAddress? = nil) {
        state.withLock {
            if let hoa { $0.cache.remove(hoa) } else { $0.cache.removeAll() }
        }
    }

    // MARK: - Queries

    /// Reads `hoa`'s forward name from `servers`: the TXT, then the address RRset of its
    /// family. Nil when neither exists (NXDOMAIN or no data).
    ///
    /// TXT first: if an update lands between the two queries, the answer pairs newer MoAs
    /// with the older sequence, which the next lookup supersedes; the other order could
    /// pair old MoAs with the new sequence and make the correct answer look no newer.
    func fetch(hoa: IPAddress, servers: [DNSServerAddress], now: UInt64) throws(IMSClientError) -> PeerMappingAnswer? {
        let owner = configuration.names.hoaName(for: hoa)
        let versions = try query(owner, type: .txt, servers: servers)
        let addresses = try query(owner, type: MappingNames.addressType(for: hoa), servers: servers)
        guard !addresses.records.isEmpty || !versions.records.isEmpty else { return nil }
        var moas: [IPAddress] = []
        for record in addresses.records {
            if let moa = MappingNames.address(from: record.data), !moas.contains(moa) { moas.append(moa) }
        }
        // Sequence and key come from the same (first well-formed) version TXT.
        let version = versions.records.lazy.compactMap { MappingNames.version(from: $0.data) }.first
        let ttl = (addresses.records + versions.records).map(\.ttl).min() ?? 0
        return PeerMappingAnswer(hoa: hoa, moas: moas, sequence: version?.sequence, ttl: ttl, fetchedAt: now,
                                 source: .ims(addresses.server), publicKey: version?.publicKey,
                                 lifetime: version?.lifetime, relay: version?.relay)
    }

    struct RRsetAnswer {
        var records: [DNSResourceRecord]
        var server: DNSServerAddress
    }

    /// One query, straight to the IMS servers (RD clear, EDNS 1232). Servers answering
    /// SERVFAIL, REFUSED or NOTAUTH are skipped for the next; NXDOMAIN and no-data give
    /// an empty RRset. Only records owned by the question name, of its type and class, count.
    ///
    /// A node with a key signs the query with it (TSIG) and takes only an answer signed
    /// back with it: someone on the path, without the key, cannot hand it a mapping (a MoA,
    /// a signing key, a sequence number) of their own. Mat-ims, BIND and Knot all sign
    /// their answers to signed queries. A node without a key (lookups only) asks unsigned.
    ///
    /// A signed refusal for time (BADTIME: this host's clock is outside the server's
    /// fudge) teaches the client the server's time, and the query is sent once more at
    /// once (``learnServerTime(from:key:requestMAC:)``).
    func query(_ name: DNSName, type: DNSType, servers: [DNSServerAddress],
               retried: Bool = false) throws(IMSClientError) -> RRsetAnswer {
        var message = DNSMessage(header: DNSHeader(id: UInt16.random(in: .min ... .max)),
                                 questions: [DNSQuestion(name: name, type: type)])
        message.edns = EDNS(udpPayloadSize: 1232)
        let request: [UInt8]
        let signing = configuration.keys.first
        var requestMAC: [UInt8] = []
        do {
            if let signing {
                let signed = try message.signed(with: signing, now: tsigNow())
                (request, requestMAC) = (signed.bytes, signed.mac)
            } else {
                request = try message.encode()
            }
        } catch {
            throw .encoding(error)
        }
        let exchange: DNSExchange
        do {
            exchange = try transport.exchange(request, servers: servers, retryOn: [.servFail, .refused, .notAuth])
        } catch {
            throw .unreachable(error)
        }
        if let signing {
            let outcome = TSIG.verifyResponse(exchange.bytes, key: signing, requestMAC: requestMAC, now: tsigNow())
            if !retried, learnServerTime(from: exchange, key: signing, requestMAC: requestMAC) {
                return try query(name, type: type, servers: servers, retried: true)
            }
            noteSignedTime(outcome)
            guard case .verified = outcome else {
                count { $0.unauthenticatedResponses += 1 }
                log(.warning, "an answer from \(exchange.server) for \(name) \(type) is not signed with \(signing.name) (\(outcome)); ignored")
                throw .responseNotAuthenticated(outcome)
            }
        }
        let reply = exchange.message
        switch reply.header.responseCode {
        case .noError:
            let records = reply.answers.filter { $0.name == name && $0.type == type && $0.recordClass == .in }
            return RRsetAnswer(records: records, server: exchange.server)
        case .nxDomain:
            return RRsetAnswer(records: [], server: exchange.server)
        default:
            throw .serverError(reply.extendedResponseCode)
        }
    }

    func count(_ change: (inout IMSClientStatistics) -> Void) {
        state.withLock { change(&$0.statistics) }
    }
}
