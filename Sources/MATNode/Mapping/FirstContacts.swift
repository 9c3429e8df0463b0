import MATPacket

/// The first contacts whose traffic is held and whose alert waits: the decisions of a
/// first contact with no I/O, the time (monotonic milliseconds) passed in, so each
/// transition has a unit test (the service thread only drives it).
///
/// A first packet to a HoA with no mapping asks the IMS. At the answer the traffic to the
/// peer is held (the peer does not know this node yet and would reset a connection from an
/// address it does not divert) and the peer is alerted; the hold ends with the alert, as a
/// move's does (``PeerHolds``). When the answer's MoAs are on trial (``AnswerTrial``), the
/// alert (1184 bytes, retransmitted) waits for the first MoA that answers its probe, so a
/// forged answer cannot aim it at a bystander; the wait is bounded by ``wait``.
struct FirstContacts {
    /// How long an alert waits for a probe's answer (ms): a probe's last wait ends 5.5 s
    /// after its first send; past that the trial has failed (and the peer was forgotten) or
    /// ended otherwise (the peer's own alert came first).
    static let wait: UInt64 = 6_000

    /// What to do once an IMS answer for a first contact went into the table.
    enum Start: Equatable {
        /// Nothing went in (an answer refused a short while ago): release the traffic.
        case release
        /// Its MoAs are being probed: the alert waits for the first to answer.
        case awaitProbe
        /// Alert the peer at once at the answer's first MoA.
        case alert
    }

    /// When each waiting first contact began (ms).
    private(set) var since: [IPAddress: UInt64] = [:]

    /// Decides what a first contact of `hoa` does, given whether its mapping went in
    /// (`installed`) and whether its MoAs are on trial (`onTrial`); an awaited probe is
    /// remembered from `now`.
    mutating func start(_ hoa: IPAddress, installed: Bool, onTrial: Bool, now: UInt64) -> Start {
        guard installed else { return .release }
        guard onTrial else { return .alert }
        since[hoa] = now
        return .awaitProbe
    }

    /// A probe of `hoa` was answered: returns whether an alert waited for it (the time to
    /// send it).
    mutating func probeAnswered(_ hoa: IPAddress) -> Bool { since.removeValue(forKey: hoa) != nil }

    /// `hoa`'s first contact ends without an alert (its mapping went): returns whether one
    /// waited, whose traffic is then to be released.
    mutating func drop(_ hoa: IPAddress) -> Bool { since.removeValue(forKey: hoa) != nil }

    /// The first contacts that waited ``wait`` or longer at `now` with no probe answered,
    /// forgotten here: their traffic is to be released.
    mutating func expire(now: UInt64) -> [IPAddress] {
        let expired = since.filter { now >= $0.value + Self.wait }.map(\.key)
        for hoa in expired { since[hoa] = nil }
        return expired
    }

    /// Whether an alert of `hoa` waits for a probe's answer.
    func isWaiting(_ hoa: IPAddress) -> Bool { since[hoa] != nil }
}
