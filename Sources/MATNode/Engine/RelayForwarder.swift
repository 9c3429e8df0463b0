import MATPacket
import MATSignaling

/// What a relay (`[relay] serve = on`) does with the two relay kinds of the encapsulation
/// (docs/signaling.md, "Relay"), for the engine thread to drive: a registration is opened,
/// its signature checked with the key of every HoA it lists, and given to the
/// ``RelayTable``; a relayed packet is routed by its inner addresses. A registration is
/// admitted first (``RelayAdmission``: its source address's budget, then the shared bound
/// on verifications), and one the table would refuse as a replay is refused before its
/// signature is checked, so a flood of registrations costs the engine thread bounded work.
/// Pure apart from the Ed25519 check: the caller passes the time and sends what is
/// forwarded; the outcomes are counted (``Counters``).
///
/// Secrets: each taken registration carries the node's exchange key; the relay agrees on
/// the binding's relay secret with it (``RelayExchangeKeys``, rotated every 10 minutes)
/// and answers with its own half (``answer``), signed with the relay's key (`relay.key`,
/// which the nodes pin as `[relay] public-key`), which the engine sends to the binding.
///
/// Keys: the `client-key`s pinned in `[relay]`, then the keys the service took from the
/// IMS for HoAs without one (``learn(_:for:)``). A HoA with neither cannot register: its
/// registration comes back as ``RegistrationOutcome/noKey(_:)`` naming every such HoA it
/// lists, which the engine reports to the service for a bounded lookup
/// (``RelayKeyLookups``), so that a node registering several HoAs is taken at its next
/// registration once the keys came.
public struct RelayForwarder: Sendable {
    public enum RegistrationOutcome: Equatable, Sendable {
        case accepted
        /// Not a well-formed registration (a bad address, a HoA listed twice).
        case malformed
        /// No key is pinned or learned for these HoAs (every one the registration lists
        /// without one, in its order).
        case noKey([IPAddress])
        /// The signature does not verify with one of the HoAs' keys.
        case badSignature
        /// The signature does not verify with the keys learned from the IMS for these HoAs
        /// (every one that fails, in the registration's order; counted as a bad
        /// signature), while it does with every pinned one: the node may have rotated its
        /// key since.
        case learnedKeyFailed([IPAddress])
        case replayed
        case full
        /// Over its source address's budget: not read.
        case overSourceBudget
        /// Over the verifications all sources share: read, not verified.
        case overVerificationBudget
    }

    /// Outcomes since start, for `matctl stats`.
    public struct Counters: Equatable, Sendable {
        public var registrations: UInt64 = 0
        public var registrationsRefused: UInt64 = 0
        public var badSignatures: UInt64 = 0
        public var forwarded: UInt64 = 0
        /// Relayed signals sent on (``RelayedSignal``); their refusals count with the
        /// relayed packets' by reason.
        public var signalsForwarded: UInt64 = 0
        /// Relayed packets from a sender that is no live registration.
        public var unknownSender: UInt64 = 0
        /// Relayed packets whose inner source HoA the sender did not register.
        public var unregisteredSource: UInt64 = 0
        /// Relayed packets for a HoA no live binding registered (or too short to name one).
        public var unknownDestination: UInt64 = 0
        public var rateLimited: UInt64 = 0
        /// Registrations refused for budget (in `registrationsRefused` too): their source
        /// address's, and the verifications all sources share.
        public var refusedForSourceBudget: UInt64 = 0
        public var refusedForVerificationBudget: UInt64 = 0
        /// Keys taken from the IMS (``learn(_:for:)``), those refused for room, and those
        /// dropped to make room (their HoAs held by no binding).
        public var keysLearned: UInt64 = 0
        public var keysRefused: UInt64 = 0
        public var keysEvicted: UInt64 = 0
        public init() {}

        /// The counters by name, for `matctl stats` (`relay`) and the metrics
        /// (docs/operations.md).
        public var named: [(String, UInt64)] {
            [("registrations_accepted", registrations), ("registrations_refused", registrationsRefused),
             ("bad_signatures", badSignatures), ("refused_source_budget", refusedForSourceBudget),
             ("refused_verification_budget", refusedForVerificationBudget), ("keys_learned", keysLearned),
             ("keys_refused", keysRefused), ("keys_evicted", keysEvicted), ("forwarded", forwarded),
             ("signals_forwarded", signalsForwarded),
             ("unknown_sender", unknownSender), ("unregistered_source", unregisteredSource),
             ("unknown_destination", unknownDestination), ("rate_limited", rateLimited)]
        }
    }

    public private(set) var table: RelayTable
    public private(set) var counters = Counters()
    /// The answer to the registration ``register(_:from:now:)`` last took, for the engine
    /// to send to its binding (``RelayAnswer``); nil after any other outcome.
    public private(set) var answer: [UInt8]?
    private var exchangeKeys: RelayExchangeKeys
    /// The relay's key, which signs its answers (`relay.key`; nodes pin its public half).
    private let signingKey: SigningKey
    private var admission: RelayAdmission
    private let pinned: [IPAddress: VerifyingKey]
    /// Keys from the IMS for HoAs without a pinned one, at most `learnedCapacity`.
    private var learned: [IPAddress: VerifyingKey] = [:]
    /// As many as the table holds bindings by default.
    public static let learnedCapacity = 10_000
    /// The most learned keys held (``learnedCapacity`` but in tests).
    let learnedCapacity: Int

    public init(table: RelayTable = RelayTable(), admission: RelayAdmission = RelayAdmission(),
                pinnedKeys: [IPAddress: VerifyingKey] = [:], learnedCapacity: Int = RelayForwarder.learnedCapacity,
                exchangeKeys: RelayExchangeKeys = RelayExchangeKeys(), signingKey: SigningKey = .generate()) {
        self.learnedCapacity = learnedCapacity
        self.signingKey = signingKey
        self.exchangeKeys = exchangeKeys
        self.table = table
        self.admission = admission
        pinned = pinnedKeys
    }

    /// A datagram `EncapWire.parse` took as a registration, from `sender` at `now`.
    public mutating func register(_ datagram: UnsafeRawBufferPointer, from sender: RelayTable.Binding,
                                  now: UInt64) -> RegistrationOutcome {
        answer = nil
        let outcome = check(datagram, from: sender, now: now)
        switch outcome {
        case .accepted: counters.registrations &+= 1
        case .badSignature, .learnedKeyFailed:
            counters.badSignatures &+= 1
            counters.registrationsRefused &+= 1
        case .overSourceBudget:
            counters.refusedForSourceBudget &+= 1
            counters.registrationsRefused &+= 1
        case .overVerificationBudget:
            counters.refusedForVerificationBudget &+= 1
            counters.registrationsRefused &+= 1
        default: counters.registrationsRefused &+= 1
        }
        return outcome
    }

    private mutating func check(_ datagram: UnsafeRawBufferPointer, from sender: RelayTable.Binding,
                                now: UInt64) -> RegistrationOutcome {
        guard admission.admit(from: sender.address, now: now) else { return .overSourceBudget }
        guard let registration = RelayRegistration(datagram) else { return .malformed }
        var keys: [(hoa: IPAddress, key: VerifyingKey, learned: Bool)] = []
        keys.reserveCapacity(registration.hoas.count)
        var missing: [IPAddress] = []
        for hoa in registration.hoas {
            if let key = pinned[hoa] {
                keys.append((hoa, key, false))
            } else if let key = learned[hoa] {
                keys.append((hoa, key, true))
            } else {
                missing.append(hoa)
            }
        }
        // Every HoA without a key at once: their lookups go together, not one per
        // registration interval.
        if !missing.isEmpty { return .noKey(missing) }
        if table.isReplayed(registration.hoas, sequence: registration.sequence, from: sender, now: now) { return .replayed }
        guard admission.mayVerify(keys.count, now: now) else { return .overVerificationBudget }
        let failed = keys.filter { !registration.verify(with: $0.key) }
        if failed.contains(where: { !$0.learned }) { return .badSignature }
        if !failed.isEmpty { return .learnedKeyFailed(failed.map(\.hoa)) }
        // Signed, so the exchange key is the node's: nobody else can learn the secret.
        guard let agreed = exchangeKeys.agree(node: registration.nodeKey, named: registration.relayKey ?? [], now: now)
        else { return .malformed }
        switch table.register(Set(registration.hoas), sequence: registration.sequence,
                              secret: agreed.secret, from: sender, now: now) {
        case .accepted:
            answer = RelayAnswer.seal(nodeKey: registration.nodeKey, agreedKey: agreed.relayKey,
                                      currentKey: exchangeKeys.currentKey(now: now), with: signingKey)
            return .accepted
        case .replayed: return .replayed
        case .full: return .full
        }
    }

    /// Takes `key`, which the IMS binds to `hoa`, for `hoa`'s registrations (replacing the
    /// one learned before: the node rotated it). A pinned key stays. At `learnedCapacity`
    /// HoAs, the keys of HoAs no binding holds are dropped first (counted): anyone can make
    /// the relay learn the key of any HoA of its domains by naming it in a registration, and
    /// such keys must not crowd out the nodes that register. Only when every learned HoA is
    /// held is a new key refused (counted). Returns whether it was taken.
    @discardableResult
    public mutating func learn(_ key: VerifyingKey, for hoa: IPAddress) -> Bool {
        guard pinned[hoa] == nil else {
            counters.keysRefused &+= 1
            return false
        }
        if learned[hoa] == nil, learned.count >= learnedCapacity {
            let before = learned.count
            learned = learned.filter { table.holds($0.key) }
            counters.keysEvicted &+= UInt64(before - learned.count)
        }
        guard learned[hoa] != nil || learned.count < learnedCapacity else {
            counters.keysRefused &+= 1
            return false
        }
        learned[hoa] = key
        counters.keysLearned &+= 1
        return true
    }

    /// Where a datagram `EncapWire.parse` took as a relayed signal, from `sender` at `now`,
    /// goes: routed as a relayed packet is, by the message's sender and receiver HoAs (the
    /// sender's binding must have registered the sender HoA), and stamped with the
    /// sender's address as its origin (``RelayedSignal``), the relay's word on where it
    /// came from, authenticated with the secret the receiving binding agreed on. Nil when
    /// it goes nowhere (counted by reason).
    public mutating func routeSignal(_ datagram: UnsafeMutableRawBufferPointer, from sender: RelayTable.Binding,
                                     now: UInt64) -> RelayTable.Binding? {
        guard let hoas = RelayedSignal.addresses(UnsafeRawBufferPointer(datagram)) else {
            counters.unknownDestination &+= 1
            return nil
        }
        guard let target = decide(table.route(from: sender, source: hoas.sender, destination: hoas.receiver, now: now))
        else { return nil }
        // Every accepted registration agrees on one: this is a binding the table took
        // without (a test's), with nothing to authenticate the stamp with.
        guard let secret = table.secret(of: target) else {
            counters.unknownDestination &+= 1
            return nil
        }
        counters.signalsForwarded &+= 1
        RelayedSignal.stamp(sender.address, for: secret, in: datagram)
        return target
    }

    /// Where a datagram `EncapWire.parse` took as a relayed packet, from `sender` at `now`,
    /// goes (unchanged); nil when it goes nowhere (counted by reason).
    public mutating func route(_ datagram: UnsafeRawBufferPointer, from sender: RelayTable.Binding,
                               now: UInt64) -> RelayTable.Binding? {
        guard let inner = EncapWire.innerAddresses(datagram) else {
            counters.unknownDestination &+= 1
            return nil
        }
        guard let target = decide(table.route(from: sender, source: inner.source, destination: inner.destination, now: now))
        else { return nil }
        counters.forwarded &+= 1
        return target
    }

    /// The binding of a table's decision to forward; nil, counted by reason, otherwise.
    private mutating func decide(_ decision: RelayTable.Decision) -> RelayTable.Binding? {
        switch decision {
        case .forward(let binding): return binding
        case .unknownSender: counters.unknownSender &+= 1
        case .unregisteredSource: counters.unregisteredSource &+= 1
        case .unknownDestination: counters.unknownDestination &+= 1
        case .rateLimited: counters.rateLimited &+= 1
        }
        return nil
    }
}
