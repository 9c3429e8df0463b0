import MATPacket
@testable import MATNode

// The walks over every peer that the service and the engine made on each turn until
// 2026-12-07, kept as they were: the brute-force references the deadline-ordered
// structures (``DueQueue`` and its users) are checked against over random schedules, and
// the "before" path of `TurnScaleTests`.

/// ``IdleProbing`` as it was: each turn walked every tracked peer for the due ones.
struct IdleProbingWalk {
    let idleAfter: UInt64
    var dataOnlyLimit: UInt64 { idleAfter * IdleProbing.dataOnlyPeriods }
    var lastHeard: [IPAddress: UInt64] = [:]
    var lastData: [IPAddress: UInt64] = [:]
    var probing: [IPAddress: UInt64] = [:]

    init(idleAfter: UInt64) { self.idleAfter = max(1, idleAfter) }

    mutating func track(_ hoa: IPAddress, now: UInt64) {
        if lastHeard[hoa] == nil { lastHeard[hoa] = now }
    }

    mutating func heard(_ hoa: IPAddress, now: UInt64) {
        guard lastHeard[hoa] != nil else { return }
        lastHeard[hoa] = now
        probing[hoa] = nil
    }

    mutating func dataArrived(from hoa: IPAddress, now: UInt64) {
        guard lastHeard[hoa] != nil else { return }
        lastData[hoa] = max(lastData[hoa] ?? 0, now)
    }

    mutating func forget(_ hoa: IPAddress) {
        lastHeard[hoa] = nil
        lastData[hoa] = nil
        probing[hoa] = nil
    }

    mutating func due(at now: UInt64) -> [IPAddress] {
        var due: [IPAddress] = []
        for hoa in lastHeard.keys where probing[hoa] == nil && now >= dueAt(hoa) {
            probing[hoa] = now
            due.append(hoa)
        }
        return due.sorted()
    }

    private func dueAt(_ hoa: IPAddress) -> UInt64 {
        let heard = lastHeard[hoa] ?? 0
        let evidence = max(heard, lastData[hoa] ?? 0)
        return min(evidence, heard + dataOnlyLimit - idleAfter) + idleAfter
    }

    mutating func roundNotStarted(_ hoa: IPAddress) { probing[hoa] = nil }

    mutating func roundFailed(_ hoa: IPAddress, now: UInt64) -> Bool {
        guard let started = probing.removeValue(forKey: hoa) else { return false }
        if let data = lastData[hoa], data >= started, now < (lastHeard[hoa] ?? 0) + dataOnlyLimit { return false }
        forget(hoa)
        return true
    }

    var nextDue: UInt64? { lastHeard.keys.filter { probing[$0] == nil }.map(dueAt).min() }
}

/// ``PublicAddressWaits/expire(now:)`` as it was: a walk over every waiting peer.
struct PublicAddressWaitsWalk {
    var waiting: [IPAddress: (since: UInt64, held: Bool)] = [:]

    mutating func wait(_ hoas: [IPAddress], now: UInt64) {
        for hoa in hoas { waiting[hoa] = (now, true) }
    }

    mutating func answered(_ family: AddressFamily) -> Set<IPAddress> {
        let answered = Set(waiting.keys.filter { $0.family == family })
        for hoa in answered { waiting[hoa] = nil }
        return answered
    }

    mutating func expire(now: UInt64) -> [IPAddress] {
        var expired: [IPAddress] = []
        for (hoa, entry) in waiting where entry.held && now >= entry.since + PublicAddressWaits.timeout {
            waiting[hoa]!.held = false
            expired.append(hoa)
        }
        return expired
    }
}

/// ``LearnedPeers/takeDueRefreshes(now:)`` as it was: a walk over every learned mapping.
func dueRefreshesWalk(_ learned: inout LearnedPeers, now: UInt64) -> [IPAddress] {
    let due = learned.filter { $0.value.expiresAt <= now }.map(\.key)
    for hoa in due { learned[hoa]?.expiresAt = now + MappingRefresh.answerWait }
    return due
}

/// ``EncapEndpoints/expire(now:)`` as it was, on a copy of its state.
struct EncapEndpointsWalk {
    let lifetime: UInt64
    var ports: [IPAddress: (port: UInt16, lastSeen: UInt64, commanded: Bool)] = [:]

    mutating func heard(_ moa: IPAddress, port: UInt16, now: UInt64) {
        ports[moa] = (port, now, ports[moa]?.commanded ?? false)
    }

    mutating func start(_ moa: IPAddress, port: UInt16, now: UInt64) { ports[moa] = (ports[moa]?.port ?? port, now, true) }
    mutating func stop(_ moa: IPAddress) { ports[moa] = nil }

    mutating func expire(now: UInt64) -> [IPAddress] {
        let gone = ports.filter { !$0.value.commanded && now >= $0.value.lastSeen + lifetime }.map(\.key)
        for moa in gone { ports[moa] = nil }
        return gone
    }
}

/// ``EncapPolicy`` as it was: `track` took every settled peer's MoA each turn, and `tick`
/// and `nextDeadline` walked every tracked peer.
struct EncapPolicyWalk {
    typealias Mode = EncapPolicy.Mode
    typealias Action = EncapPolicy.Action

    struct Peer {
        var mode: Mode
        var nonce: [UInt8] = []
        var probesSent = 0
        var nextProbeAt: UInt64 = 0
        var nextKeepaliveAt: UInt64 = 0
    }

    let setting: EncapSetting
    let probeInterval: UInt64
    let probes: Int
    let keepaliveInterval: UInt64
    let reprobeInterval: UInt64
    private let makeNonce: @Sendable () -> [UInt8]
    private var peers: [IPAddress: Peer] = [:]
    private var behindNAT = false

    init(setting: EncapSetting, probeInterval: UInt64 = 1_000, probes: Int = 3,
         keepaliveInterval: UInt64 = 15_000, reprobeInterval: UInt64 = 60_000,
         makeNonce: @escaping @Sendable () -> [UInt8]) {
        self.setting = setting
        self.probeInterval = probeInterval
        self.probes = probes
        self.keepaliveInterval = keepaliveInterval
        self.reprobeInterval = reprobeInterval
        self.makeNonce = makeNonce
    }

    func mode(of moa: IPAddress) -> Mode? { peers[moa]?.mode }

    mutating func track(_ moas: Set<IPAddress>, behindNAT: Bool, now: UInt64) -> [Action] {
        var actions: [Action] = []
        let restart = behindNAT != self.behindNAT
        self.behindNAT = behindNAT
        for (moa, peer) in peers where !moas.contains(moa) || restart {
            if peer.mode == .encapsulated && (!moas.contains(moa) || setting != .always) { actions.append(.stopEncap(moa)) }
            if !moas.contains(moa) || setting != .always { peers[moa] = nil }
        }
        for moa in moas.sorted(by: { $0.description < $1.description }) where peers[moa] == nil {
            switch setting {
            case .off:
                peers[moa] = Peer(mode: .direct)
            case .always:
                peers[moa] = Peer(mode: .encapsulated, nextKeepaliveAt: now + keepaliveInterval)
                actions += [.startEncap(moa), .keepalive(moa)]
            case .auto:
                if behindNAT {
                    peers[moa] = Peer(mode: .probing)
                    actions += probe(moa, now: now)
                } else {
                    peers[moa] = Peer(mode: .direct)
                }
            }
        }
        return actions
    }

    mutating func probeAnswered(from moa: IPAddress, nonce: [UInt8], now: UInt64) -> [Action] {
        guard var peer = peers[moa], !peer.nonce.isEmpty, peer.nonce == nonce, setting == .auto else { return [] }
        let was = peer.mode
        peer = Peer(mode: .direct)
        peers[moa] = peer
        return was == .encapsulated ? [.stopEncap(moa)] : []
    }

    mutating func tick(now: UInt64) -> [Action] {
        var actions: [Action] = []
        for moa in peers.keys.sorted(by: { $0.description < $1.description }) {
            guard let peer = peers[moa] else { continue }
            switch peer.mode {
            case .direct:
                break
            case .probing where now >= peer.nextProbeAt:
                if peer.probesSent < probes {
                    actions += probe(moa, now: now)
                } else {
                    // Nothing came back: the NAT drops what it has not seen.
                    peers[moa]?.mode = .encapsulated
                    peers[moa]?.nextKeepaliveAt = now + keepaliveInterval
                    peers[moa]?.probesSent = 0
                    peers[moa]?.nonce = []
                    peers[moa]?.nextProbeAt = now + reprobeInterval
                    actions += [.startEncap(moa), .keepalive(moa)]
                }
            case .probing:
                break
            case .encapsulated:
                if now >= peer.nextKeepaliveAt {
                    peers[moa]?.nextKeepaliveAt = now + keepaliveInterval
                    actions.append(.keepalive(moa))
                }
                if setting == .auto && now >= peer.nextProbeAt {
                    // One request per round: an answer goes back to direct, silence stays.
                    peers[moa]?.nonce = makeNonce()
                    peers[moa]?.nextProbeAt = now + reprobeInterval
                    actions.append(.sendProbe(moa, nonce: peers[moa]!.nonce))
                }
            }
        }
        return actions
    }

    var nextDeadline: UInt64? {
        peers.values.compactMap { peer -> UInt64? in
            switch peer.mode {
            case .direct: nil
            case .probing: peer.nextProbeAt
            case .encapsulated: setting == .auto ? min(peer.nextKeepaliveAt, peer.nextProbeAt) : peer.nextKeepaliveAt
            }
        }.min()
    }

    private mutating func probe(_ moa: IPAddress, now: UInt64) -> [Action] {
        let nonce = makeNonce()
        peers[moa]?.nonce = nonce
        peers[moa]?.probesSent += 1
        peers[moa]?.nextProbeAt = now + probeInterval
        return [.sendProbe(moa, nonce: nonce)]
    }
}

/// ``SignalingMachine/tick(now:environment:)``'s part for the alerts as it was: a walk over
/// every outstanding alert for the due ones (here deciding only, sending nothing), the
/// "before" of `SignalingScaleTests`.
func signalingTickWalk(_ outgoing: [IPAddress: SignalingMachine.Outgoing], now: UInt64) -> (resend: Int, giveUp: Int) {
    var resend = 0, giveUp = 0
    for (_, entry) in outgoing {
        guard let due = entry.schedule.nextSendAt else {
            if entry.schedule.hasExpired(at: now) { giveUp += 1 }
            continue
        }
        if due <= now { resend += 1 }
    }
    return (resend, giveUp)
}

/// The engine's `followRelayFallback` as it was: each call asked ``RelayFallback`` about
/// every MoA in UDP and compared the set it made with the last one (`previous`).
func relayFallbackWalk(_ fallback: RelayFallback, moas: some Sequence<IPAddress>, previous: inout Set<IPAddress>,
                       now: UInt64) -> RelayFallback.Transitions {
    var relayed = Set<IPAddress>()
    for moa in moas where fallback.relayed(moa, now: now) { relayed.insert(moa) }
    let transitions = RelayFallback.Transitions(relayed: relayed.subtracting(previous).sorted(),
                                                direct: previous.subtracting(relayed).sorted())
    previous = relayed
    return transitions
}

/// ``ProofFreshness`` as it was until 2026-12-07: once any peer waited for its round, or
/// any proof was `refreshAfter` old, each step walked every tracked peer twice (for the
/// lapses and for the candidates) and sorted the candidates; a mass lapse made every
/// step a walk until the last lapsed peer was probed.
struct ProofFreshnessWalk {
    let lifetime: UInt64
    let roundsPerSecond: UInt64
    var refreshAfter: UInt64 { lifetime - min(lifetime / 2, 10_000) }

    private(set) var provenAt: [IPAddress: [IPAddress: UInt64]] = [:]
    private(set) var lapsed: [IPAddress: Set<IPAddress>] = [:]
    private var lapsedHolders: [IPAddress: Int] = [:]
    private(set) var lastData: [IPAddress: UInt64] = [:]
    private(set) var probing: [IPAddress: UInt64] = [:]
    private(set) var awaitingProbe: Set<IPAddress> = []
    private var credit: UInt64
    private var filledAt: UInt64 = 0
    private var quietUntil: UInt64 = 0

    init(lifetime: UInt64, roundsPerSecond: UInt64 = ProofFreshness.defaultRoundsPerSecond) {
        self.lifetime = max(2, lifetime)
        self.roundsPerSecond = max(1, roundsPerSecond)
        credit = self.roundsPerSecond * 1_000
    }

    typealias Step = ProofFreshness.Step

    mutating func track(_ hoa: IPAddress, moas: [IPAddress], now: UInt64) -> [IPAddress] {
        let before = provenAt[hoa] ?? [:]
        var after: [IPAddress: UInt64] = [:]
        for moa in moas {
            if let at = before[moa] {
                after[moa] = at
            } else {
                after[moa] = now
                quietUntil = min(quietUntil, now + refreshAfter)
            }
        }
        provenAt[hoa] = after
        guard var gone = lapsed[hoa] else { return [] }
        let left = gone.subtracting(moas)
        gone.subtract(left)
        lapsed[hoa] = gone.isEmpty ? nil : gone
        if gone.isEmpty { awaitingProbe.remove(hoa) }
        return released(left)
    }

    mutating func signed(_ hoa: IPAddress, from moa: IPAddress, now: UInt64) -> Bool {
        guard provenAt[hoa]?[moa] != nil else { return false }
        provenAt[hoa]?[moa] = now
        guard lapsed[hoa]?.remove(moa) != nil else { return false }
        let free = released([moa])
        quietUntil = min(quietUntil, now + refreshAfter)
        if lapsed[hoa]?.isEmpty == true {
            lapsed[hoa] = nil
            awaitingProbe.remove(hoa)
        }
        return !free.isEmpty
    }

    mutating func dataArrived(from hoa: IPAddress, now: UInt64) {
        guard provenAt[hoa] != nil else { return }
        lastData[hoa] = max(lastData[hoa] ?? 0, now)
    }

    mutating func roundEnded(_ hoa: IPAddress) { probing[hoa] = nil }

    mutating func roundNotStarted(_ hoa: IPAddress) {
        probing[hoa] = nil
        if lapsed[hoa] != nil { awaitingProbe.insert(hoa) }
    }

    mutating func forget(_ hoa: IPAddress) -> [IPAddress] {
        provenAt[hoa] = nil
        lastData[hoa] = nil
        probing[hoa] = nil
        awaitingProbe.remove(hoa)
        return released(lapsed.removeValue(forKey: hoa) ?? [])
    }

    func isLapsed(_ moa: IPAddress) -> Bool { lapsedHolders[moa] != nil }

    private mutating func released(_ moas: Set<IPAddress>) -> [IPAddress] {
        var free: [IPAddress] = []
        for moa in moas {
            let holders = (lapsedHolders[moa] ?? 1) - 1
            lapsedHolders[moa] = holders > 0 ? holders : nil
            if holders <= 0 { free.append(moa) }
        }
        return free.sorted()
    }

    func inUse(_ hoa: IPAddress, now: UInt64) -> Bool {
        guard let data = lastData[hoa] else { return false }
        return data + lifetime > now
    }

    mutating func step(at now: UInt64) -> Step {
        var step = Step()
        guard now >= quietUntil || !awaitingProbe.isEmpty else { return step }
        var earliest = UInt64.max
        for (hoa, moas) in provenAt {
            var newly: [IPAddress] = []
            for (moa, at) in moas where lapsed[hoa]?.contains(moa) != true {
                if now >= at + lifetime { newly.append(moa) } else { earliest = min(earliest, at) }
            }
            guard !newly.isEmpty else { continue }
            lapsed[hoa, default: []].formUnion(newly)
            for moa in newly { lapsedHolders[moa, default: 0] += 1 }
            awaitingProbe.insert(hoa)
            step.lapses.append(.init(hoa: hoa, moas: newly.sorted(), inUse: inUse(hoa, now: now)))
        }
        step.lapses.sort { $0.hoa < $1.hoa }
        quietUntil = earliest == .max ? .max : earliest + refreshAfter
        for (hoa, started) in probing where now >= started + ProofFreshness.roundTimeout { probing[hoa] = nil }
        fill(now: now)
        guard credit >= 1_000 else { return step }
        // Peers in use first (false sorts first), then the earliest deadline.
        var candidates: [(idle: Bool, deadline: UInt64, hoa: IPAddress)] = []
        for (hoa, moas) in provenAt where probing[hoa] == nil && !moas.isEmpty {
            let gone = lapsed[hoa]
            var oldest = UInt64.max, oldestProven = UInt64.max
            for (moa, at) in moas {
                oldest = min(oldest, at)
                if gone?.contains(moa) != true { oldestProven = min(oldestProven, at) }
            }
            let used = inUse(hoa, now: now)
            if awaitingProbe.contains(hoa) {
                candidates.append((!used, oldest + lifetime, hoa))
            } else if used, oldestProven != .max, now >= oldestProven + refreshAfter {
                candidates.append((false, oldestProven + lifetime, hoa))
            }
        }
        candidates.sort { (!$0.idle && $1.idle) || ($0.idle == $1.idle && ($0.deadline, $0.hoa) < ($1.deadline, $1.hoa)) }
        for candidate in candidates {
            guard credit >= 1_000 else { break }
            credit -= 1_000
            probing[candidate.hoa] = now
            awaitingProbe.remove(candidate.hoa)
            step.probes.append(candidate.hoa)
        }
        return step
    }

    private mutating func fill(now: UInt64) {
        guard now > filledAt else { return }
        credit = min(roundsPerSecond * 1_000, credit + (now - filledAt) * roundsPerSecond)
        filledAt = now
    }
}
