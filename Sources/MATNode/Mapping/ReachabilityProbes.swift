import MATPacket
import MATSignaling

/// Reachability probes this node has out: one per (peer, MoA), each with a fresh nonce,
/// resent on a short backoff until the peer answers from that very MoA or the probe
/// expires.
///
/// A probe is a signed challenge naming sequence 0 (no update has that number: sequence
/// numbers start from the wall clock), which any node answers with a signed response from
/// where it is. It checks a MoA this node did not learn from the peer's own challenged
/// alert: one an IMS answer names (a key holder may have registered a bystander's address,
/// or an answer may carry a new key or a far higher sequence), and one a peer has been
/// silent at for a while (``IdleProbing``). Traffic to a MoA waits for its probe's answer
/// (within the 3x unvalidated-path budget), so a bystander gets at most the probes.
///
/// Pure: the caller passes the time (monotonic milliseconds) and sends the datagrams.
struct ReachabilityProbes {
    struct Probe: Equatable {
        /// The peer's HoA.
        var peer: IPAddress
        /// The MoA it must answer from.
        var moa: IPAddress
        /// The key its answer must verify with, when not the one bound to the peer now (a
        /// key an IMS answer names, not taken before this probe is answered).
        var key: VerifyingKey?
        var schedule: RetransmitSchedule
    }

    /// Most probes out at once, all peers together; past it new ones are not started (the
    /// MoAs stay unproven, which costs the peer traffic, never a bystander).
    let capacity: Int
    private(set) var outstanding: [Nonce: Probe] = [:]
    /// How many probes of each peer are out: whether a peer is probed, asked for each of
    /// 100,000 idle peers when they come due together (a start with restored mappings),
    /// was a walk over every outstanding probe each.
    private var probesPerPeer: [IPAddress: Int] = [:]

    init(capacity: Int = 1_024) { self.capacity = max(1, capacity) }

    /// The schedule of one probe: sent at 0, 0.5, 1.5 and 3.5 s, waited for until 5.5 s.
    static func schedule(now: UInt64) -> RetransmitSchedule {
        RetransmitSchedule(now: now, initialDelay: 500, maximumDelay: 2_000, maximumSends: 4)
    }

    /// Starts probing `peer` at each of `moas` not probed already (with that key); returns
    /// the new probes' nonces, each due at once (``due(at:)``).
    mutating func start(_ peer: IPAddress, at moas: [IPAddress], key: VerifyingKey?, now: UInt64) -> [Nonce] {
        var started: [Nonce] = []
        // Full: nothing to look at (the walk below is over the peer's own probes only).
        guard outstanding.count < capacity else { return [] }
        for moa in Set(moas).sorted(by: { $0.description < $1.description }) {
            guard outstanding.count < capacity,
                  probesPerPeer[peer] == nil
                    || !outstanding.values.contains(where: { $0.peer == peer && $0.moa == moa && $0.key == key }) else { continue }
            let nonce = Nonce.random()
            outstanding[nonce] = Probe(peer: peer, moa: moa, key: key, schedule: Self.schedule(now: now))
            probesPerPeer[peer, default: 0] += 1
            started.append(nonce)
        }
        return started
    }

    /// Probes due to be sent at `now`, each recorded as sent.
    mutating func due(at now: UInt64) -> [(nonce: Nonce, probe: Probe)] {
        var sending: [(nonce: Nonce, probe: Probe)] = []
        for (nonce, var probe) in outstanding {
            guard let at = probe.schedule.nextSendAt, at <= now else { continue }
            probe.schedule.sent(now: now)
            outstanding[nonce] = probe
            sending.append((nonce, probe))
        }
        return sending
    }

    /// Probes whose last send went unanswered for its full wait: removed and returned.
    mutating func expired(at now: UInt64) -> [Probe] {
        let gone = outstanding.filter { $0.value.schedule.hasExpired(at: now) }
        for (nonce, probe) in gone { remove(nonce, of: probe.peer) }
        return Array(gone.values)
    }

    /// The probe `nonce` answers, if `peer` sent the answer from the probed MoA: removed
    /// and returned. An answer from elsewhere proves nothing and leaves the probe out.
    mutating func answered(_ nonce: Nonce, by peer: IPAddress, from source: IPAddress) -> Probe? {
        guard let probe = outstanding[nonce], probe.peer == peer, probe.moa == source else { return nil }
        remove(nonce, of: peer)
        return probe
    }

    /// The key an answer from `peer` must verify with for the probe `nonce`, when the probe
    /// tests a key other than the one bound to the peer.
    func candidateKey(for nonce: Nonce, from peer: IPAddress) -> VerifyingKey? {
        guard let probe = outstanding[nonce], probe.peer == peer else { return nil }
        return probe.key
    }

    /// The keys other than the bound one that probes of `peer` test.
    func candidateKeys(of peer: IPAddress) -> [VerifyingKey] {
        var keys: [VerifyingKey] = []
        for probe in outstanding.values where probe.peer == peer {
            if let key = probe.key, !keys.contains(key) { keys.append(key) }
        }
        return keys
    }

    /// Whether any probe of `peer` is out.
    func isProbing(_ peer: IPAddress) -> Bool { probesPerPeer[peer] != nil }

    /// Drops every probe of `peer` (its mapping went).
    mutating func cancel(_ peer: IPAddress) {
        guard probesPerPeer.removeValue(forKey: peer) != nil else { return }
        outstanding = outstanding.filter { $0.value.peer != peer }
    }

    private mutating func remove(_ nonce: Nonce, of peer: IPAddress) {
        outstanding[nonce] = nil
        let left = (probesPerPeer[peer] ?? 1) - 1
        probesPerPeer[peer] = left > 0 ? left : nil
    }

    /// When a probe is next due or expires, if any is out.
    var nextEvent: UInt64? { outstanding.values.map { $0.schedule.nextSendAt ?? $0.schedule.deadline }.min() }
}
