import MATPacket

/// When a node with `[relay] address` sends its registration (docs/signaling.md, "Relay")
/// to its relay. Pure: the caller passes the time (monotonic milliseconds) and sends.
///
/// The relay acknowledges nothing (a registration is one signed datagram, and an answer
/// would make the relay a reflector), so the node cannot tell a lost registration from a
/// taken one. It sends `burst` registrations `retryInterval` apart when it starts and
/// after every change of its MoAs (a lost one costs a second, not an interval), then one
/// every `interval` (the keepalive interval: the relay keeps a registration four of them,
/// and each one also holds the node's NAT binding towards the relay open). A send the
/// kernel refused (no route yet, no address) is tried again `retryInterval` later.
public struct RelayRegistrationSchedule: Sendable, Equatable {
    public let interval: UInt64
    public let retryInterval: UInt64
    public let burst: Int
    /// When the next registration is due.
    public private(set) var dueAt: UInt64
    /// Registrations of the current burst still to go `retryInterval` apart.
    private var burstLeft: Int
    /// The MoAs the last burst was started for.
    private var moas: [IPAddress]
    /// Sends that failed since the last one that went out (the first is worth a warning).
    public private(set) var failures = 0

    public init(interval: UInt64 = 15_000, retryInterval: UInt64 = 1_000, burst: Int = 3, now: UInt64) {
        precondition(burst >= 1 && interval > 0 && retryInterval > 0)
        self.interval = interval
        self.retryInterval = retryInterval
        self.burst = burst
        dueAt = now
        burstLeft = burst
        moas = []
    }

    /// Whether a registration is due at `now`.
    public func isDue(now: UInt64) -> Bool { now >= dueAt }

    /// The node's MoAs are `moas` at `now`: a change starts a new burst at once (the
    /// relay must learn the new binding before the peers' packets are lost there).
    public mutating func follow(_ moas: [IPAddress], now: UInt64) {
        guard moas != self.moas else { return }
        self.moas = moas
        burstLeft = burst
        dueAt = now
    }

    /// A registration went out at `now`.
    public mutating func sent(now: UInt64) {
        burstLeft = max(0, burstLeft - 1)
        failures = 0
        dueAt = now + (burstLeft > 0 ? retryInterval : interval)
    }

    /// A registration is wanted at `now` (a relayed signal failed its MAC: the answer that
    /// brings the relay's secret was lost), whatever the schedule said; the burst
    /// unchanged. The caller bounds how often (``RelaySecrets/refused(now:)``).
    public mutating func registerNow(_ now: UInt64) {
        dueAt = min(dueAt, now)
    }

    /// The registration due at `now` could not be sent (no sequence number, the kernel
    /// refused it): tried again `retryInterval` later, the burst unchanged.
    public mutating func failed(now: UInt64) {
        failures += 1
        dueAt = now + retryInterval
    }
}
