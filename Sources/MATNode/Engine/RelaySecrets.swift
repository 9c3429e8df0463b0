import MATSignaling

/// A node's side of the relay secrets (docs/signaling.md, "Relay secrets"): the exchange
/// key its registrations carry (new every `rotationInterval` ms), the relay's key it
/// learned from the relay's answers (``RelayAnswer``), and the secrets a relayed signal's
/// MAC is checked with (``RelayedSignalCheck``). Pure; the caller passes the time
/// (monotonic milliseconds).
///
/// The node knows a secret before the relay uses it: a registration names the relay key
/// the node agreed with, and the relay uses that key while it holds it
/// (``RelayExchangeKeys``). Only the first registration, and one after the relay lost its
/// keys (a restart), name none or one the relay no longer holds: the relay agrees with its
/// current key and the node learns that secret from the answer (the relay sends the answer
/// before any signal stamped with it). A secret is kept until `retention` ms after the
/// last registration that named it (the relay forgets a binding that long after its last
/// registration, so no relay can use it after that), at most ``maximumKept``: at a
/// rotation the old and the new secret are both taken, as the relay may not have the
/// registration with the new one yet.
///
/// With the relay's key pinned (`[relay] public-key`, ``relaySigningKey``) an answer is taken
/// only when that key signed it; without, any answer from the relay's address and port
/// is (anyone who reads the registrations and sends from there can answer with a key of
/// its own: docs/security.md, N4).
///
/// Recovery: a node whose answers were all lost for a whole relay rotation names a key
/// the relay no longer holds, and the relay stamps its signals with a secret the node does
/// not have. A relayed signal from the relay's address whose MAC no kept secret gives
/// (``refused(now:)``) asks for a registration at once, whose answer brings that secret;
/// at most one every ``recoveryInterval``, so that forged signals cannot make the node
/// register faster than its start-up burst does.
struct RelaySecrets {
    static let maximumKept = 4
    /// The shortest time between two registrations a refused MAC asks for (ms).
    static let recoveryInterval: UInt64 = 2_000
    let rotationInterval: UInt64
    let retention: UInt64
    /// The relay's key its answers must be signed with; nil: not pinned, any answer counts.
    var relaySigningKey: VerifyingKey?
    /// When a refused MAC last asked for a registration; nil: never.
    private var recoveryAskedAt: UInt64?
    /// A registration a refused MAC asked for and the service did not send yet.
    private var recoveryPending = false
    private var exchange = RelayExchangeKey()
    /// The key before `exchange`, whose registrations' answers may still be on their way.
    private var previousExchange: RelayExchangeKey?
    /// When `exchange` was made; nil before the first registration.
    private var since: UInt64?
    /// The relay's current exchange key, as its last answer said.
    private(set) var relayKey: [UInt8]?
    private var kept: [Kept] = []

    private struct Kept {
        let secret: RelaySecret
        let nodeKey: [UInt8]
        let relayKey: [UInt8]
        var lastUsed: UInt64
    }

    /// `retention`: the relay's binding lifetime (four keepalive intervals) and a margin.
    init(rotationInterval: UInt64 = 300_000, retention: UInt64, relaySigningKey: VerifyingKey? = nil) {
        precondition(rotationInterval > 0)
        self.rotationInterval = rotationInterval
        self.retention = retention
        self.relaySigningKey = relaySigningKey
    }

    /// The exchange keys for the registration sent at `now`: the node's (a new one when
    /// the last is `rotationInterval` old) and the relay's it agreed with (nil before the
    /// first answer), whose secret is taken from now on.
    mutating func registration(now: UInt64) -> (nodeKey: [UInt8], relayKey: [UInt8]?) {
        if let since, now >= since + rotationInterval {
            previousExchange = exchange
            exchange = RelayExchangeKey()
            self.since = now
        } else if since == nil {
            since = now
        }
        if let relayKey, !keep(exchange, relayKey, now: now) { self.relayKey = nil }
        return (exchange.publicKey, relayKey)
    }

    /// The relay's answer (``RelayAnswer``) at `now`: its secret is taken and its current
    /// key named from the next registration on. False, and nothing changed, when it
    /// answers no exchange key of this node's, its key is no usable key, or the relay's
    /// key is pinned and did not sign it.
    @discardableResult
    mutating func take(_ answer: RelayAnswer, now: UInt64) -> Bool {
        guard let key = [exchange, previousExchange].compactMap({ $0 }).first(where: { answer.answers($0.publicKey) }),
              relaySigningKey.map({ answer.verify(nodeKey: key.publicKey, with: $0) }) ?? true,
              keep(key, answer.agreedKey, now: now) else { return false }
        relayKey = answer.currentKey
        return true
    }

    /// A relayed signal from the relay's address and port failed its MAC at `now` (no kept
    /// secret gives it). Returns whether to ask the service for a registration now: not
    /// within ``recoveryInterval`` of the last time.
    mutating func refused(now: UInt64) -> Bool {
        if let recoveryAskedAt, now < recoveryAskedAt + Self.recoveryInterval { return false }
        recoveryAskedAt = now
        recoveryPending = true
        return true
    }

    /// Whether a refused MAC asked for a registration since the last call (the service
    /// registers at once when it did).
    mutating func takeRecovery() -> Bool {
        defer { recoveryPending = false }
        return recoveryPending
    }

    /// Whether a relayed signal's MAC is the one a secret kept at `now` gives: each is
    /// compared in constant time (``RelayedSignal/isAuthentic(_:secret:)``), and all are
    /// tried, so the time taken says nothing of which one matched.
    func authenticate(_ datagram: UnsafeRawBufferPointer, now: UInt64) -> Bool {
        var authentic = false
        for entry in kept where now <= entry.lastUsed + retention {
            if RelayedSignal.isAuthentic(datagram, secret: entry.secret) { authentic = true }
        }
        return authentic
    }

    /// Secrets kept at `now` (for tests and `matctl stats`).
    func count(now: UInt64) -> Int { kept.count(where: { now <= $0.lastUsed + retention }) }

    /// Takes (or refreshes) the secret `key` agrees on with the relay's `relayKey`; false
    /// when that is no usable key.
    private mutating func keep(_ key: RelayExchangeKey, _ relayKey: [UInt8], now: UInt64) -> Bool {
        kept.removeAll { now > $0.lastUsed + retention }
        if let index = kept.firstIndex(where: { $0.nodeKey == key.publicKey && $0.relayKey == relayKey }) {
            kept[index].lastUsed = now
            return true
        }
        guard let secret = key.nodeSecret(relay: relayKey) else { return false }
        kept.append(Kept(secret: secret, nodeKey: key.publicKey, relayKey: relayKey, lastUsed: now))
        if kept.count > Self.maximumKept, let oldest = kept.indices.min(by: { kept[$0].lastUsed < kept[$1].lastUsed }) {
            kept.remove(at: oldest)
        }
        return true
    }
}
