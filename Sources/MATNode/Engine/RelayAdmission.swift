import MATPacket
import MATSignaling

/// What a relay lets a registration (encapsulation kind 5) cost before its Ed25519
/// signature is checked on the engine thread (docs/signaling.md, "Relay"). A registration
/// is small and anyone can send one from any source and port, and each costs a verification
/// per HoA it lists (tens of microseconds): a flood of them would take the engine thread
/// from the packets it forwards. So, as for signaling ("Under load"), each source address
/// has its own budget first (a ``RateLimiter``, one dictionary lookup, before the datagram
/// is even read; ports do not count, so a flood from many ports of one address spends one
/// budget), then all sources share a bound on verifications a second. Pure: the caller
/// passes the time (monotonic milliseconds).
///
/// The defaults fit the registrations a relay expects: a node registers once a keepalive
/// interval (15 s), so 10 a second per address covers 150 nodes behind one NAT, and 1,000
/// verifications a second (about 5% of a core) renew 10,000 bindings (``RelayTable``'s
/// default capacity) with room to spare; a flood beyond them is refused and counted.
public struct RelayAdmission: Sendable {
    /// Registrations refused for budget, since start.
    public struct Counters: Equatable, Sendable {
        /// Over their source address's budget (not read at all).
        public var sourceBudget: UInt64 = 0
        /// Over the verifications all sources share (read, not verified).
        public var verificationBudget: UInt64 = 0
        public init() {}
    }

    private var perSource: RateLimiter
    private var verifications: TokenBucket
    public private(set) var counters = Counters()

    /// `perSourceRate` and `perSourceBurst`: registrations a second, and at once, per source
    /// address (at most `maximumSources` tracked; beyond them only the shared bound holds);
    /// `verificationRate` and `verificationBurst`: signature checks a second, and at once,
    /// for all sources together.
    public init(perSourceRate: UInt32 = 10, perSourceBurst: UInt32 = 20, maximumSources: Int = 4_096,
                verificationRate: UInt32 = 1_000, verificationBurst: UInt32 = 2_000) {
        perSource = RateLimiter(perSourceRate: perSourceRate, perSourceBurst: perSourceBurst,
                                maximumSources: maximumSources)
        verifications = TokenBucket(rate: verificationRate, burst: verificationBurst)
    }

    /// Whether a registration from `source` may be read at `now`: within its address's
    /// budget (a token is taken). A refusal is counted.
    public mutating func admit(from source: IPAddress, now: UInt64) -> Bool {
        guard perSource.allow(source: source, now: now) else {
            counters.sourceBudget &+= 1
            return false
        }
        return true
    }

    /// Whether `count` signature checks (one per HoA the registration lists) may run at
    /// `now`: takes them from the shared budget, all or none. A refusal is counted.
    public mutating func mayVerify(_ count: Int, now: UInt64) -> Bool {
        var trial = verifications
        for _ in 0..<count where !trial.take(now: now) {
            counters.verificationBudget &+= 1
            return false
        }
        verifications = trial
        return true
    }

    /// How many source addresses have a budget of their own now.
    public var trackedSources: Int { perSource.trackedSources }
}
