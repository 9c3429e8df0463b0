import MATDNS
import MATPacket

/// Seconds since the epoch. Injected so tests can move time (cache expiry, TSIG skew).
public typealias IMSClock = @Sendable () -> UInt64

/// Severity of an IMS client log line.
public enum IMSLogLevel: String, Hashable, Sendable {
    /// Routine events (a registration confirmed).
    case info
    /// Degraded but working (serving a stale mapping, a server not answering).
    case warning
    /// Something failed that the operator must look at (an update refused).
    case error
}

/// Where log lines go; the daemon passes its own logger.
public typealias IMSLogger = @Sendable (IMSLogLevel, String) -> Void

/// What the IMS client needs to know.
public struct IMSClientConfiguration: Sendable {
    /// The mapping zone layout.
    public var names: MappingNames
    /// IMS servers in order of preference; updates go to the first that answers, so list
    /// the primary first.
    public var servers: [DNSServerAddress]
    /// This node's TSIG keys, one per HoA, each named after its HoA's name (a dual-stack
    /// node has two: the IMS lets a node key write only the name it is named after).
    /// Empty: lookups only.
    public var keys: [TSIGKey]
    /// TTL of the records this node publishes.
    public var recordTTL: UInt32
    /// The lifetime each registration publishes (`"life=<seconds>"`): mat-ims removes the
    /// MoAs once it passes without a newer registration. Nil publishes none.
    public var registrationLifetime: UInt32?
    /// The relay this node is reached through, published in its registrations' TXT as
    /// `"relay=<address>"`; nil publishes none.
    public var relay: IPAddress?
    /// How long past its TTL a mapping may still be served while the IMS is unreachable;
    /// nil: for as long as the IMS stays unreachable.
    public var maxStaleness: UInt64?
    /// Most peers kept in the cache.
    public var cacheCapacity: Int
    /// Queries made to confirm a registration before giving up (a server may apply an
    /// update a moment after answering it).
    public var confirmationAttempts: Int
    /// Pause between confirmation queries, in milliseconds.
    public var confirmationDelayMilliseconds: Int

    /// Creates a configuration. `key` and `keys` together make up ``keys`` (`key` first):
    /// a single-stack node passes its one key as `key`, a dual-stack node both as `keys`.
    public init(names: MappingNames, servers: [DNSServerAddress], key: TSIGKey? = nil, keys: [TSIGKey] = [],
                recordTTL: UInt32 = RegistrationBuilder.defaultTTL, maxStaleness: UInt64? = nil,
                cacheCapacity: Int = 4096, confirmationAttempts: Int = 3,
                confirmationDelayMilliseconds: Int = 200, registrationLifetime: UInt32? = nil,
                relay: IPAddress? = nil) {
        self.names = names
        self.relay = relay
        self.registrationLifetime = registrationLifetime
        self.servers = servers
        self.keys = (key.map { [$0] } ?? []) + keys
        self.recordTTL = recordTTL
        self.maxStaleness = maxStaleness
        self.cacheCapacity = cacheCapacity
        self.confirmationAttempts = confirmationAttempts
        self.confirmationDelayMilliseconds = confirmationDelayMilliseconds
    }
}

extension IMSClientConfiguration {
    /// The key named after `hoa`'s mapping name, the one every documented policy (mat-ims,
    /// BIND `grant * self *`, the Knot ACLs of docs/ims.md) lets write that name; nil if
    /// there is none.
    public func namedKey(for hoa: IPAddress) -> TSIGKey? {
        let owner = names.hoaName(for: hoa)
        return keys.first { $0.name == owner }
    }

    /// The key a registration of `hoa` is signed with: the one named after its name, else
    /// the first key (a server with a policy of its own may grant that key the name; the
    /// documented ones refuse it, which the caller sees as a refusal). matd checks at start
    /// that every HoA has a named key (``namedKey(for:)``), so it never relies on the second.
    public func signingKey(for hoa: IPAddress) -> TSIGKey? {
        namedKey(for: hoa) ?? keys.first
    }
}

/// Where an answer came from.
public enum AnswerSource: Hashable, Sendable {
    /// Just fetched from this server.
    case ims(DNSServerAddress)
    /// From the cache, within its TTL.
    case cache
    /// From the cache, past its TTL, because no IMS server answered.
    case stale
}

/// A peer's mapping as the IMS publishes it.
public struct PeerMappingAnswer: Hashable, Sendable, CustomStringConvertible {
    /// The peer's HoA.
    public var hoa: IPAddress
    /// The peer's MoAs, in the order the server gave them. Empty if the peer has
    /// deregistered (its TXT, and so its sequence, stays).
    public var moas: [IPAddress]
    /// The sequence number from the `"v=1" "seq=<n>"` TXT; nil if there is none or it is
    /// malformed (such a mapping is older than any versioned one).
    public var sequence: UInt64?
    /// The peer's Ed25519 public key from the `"key=<base64>"` string of the same TXT,
    /// as published (standard base64 of 32 octets); nil if the TXT has none, or none that
    /// is valid. Signed mobility alerts from this HoA verify with it.
    public var publicKey: String?
    /// The registration's lifetime from the `"life=<seconds>"` string of the same TXT; nil
    /// if it publishes none.
    public var lifetime: UInt32?
    /// The relay the peer is reached through, from the `"relay=<address>"` string of the
    /// same TXT; nil if it publishes none.
    public var relay: IPAddress?
    /// The smallest TTL among the records read, as published.
    public var ttl: UInt32
    /// Clock reading when the answer was fetched from the IMS.
    public var fetchedAt: UInt64
    /// Where this copy came from.
    public var source: AnswerSource

    /// Creates an answer.
    public init(hoa: IPAddress, moas: [IPAddress], sequence: UInt64?, ttl: UInt32, fetchedAt: UInt64,
                source: AnswerSource, publicKey: String? = nil, lifetime: UInt32? = nil, relay: IPAddress? = nil) {
        self.hoa = hoa
        self.relay = relay
        self.lifetime = lifetime
        self.moas = moas
        self.sequence = sequence
        self.publicKey = publicKey
        self.ttl = ttl
        self.fetchedAt = fetchedAt
        self.source = source
    }

    /// Whether it is served past its TTL because the IMS is unreachable.
    public var isStale: Bool { source == .stale }

    /// Clock reading at which the TTL runs out.
    public var expiresAt: UInt64 { fetchedAt + UInt64(ttl) }

    /// Seconds of TTL left at `now` (0 once expired).
    public func remainingTTL(at now: UInt64) -> UInt32 {
        now >= expiresAt ? 0 : UInt32(expiresAt - now)
    }

    /// The mapping for MATPacket's table: every MoA confirmed (it comes from the IMS), in
    /// the published order as priority, valid until `expiresAt` of the caller's clock
    /// (0: no expiry). Reachability is for the mobility layer to add.
    public func peerMapping(expiresAt: UInt64 = 0) -> PeerMapping {
        let bindings = moas.enumerated().map { index, moa in
            MoABinding(address: moa, priority: UInt8(clamping: index), expiresAt: expiresAt, flags: .confirmed)
        }
        return PeerMapping(hoa: hoa, moas: bindings, sequence: sequence ?? 0)
    }

    /// One line for logs: `HoA seq=N [key=XXXXXXXX…] ttl=T [MoAs] (source)`, the key
    /// shortened to its first 8 characters.
    public var description: String {
        let seq = (sequence.map(String.init) ?? "none") + (publicKey.map { " key=\($0.prefix(8))…" } ?? "")
        let from = switch source {
        case .ims(let server): "from \(server)"
        case .cache: "cached"
        case .stale: "STALE"
        }
        return "\(hoa) seq=\(seq) ttl=\(ttl) [\(moas.map(\.description).joined(separator: ", "))] \(from)"
    }
}

/// A MoA traced back to its node: the PTR hint, confirmed by the forward name.
public struct ReverseLookupResult: Hashable, Sendable {
    /// The MoA asked about.
    public var moa: IPAddress
    /// The HoA whose forward name lists `moa`.
    public var hoa: IPAddress
    /// That forward answer, fresh from the IMS.
    public var mapping: PeerMappingAnswer
}

/// A registration that the server accepted and that reads back as written.
public struct RegistrationResult: Hashable, Sendable {
    /// The node's HoA.
    public var hoa: IPAddress
    /// The MoAs published.
    public var moas: [IPAddress]
    /// The sequence number published.
    public var sequence: UInt64
    /// The public key published (base64), nil if none.
    public var publicKey: String?
    /// The server that accepted the update (and was queried to confirm it).
    public var server: DNSServerAddress
    /// The MoAs whose PTRs the update removed.
    public var removedMoAs: [IPAddress]
    /// The mapping read back from the server.
    public var confirmation: PeerMappingAnswer
}

/// Why an IMS operation failed.
public enum IMSClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No server answered (timeouts, unreachable), after all retries.
    case unreachable(DNSTransportError)
    /// Every server that answered gave this error (SERVFAIL, REFUSED, NOTAUTH).
    case serverError(DNSResponseCode)
    /// The IMS answered authoritatively that the HoA has no mapping.
    case noMapping(IPAddress)
    /// No PTR under `moa.<zone>` leads to a HoA whose forward name lists the MoA.
    case reverseNotConfirmed(moa: IPAddress, candidates: [IPAddress])
    /// Registration needs a TSIG key and the configuration has none.
    case noKey
    /// The public key to publish is not standard base64 of 32 octets (44 characters).
    case invalidPublicKey(String)
    /// A MoA of another family than the HoA (MAT never translates between families).
    case familyMismatch(hoa: IPAddress, moa: IPAddress)
    /// The server refused the update. `tsigError` is the TSIG error field (BADSIG,
    /// BADKEY, BADTIME); `authenticated` tells whether the refusal itself was signed.
    case updateRefused(rcode: DNSResponseCode, tsigError: DNSResponseCode?, authenticated: Bool)
    /// A success reply whose TSIG did not verify: nothing says the server applied it.
    case responseNotAuthenticated(TSIGOutcome)
    /// The update was accepted but the zone does not read back as written.
    case notConfirmed(found: PeerMappingAnswer?)
    /// The update could not be encoded or signed.
    case encoding(DNSEncodeError)

    /// Whether the IMS could not be reached at all, the case where stale mappings serve.
    public var isUnreachable: Bool {
        switch self {
        case .unreachable, .serverError: true
        default: false
        }
    }

    /// One line for logs.
    public var description: String {
        switch self {
        case .unreachable(let error): "IMS unreachable: \(error)"
        case .serverError(let code): "IMS servers answered \(code)"
        case .noMapping(let hoa): "no mapping for \(hoa)"
        case .reverseNotConfirmed(let moa, let candidates):
            "reverse hint for \(moa) not confirmed (candidates: \(candidates.map(\.description)))"
        case .noKey: "no TSIG key configured"
        case .invalidPublicKey(let text): "public key \"\(text)\" is not base64 of 32 octets"
        case .familyMismatch(let hoa, let moa): "MoA \(moa) is not of the family of HoA \(hoa)"
        case .updateRefused(let rcode, let tsig, let authenticated):
            "update refused: \(rcode)" + (tsig.map { "/\($0)" } ?? "") + (authenticated ? "" : " (unsigned reply)")
        case .responseNotAuthenticated(let outcome): "update reply failed TSIG verification: \(outcome)"
        case .notConfirmed(let found): "update accepted but reads back as \(found?.description ?? "nothing")"
        case .encoding(let error): "cannot encode update: \(error)"
        }
    }
}
