import MATPacket

/// A source address cut to a prefix: the unit that connection and response limits count.
struct SourcePrefix: Hashable, Sendable {
    /// 4 or 6, so that an IPv4 prefix never equals an IPv6 one.
    let family: UInt8
    let high: UInt64
    let low: UInt64

    /// `address` with only its first `v4` (IPv4) or `v6` (IPv6) bits kept.
    init(_ address: IPAddress, v4: Int, v6: Int) {
        // Swift's `>>` gives 0 for a shift by the full width, so /0 and /32 need no cases.
        switch address {
        case .v4(let a):
            family = 4
            high = UInt64(a.value & ~(UInt32.max >> UInt32(max(0, min(v4, 32)))))
            low = 0
        case .v6(let a):
            family = 6
            let bits = max(0, min(v6, 128))
            high = a.high & ~(UInt64.max >> UInt64(min(bits, 64)))
            low = a.low & ~(UInt64.max >> UInt64(max(bits - 64, 0)))
        }
    }
}

/// Concurrent TCP connections, in all and per source, so that one client cannot take
/// every connection slot. Pure bookkeeping; the accept loop asks it before serving.
public struct ConnectionLimiter: Sendable {
    /// What `admit` decided.
    public enum Admission: Equatable, Sendable {
        case admitted
        /// `max-tcp-connections` reached.
        case serverFull
        /// The source already holds `max-tcp-connections-per-source`.
        case sourceFull
    }

    /// A source is one IPv4 address, or one IPv6 /64: a host usually holds a whole /64
    /// (SLAAC, privacy addresses), so counting single IPv6 addresses would not bound it.
    static let v6PrefixLength = 64

    /// `max-tcp-connections`.
    public let total: Int
    /// `max-tcp-connections-per-source`.
    public let perSource: Int
    /// Connections holding a slot now.
    public private(set) var active = 0
    private var bySource: [SourcePrefix: Int] = [:]

    /// No connections yet, at most `total` in all and `perSource` per source.
    public init(total: Int, perSource: Int) {
        self.total = total
        self.perSource = perSource
    }

    static func key(_ address: IPAddress) -> SourcePrefix {
        SourcePrefix(address, v4: 32, v6: v6PrefixLength)
    }

    /// Takes a slot for a connection from `source` (nil: an address family without a
    /// per-source count), or says which limit refuses it.
    public mutating func admit(_ source: IPAddress?) -> Admission {
        guard active < total else { return .serverFull }
        if let source {
            let key = Self.key(source)
            let held = bySource[key] ?? 0
            guard held < perSource else { return .sourceFull }
            bySource[key] = held + 1
        }
        active += 1
        return .admitted
    }

    /// Gives back the slot `admit` took.
    public mutating func release(_ source: IPAddress?) {
        active -= 1
        guard let source else { return }
        let key = Self.key(source)
        let held = (bySource[key] ?? 1) - 1
        bySource[key] = held > 0 ? held : nil
    }

    /// How many connections `source`'s prefix holds now.
    public func held(by source: IPAddress) -> Int { bySource[Self.key(source)] ?? 0 }
}

/// Response rate limiting for UDP, after BIND's RRL: answers to one source prefix (/24
/// for IPv4, /56 for IPv6) are limited to `responses-per-second`, so that the server
/// is a poor amplifier for spoofed queries and one network cannot take all its time.
public struct RateLimitConfiguration: Hashable, Sendable {
    /// Responses per second per prefix, which is also the burst allowed; 0 turns the
    /// limit off.
    public var responsesPerSecond: Int
    /// Every `slip`-th limited response is sent as an empty truncated (TC) reply instead
    /// of being dropped, so a genuine client behind a spoofed flood retries over TCP,
    /// which a spoofer cannot; 0 drops them all, 1 truncates them all.
    public var slip: Int
    /// Seconds: a prefix may run up a debt of this many seconds' worth of responses, so a
    /// flood must stop for up to this long before its prefix is answered again.
    public var window: Int
    /// Sources never limited. Loopback by default: its source cannot be forged from the
    /// network, and local tools (benchmarks, dig) should see the server as it is.
    public var exempt: [IMSPrefix]

    /// The IPv4 prefix one response budget covers.
    public static let ipv4PrefixLength = 24
    /// The IPv6 prefix one response budget covers.
    public static let ipv6PrefixLength = 56

    /// 100 responses per second per prefix, every second limited one truncated, a 15 s
    /// window, loopback exempt.
    public init(responsesPerSecond: Int = 100, slip: Int = 2, window: Int = 15,
                exempt: [IMSPrefix] = [IMSPrefix("127.0.0.0/8")!, IMSPrefix("::1/128")!]) {
        self.responsesPerSecond = responsesPerSecond
        self.slip = slip
        self.window = window
        self.exempt = exempt
    }
}

/// The accounts of `RateLimitConfiguration`: a token bucket per prefix that refills at
/// the rate, holds at most one second's worth, and may go `window` seconds into debt
/// (BIND's `debit_rrl_entry`). Pure: the caller passes the time.
struct ResponseRateLimiter: Sendable {
    enum Verdict: Equatable {
        case pass
        case drop
        /// Answer with an empty truncated reply.
        case slip
    }

    private struct Account {
        var balance: Double
        var last: Double
        /// Limited responses so far, for `slip`.
        var limited: Int
    }

    /// Accounts kept at most (a few MB); a spoofed flood from many prefixes cannot grow
    /// the table past it.
    static let maxAccounts = 1 << 16

    let configuration: RateLimitConfiguration
    private var accounts: [SourcePrefix: Account] = [:]

    init(_ configuration: RateLimitConfiguration) {
        self.configuration = configuration
    }

    var accountCount: Int { accounts.count }

    /// Charges one response to `source`'s prefix.
    mutating func debit(_ source: IPAddress, now: Double) -> Verdict {
        let rate = Double(configuration.responsesPerSecond)
        guard rate > 0, !configuration.exempt.contains(where: { $0.contains(source) }) else { return .pass }
        let key = SourcePrefix(source, v4: RateLimitConfiguration.ipv4PrefixLength,
                               v6: RateLimitConfiguration.ipv6PrefixLength)
        var account: Account
        if let known = accounts[key] {
            account = known
            account.balance = min(rate, account.balance + max(0, now - account.last) * rate)
        } else {
            if accounts.count >= Self.maxAccounts { prune(now: now) }
            account = Account(balance: rate, last: now, limited: 0)
        }
        account.last = now
        account.balance = max(account.balance - 1, -rate * Double(configuration.window))
        var verdict = Verdict.pass
        if account.balance < 0 {
            account.limited &+= 1
            let slip = configuration.slip
            verdict = slip > 0 && account.limited % slip == 0 ? .slip : .drop
        } else {
            account.limited = 0
        }
        accounts[key] = account
        return verdict
    }

    /// Makes room: first forgets the prefixes not in debt (at worst they get a fresh
    /// burst), then, if a flood from that many prefixes is being limited, an eighth of
    /// the table.
    private mutating func prune(now: Double) {
        let rate = Double(configuration.responsesPerSecond)
        accounts = accounts.filter { $0.value.balance + max(0, now - $0.value.last) * rate < 0 }
        let target = Self.maxAccounts - Self.maxAccounts / 8
        if accounts.count > target {
            for key in Array(accounts.keys.prefix(accounts.count - target)) { accounts[key] = nil }
        }
    }
}
