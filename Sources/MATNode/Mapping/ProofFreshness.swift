import MATPacket

/// How long a learned peer's MoA counts as the peer's: for ``lifetime`` (F,
/// `proof-lifetime`) after the last word signed with the peer's key that came from that
/// MoA (an answer to a probe or challenge, an acknowledgement, or a MoA going into the
/// mapping after such a word).
///
/// Data is no proof: anyone who holds the MoA can send it (the next tenant of a dead
/// node's address). So a MoA whose proof runs out goes back to unproven exactly as a first
/// contact's MoA is (`limitUntilProven`: nothing from it is delivered as the peer's, what
/// goes there is held to the unvalidated-path budget, and the kernel fast path leaves the
/// peer to the engine), and the peer is probed; an answer from that MoA proves it again.
/// A new tenant is therefore taken for a dead node for at most F after the node's last
/// signed word, whatever it sends.
///
/// A live peer in use (its data came in within F) never gets there: it is probed
/// ``refreshAfter`` into its proof, 10 s before F runs out (room for a probe round of
/// 5.5 s and most of another). Silent peers are not probed ahead: ``IdleProbing`` checks
/// them once an idle period, and with F longer than an idle period and a probe round (the
/// default: 40 s against 30 + 5.5 s) a live one never lapses either; one whose proof
/// lapses is probed then, after the peers in use.
///
/// Probe rounds started here are bounded by a token bucket of ``roundsPerSecond`` (with a
/// burst of as many): whatever the number of peers, at most that many rounds a second
/// (each at most 4 datagrams of about 140 bytes). Rounds that find no token wait for the
/// next call, most urgent first (peers in use first, then the earliest lapse).
///
/// A step costs what came due, not a walk over every tracked peer (issue 9;
/// docs/benchmarks.md, "Scale"): each peer waits in deadline heaps (``DueQueue``) for its
/// next lapse and for its oldest proof to be ``refreshAfter`` old, and the peers to probe
/// wait in two heaps by deadline, the peers in use before the silent ones. 100,000 proofs
/// lapsing together (a node stopped past F with its peers restored) lapse
/// ``lapsesPerStep`` peers a step, earliest first, so the rest count as proven for a
/// few steps more (2.5 s for 100,000 at ten steps a second); their refresh times, which
/// came together 10 s before, are looked at ``refreshesPerStep`` a step too.
///
/// Pure: the caller passes the time (monotonic milliseconds), sends the probes and the
/// engine's commands.
struct ProofFreshness {
    /// F: how long a MoA counts as proven after its last signed word (ms).
    let lifetime: UInt64
    /// Most probe rounds started per second, and the bucket's burst.
    let roundsPerSecond: UInt64
    /// The default of ``roundsPerSecond``: at the default F (40 s) enough for 30,000 peers
    /// in use at once to be refreshed in time (``refreshAfter``: one round per 30 s each);
    /// past that, the proofs of the peers with the latest deadlines run out and they are
    /// probed in turn (their packets dropped meanwhile).
    static let defaultRoundsPerSecond: UInt64 = 1_000
    /// How long a round counts as out when the caller never said it ended (ms): longer
    /// than a probe's 5.5 s.
    static let roundTimeout: UInt64 = 6_000
    /// Into a proof, when a peer in use is probed to renew it (ms): 10 s before F runs out
    /// (room for a probe round of 5.5 s and most of another), or half of F if that is less.
    var refreshAfter: UInt64 { lifetime - min(lifetime / 2, 10_000) }

    /// When each tracked peer's MoAs were last proven (ms), per peer HoA and MoA.
    private(set) var provenAt: [IPAddress: [IPAddress: UInt64]] = [:]
    /// The MoAs whose proof ran out, per peer HoA: unproven until they answer.
    private(set) var lapsed: [IPAddress: Set<IPAddress>] = [:]
    /// How many peers' ``lapsed`` sets hold each MoA: whether another peer's lapse still
    /// holds a MoA's limit is one lookup, not a walk of every lapsed peer (a mass lapse
    /// forgotten peer by peer would be quadratic).
    private var lapsedHolders: [IPAddress: Int] = [:]
    /// When data last came from each tracked peer (ms).
    private(set) var lastData: [IPAddress: UInt64] = [:]
    /// Peers with a round of probes out that was started here, and when it started.
    private(set) var probing: [IPAddress: UInt64] = [:]
    /// Peers with a lapsed MoA and no probe round since it lapsed.
    private(set) var awaitingProbe: Set<IPAddress> = []
    /// The token bucket, in thousandths of a round, and when it was last filled (ms).
    private var credit: UInt64
    private var filledAt: UInt64 = 0
    /// Each peer with a MoA not lapsed, due when the earliest of them lapses.
    private var lapseDue = DueQueue<IPAddress>()
    /// Each peer with a MoA not lapsed, due when its oldest proof is ``refreshAfter`` old
    /// (probed then if in use; data that comes later asks again, ``dataArrived(from:now:)``).
    private var refreshDue = DueQueue<IPAddress>()
    /// The peers to probe, keyed by the deadline that orders them (the earliest lapse of
    /// all its MoAs for a lapsed peer, of its proven ones for a refresh): those in use
    /// (as of their last change; checked again when taken) and the silent lapsed ones.
    private var candidatesInUse = DueQueue<IPAddress>()
    private var candidatesSilent = DueQueue<IPAddress>()
    /// Each round started here, due when it counts as ended (``roundTimeout``).
    private var roundsDue = DueQueue<IPAddress>()
    /// Peers whose round ended (or did not start) since the last step, to be placed among
    /// the candidates again at its time.
    private var roundsEnded: Set<IPAddress> = []
    /// Most peers a step lapses; the rest lapse at the next steps, earliest first.
    static let lapsesPerStep = 4_096
    /// Most peers whose refresh time came a step looks at (each silent peer's comes once a
    /// proof, all together after a start with restored peers); the rest at the next steps,
    /// earliest first, well within the 10 s a refresh has before the lapse.
    static let refreshesPerStep = 4_096
    /// How many peers the last ``step(at:)`` looked at (those due and those taken).
    private(set) var lastExamined = 0

    init(lifetime: UInt64, roundsPerSecond: UInt64 = Self.defaultRoundsPerSecond) {
        self.lifetime = max(2, lifetime)
        self.roundsPerSecond = max(1, roundsPerSecond)
        credit = self.roundsPerSecond * 1_000
    }

    /// What ``step(at:)`` decided.
    struct Step: Equatable {
        /// A peer's MoAs whose proof ran out in this step: they are to be limited as a
        /// first contact's are. `inUse`: its data came in within F.
        struct Lapse: Equatable {
            var hoa: IPAddress
            var moas: [IPAddress]
            var inUse: Bool
        }
        var lapses: [Lapse] = []
        /// Peers to probe at every MoA of their mapping, a round each (``roundEnded(_:)``
        /// when the round is over).
        var probes: [IPAddress] = []
    }

    /// `hoa`'s learned mapping is `moas` now: a MoA new to it counts as proven from `now`
    /// (a mapping takes a MoA after a signed word from it, or limits it itself: a first
    /// contact's), one already tracked keeps its proof (an IMS answer naming it again
    /// proves nothing), and one gone from the mapping is forgotten. Returns the lapsed
    /// MoAs that left the mapping and no other peer's lapse holds, whose limit is to end.
    mutating func track(_ hoa: IPAddress, moas: [IPAddress], now: UInt64) -> [IPAddress] {
        let before = provenAt[hoa] ?? [:]
        var after: [IPAddress: UInt64] = [:]
        for moa in moas {
            if let at = before[moa] {
                after[moa] = at
            } else {
                after[moa] = now
            }
        }
        provenAt[hoa] = after
        defer { reschedule(hoa, now: now) }
        guard var gone = lapsed[hoa] else { return [] }
        let left = gone.subtracting(moas)
        gone.subtract(left)
        lapsed[hoa] = gone.isEmpty ? nil : gone
        if gone.isEmpty { awaitingProbe.remove(hoa) }
        return released(left)
    }

    /// A word signed with `hoa`'s key came from `moa` at `now`: that MoA is proven from
    /// now. Returns whether its limit is to end: it had lapsed and no other peer's lapse
    /// holds it (a word from one peer proves nothing of another behind the same MoA, as
    /// with ``track(_:moas:now:)`` and ``forget(_:)``).
    mutating func signed(_ hoa: IPAddress, from moa: IPAddress, now: UInt64) -> Bool {
        guard provenAt[hoa]?[moa] != nil else { return false }
        provenAt[hoa]?[moa] = now
        defer { reschedule(hoa, now: now) }
        guard lapsed[hoa]?.remove(moa) != nil else { return false }
        let free = released([moa])
        if lapsed[hoa]?.isEmpty == true {
            lapsed[hoa] = nil
            awaitingProbe.remove(hoa)
        }
        return !free.isEmpty
    }

    /// Packets of `hoa`'s came in by `now` (it is in use). An older time never replaces
    /// a newer one (the kernel fast path's reports come late).
    mutating func dataArrived(from hoa: IPAddress, now: UInt64) {
        guard provenAt[hoa] != nil else { return }
        lastData[hoa] = max(lastData[hoa] ?? 0, now)
        placeCandidate(hoa, now: now)
    }

    /// No probe of `hoa` is out any more (answered or not): another round may start (the
    /// next ``step(at:)`` places it among the candidates again).
    mutating func roundEnded(_ hoa: IPAddress) {
        guard probing.removeValue(forKey: hoa) != nil else { return }
        roundsDue.remove(hoa)
        roundsEnded.insert(hoa)
    }

    /// The round ``step(at:)`` picked `hoa` for could not start (every probe slot taken):
    /// a lapsed peer waits for its round again.
    mutating func roundNotStarted(_ hoa: IPAddress) {
        probing[hoa] = nil
        roundsDue.remove(hoa)
        if lapsed[hoa] != nil { awaitingProbe.insert(hoa) }
        roundsEnded.insert(hoa)
    }

    /// `hoa`'s mapping went. Returns its lapsed MoAs no other peer's lapse holds, whose
    /// limit is to end.
    mutating func forget(_ hoa: IPAddress) -> [IPAddress] {
        provenAt[hoa] = nil
        lastData[hoa] = nil
        probing[hoa] = nil
        awaitingProbe.remove(hoa)
        lapseDue.remove(hoa)
        refreshDue.remove(hoa)
        candidatesInUse.remove(hoa)
        candidatesSilent.remove(hoa)
        roundsDue.remove(hoa)
        roundsEnded.remove(hoa)
        return released(lapsed.removeValue(forKey: hoa) ?? [])
    }

    /// Whether some peer's lapse holds `moa` (its limit stays).
    func isLapsed(_ moa: IPAddress) -> Bool { lapsedHolders[moa] != nil }

    /// `moas` left one peer's lapsed set: returns, sorted, those no other peer's holds.
    private mutating func released(_ moas: Set<IPAddress>) -> [IPAddress] {
        var free: [IPAddress] = []
        for moa in moas {
            let holders = (lapsedHolders[moa] ?? 1) - 1
            lapsedHolders[moa] = holders > 0 ? holders : nil
            if holders <= 0 { free.append(moa) }
        }
        return free.sorted()
    }

    /// Whether `hoa` is in use at `now`: its data came in within F.
    func inUse(_ hoa: IPAddress, now: UInt64) -> Bool {
        guard let data = lastData[hoa] else { return false }
        return data + lifetime > now
    }

    /// The MoAs whose proof ran out by `now` (lapsed from now on; at most
    /// ``lapsesPerStep`` peers, earliest first), and the peers to probe: those in use whose
    /// oldest proof is ``refreshAfter`` old (looked at ``refreshesPerStep`` a step), and
    /// those whose MoA lapsed, as many as the token bucket allows, most urgent first.
    /// O((due + probed) · log peers), the due bounded as said.
    mutating func step(at now: UInt64, lapseLimit: Int = Self.lapsesPerStep) -> Step {
        var step = Step()
        var examined = 0
        for hoa in lapseDue.takeDue(now: now, limit: lapseLimit) {
            examined += 1
            guard let moas = provenAt[hoa] else { continue }
            var newly: [IPAddress] = []
            for (moa, at) in moas where lapsed[hoa]?.contains(moa) != true && now >= at + lifetime { newly.append(moa) }
            if !newly.isEmpty {
                lapsed[hoa, default: []].formUnion(newly)
                for moa in newly { lapsedHolders[moa, default: 0] += 1 }
                awaitingProbe.insert(hoa)
                step.lapses.append(.init(hoa: hoa, moas: newly.sorted(), inUse: inUse(hoa, now: now)))
            }
            reschedule(hoa, now: now)
        }
        step.lapses.sort { $0.hoa < $1.hoa }
        for hoa in roundsDue.takeDue(now: now) {
            probing[hoa] = nil
            roundsEnded.insert(hoa)
        }
        for hoa in roundsEnded {
            examined += 1
            placeCandidate(hoa, now: now)
        }
        roundsEnded.removeAll(keepingCapacity: true)
        for hoa in refreshDue.takeDue(now: now, limit: Self.refreshesPerStep) {
            examined += 1
            placeCandidate(hoa, now: now)
        }
        fill(now: now)
        while credit >= 1_000, let hoa = takeCandidate(now: now, examined: &examined) {
            credit -= 1_000
            probing[hoa] = now
            roundsDue.schedule(hoa, at: now + Self.roundTimeout)
            awaitingProbe.remove(hoa)
            step.probes.append(hoa)
        }
        lastExamined = examined
        return step
    }

    /// The most urgent candidate: the earliest deadline among the peers in use, else among
    /// the silent lapsed ones. One gone out of use since it was placed joins the silent
    /// ones if it lapsed (a refresh is for peers in use only).
    private mutating func takeCandidate(now: UInt64, examined: inout Int) -> IPAddress? {
        while let hoa = candidatesInUse.takeDue(now: .max, limit: 1).first {
            examined += 1
            if inUse(hoa, now: now) { return hoa }
            placeCandidate(hoa, now: now)
        }
        guard let hoa = candidatesSilent.takeDue(now: .max, limit: 1).first else { return nil }
        examined += 1
        return hoa
    }

    /// Puts `hoa` among the candidates it belongs to at `now`, with its deadline, or none:
    /// a lapsed peer waiting for its round (in use or not), or one in use whose oldest
    /// proof is ``refreshAfter`` old; never one with a round out. O(its MoAs · log peers).
    private mutating func placeCandidate(_ hoa: IPAddress, now: UInt64) {
        var inUseAt: UInt64?, silentAt: UInt64?
        if probing[hoa] == nil, let moas = provenAt[hoa], !moas.isEmpty {
            let gone = lapsed[hoa]
            var oldest = UInt64.max, oldestProven = UInt64.max
            for (moa, at) in moas {
                oldest = min(oldest, at)
                if gone?.contains(moa) != true { oldestProven = min(oldestProven, at) }
            }
            let used = inUse(hoa, now: now)
            if awaitingProbe.contains(hoa) {
                if used { inUseAt = oldest + lifetime } else { silentAt = oldest + lifetime }
            } else if used, oldestProven != .max, now >= oldestProven + refreshAfter {
                inUseAt = oldestProven + lifetime
            }
        }
        if let inUseAt { candidatesInUse.schedule(hoa, at: inUseAt) } else { candidatesInUse.remove(hoa) }
        if let silentAt { candidatesSilent.schedule(hoa, at: silentAt) } else { candidatesSilent.remove(hoa) }
    }

    /// `hoa`'s proofs changed at `now`: its next lapse and refresh are scheduled anew, and
    /// its place among the candidates follows.
    private mutating func reschedule(_ hoa: IPAddress, now: UInt64) {
        var oldestProven = UInt64.max
        if let moas = provenAt[hoa] {
            let gone = lapsed[hoa]
            for (moa, at) in moas where gone?.contains(moa) != true { oldestProven = min(oldestProven, at) }
        }
        if oldestProven == .max {
            lapseDue.remove(hoa)
            refreshDue.remove(hoa)
        } else {
            lapseDue.schedule(hoa, at: oldestProven + lifetime)
            // Already due: the candidates below have it (a refresh waits for data then).
            if oldestProven + refreshAfter > now {
                refreshDue.schedule(hoa, at: oldestProven + refreshAfter)
            } else {
                refreshDue.remove(hoa)
            }
        }
        placeCandidate(hoa, now: now)
    }

    /// Adds what the bucket earned since it was last filled, up to a second's worth.
    private mutating func fill(now: UInt64) {
        guard now > filledAt else { return }
        credit = min(roundsPerSecond * 1_000, credit + (now - filledAt) * roundsPerSecond)
        filledAt = now
    }
}
