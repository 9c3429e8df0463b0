import MATIMSClient
import MATLog
import MATPacket
import MATSignaling

/// Reachability checks of what the IMS says (``AnswerTrial``) and of peers gone quiet
/// (``IdleProbing``), both by probes (``ReachabilityProbes``) the signaling sends.
extension MappingService {
    /// Takes an IMS answer whose MoAs were all proven before, with the key bound now;
    /// otherwise puts it on trial. Returns whether the engine's MoAs changed.
    func takeChecked(_ answer: PeerMappingAnswer, expiresAt: UInt64, now: UInt64) -> Bool {
        let mapping = answer.peerMapping()
        let pinned = config.peers.contains { $0.homeAddress == answer.hoa && $0.publicKey != nil }
        let answerKey = pinned ? nil : answer.publicKey.flatMap(VerifyingKey.init(base64:))
        let held = peerKeys[answer.hoa]
        let proven = provenMapping(of: answer.hoa)
        switch AnswerTrial.decide(mapping, answerKey: answerKey, heldKey: held, previous: proven,
                                  authenticated: lookupsAreSigned) {
        case .refuseUnkeyed:
            refusedUnkeyed(answer.hoa, now: now)
            return false
        case .take(let taken):
            answerTrials[answer.hoa] = nil
            learnKey(from: answer)
            return install(taken, expiresAt: expiresAt, reason: "\(answer)")
        case .refuse:
            log(.warning, "matd: \(answer.hoa): an unsigned IMS answer names another key than the one held "
                + "(\(answer)); not taken (this node has no IMS key to sign its lookups with)")
            EventLog.shared.post("answer_refused", ["peer": "\(answer.hoa)", "why": "unsigned_key_change"])
            learned[answer.hoa]?.expiresAt = expiresAt
            return false
        case .probe(let trial):
            if let current = answerTrials[answer.hoa], current.answer == trial.answer, current.key == trial.key {
                // The same answer again while its probes are out.
                learned[answer.hoa]?.expiresAt = expiresAt
                return false
            }
            if refusedAnswers.isRefused(trial.answer, key: trial.key, now: now) {
                // Its probes went unanswered a short while ago: the same addresses are
                // not probed again (nor alerted, for a first contact) on every reading.
                learned[answer.hoa]?.expiresAt = expiresAt
                return false
            }
            endTrial(of: answer.hoa)
            answerTrials[answer.hoa] = trial
            signaling.probe(answer.hoa, at: trial.toProbe, key: trial.key, now: now)
            log("matd: \(answer.hoa): the IMS says \(answer); probing \(trial.toProbe.map(\.description).joined(separator: ", "))"
                + (trial.key == nil ? "" : " with the new key") + " before it is taken")
            EventLog.shared.post("answer_on_trial", ["peer": "\(answer.hoa)", "probing": trial.toProbe.map(\.description).joined(separator: " "),
                                                     "new_key": trial.key == nil ? "no" : "yes"])
            guard proven == nil else {
                // The proven mapping stays in use until a probe is answered.
                learned[answer.hoa]?.expiresAt = expiresAt
                return false
            }
            // First contact: nothing proven to keep. The answer goes in with every MoA
            // limited, and nothing from them is taken as the peer's before a probe signed
            // with its key is answered there: a dead peer's old MoA, still registered, may
            // be another host's now. Its key is the only one there is (the peer's signed
            // answers need it). Otherwise the answer is not in the table, and needs no limit.
            for moa in trial.toProbe { engine.send(.limitUntilProven(moa)) }
            if held == nil { learnKey(from: answer) }
            return install(mapping, expiresAt: expiresAt, reason: "\(answer) (first contact, MoAs being probed)")
        }
    }

    /// Whether this node's lookups are signed (it has an IMS key) and only signed answers
    /// count. A node without an IMS key asks unsigned, so anyone on the path may answer.
    var lookupsAreSigned: Bool { client?.configuration.keys.isEmpty == false }

    /// An unsigned answer (or key) for `hoa`, which has no key bound here, was refused: a
    /// node without an IMS key has nothing to check it with (``AnswerTrial``). Logged once
    /// per HoA per 5 min (each packet for it asks again, once a second at most), always
    /// posted as an event.
    func refusedUnkeyed(_ hoa: IPAddress, now: UInt64) {
        EventLog.shared.post("answer_refused", ["peer": "\(hoa)", "why": "unsigned_first_contact"])
        guard unkeyedRefusals.take(hoa, now: now) else { return }
        log(.warning, "matd: \(hoa): not learned from the IMS: this node has no IMS key, so its lookups are unsigned "
            + "and their answers cannot be checked (anyone on the path could answer with a key of its own); "
            + "give this node an IMS key ([ims] key-file), or pin the peer's key in a [peer] section")
    }

    /// What is proven of `hoa` now: a trial's previous mapping, or the mapping in use.
    func provenMapping(of hoa: IPAddress) -> PeerMapping? {
        if let trial = answerTrials[hoa] { return trial.previous }
        if let trial = provisional[hoa] { return trial.previous }
        return learned[hoa]?.mapping
    }

    func reached(hoa: IPAddress, at moa: IPAddress?, key: VerifyingKey?) {
        let now = Self.milliseconds()
        idle.heard(hoa, now: now)
        if !signaling.isProbing(hoa) { freshness.roundEnded(hoa) }
        // Signed with the key bound to it (not one an IMS answer on trial names).
        if let moa, key == nil, freshness.signed(hoa, from: moa, now: now) {
            // Its proof had run out (``ProofFreshness``): its packets are its own again.
            engine.send(.endLimit(moa, validated: true))
            log("matd: \(hoa) answered from \(moa): its packets from there are taken as its own again")
        }
        // A new key is proven only by an answer verified with it.
        guard let moa, var trial = answerTrials[hoa], trial.pending.contains(moa), trial.key == key else { return }
        let first = trial.answered(moa)
        if first { alertFirstContact(hoa, at: moa, now: now) }
        answerTrials[hoa] = trial.isDecided ? nil : trial
        refusedAnswers.forget(hoa)
        engine.send(.endLimit(moa, validated: true))
        if first, let key = trial.key {
            // Replaces the mapping and the replay state too (keyReplaced).
            keyReplaced(hoa, by: key.base64)
            peerKeys[hoa] = key
        }
        guard let mapping = trial.provenMapping else { return }
        if let current = learned[hoa]?.mapping, mapping.sequence < current.sequence {
            // The table keeps the newest sequence: an older one goes in after a removal.
            engine.send(.removeMapping(hoa))
            learned[hoa] = nil
        }
        // A claim settled here means the table refused this mapping before: put it in anew.
        if settleClaims(to: [moa], provenBy: hoa) { learned[hoa] = nil }
        let expiresAt = learned[hoa]?.expiresAt ?? MappingRefresh.afterProvenAnswer(recordTTL: config.ims?.recordTTL, now: now)
        if install(mapping, expiresAt: expiresAt, reason: "\(mapping.description) (IMS answer, \(moa) answered its probe)") {
            updateDiversion()
        }
    }

    func unreachable(hoa: IPAddress, at moa: IPAddress) {
        if var trial = answerTrials[hoa], trial.pending.contains(moa) {
            trial.failed(moa)
            answerTrials[hoa] = trial.isDecided ? nil : trial
            // An answered MoA put the proven part in already (`reached`).
            if trial.isDecided, !trial.answeredAny { trialFailed(hoa, trial) }
        }
        if learned[hoa]?.mapping.moas.contains(where: { $0.address == moa }) != true { engine.send(.endLimit(moa, validated: false)) }
        if !signaling.isProbing(hoa) { freshness.roundEnded(hoa) }
        guard !signaling.isProbing(hoa), learned[hoa] != nil, idle.roundFailed(hoa, now: Self.milliseconds()) else { return }
        signaling.idlePeerDropped(logging: "matd: dropping peer \(hoa): silent for \(idle.idleAfter / 1_000) s and it "
            + "answered none of its probes")
        EventLog.shared.post("idle_peer_dropped", ["peer": "\(hoa)"])
        forget(hoa)
        updateDiversion()
    }

    /// No MoA new in the answer answered: nothing of it is kept. A first contact is
    /// forgotten (the next packet asks again); otherwise the proven mapping stayed in use.
    private func trialFailed(_ hoa: IPAddress, _ trial: AnswerTrial) {
        log(.warning, "matd: \(hoa): no MoA of the IMS answer \(trial.answer.description) answered its probe"
            + (trial.key == nil ? "" : " with the key it names") + "; not taken")
        EventLog.shared.post("answer_refused", ["peer": "\(hoa)"])
        refusedAnswers.refused(trial, now: Self.milliseconds())
        guard trial.previous == nil else { return }
        for moa in trial.answer.moas { engine.send(.endLimit(moa.address, validated: false)) }
        forget(hoa)
        updateDiversion()
    }

    /// Ends `hoa`'s trial, if any. The MoAs of a first contact's trial were limited (and
    /// go from the table with the mapping, or with the next one); no other trial's were.
    func endTrial(of hoa: IPAddress) {
        guard let trial = answerTrials.removeValue(forKey: hoa), trial.previous == nil else { return }
        for moa in trial.pending { engine.send(.endLimit(moa, validated: false)) }
    }

    /// `hoa` answered from `moas` with its key: another learned HoA's claim to any of them
    /// is stale (its node left the address, killed before its registration lifetime ran
    /// out), and would keep the new tenant out of the table and have the tenant's packets
    /// taken as the old node's. Those MoAs go from that mapping, and the mapping with them
    /// if they were all it had. A live node cannot lose its MoA this way: a claimant
    /// elsewhere cannot answer from it (the probe and the challenge name the claimant's
    /// HoA as receiver, which the node there refuses).
    /// Returns whether it took a MoA from anyone. Costs O(`moas`): the claimants come
    /// from ``LearnedPeers``' index (``MoAClaims``), not from a walk over every peer.
    @discardableResult
    func settleClaims(to moas: [IPAddress], provenBy hoa: IPAddress) -> Bool {
        var settled = false
        for other in learned.claims.others(claiming: moas, besides: hoa) {
            // Settling one claimant changes no other's entry: each is read as it is now.
            guard let entry = learned[other] else { continue }
            let remaining = entry.mapping.moas.filter { !moas.contains($0.address) }
            guard remaining.count < entry.mapping.moas.count else { continue }
            log(.notice, "matd: \(hoa) answered from \(moas.map(\.description).joined(separator: ", ")), which "
                + "\(other)'s mapping still claimed; \(other) no longer has it")
            EventLog.shared.post("claim_settled", ["peer": "\(hoa)", "previous": "\(other)",
                                                   "mobile": moas.map(\.description).joined(separator: " ")])
            signaling.countClaimSettled()
            settled = true
            if remaining.isEmpty {
                provisional[other] = nil
                forget(other)
            } else {
                engine.send(.removeMapping(other))
                learned[other] = nil
                _ = install(PeerMapping(hoa: other, moas: remaining, sequence: entry.mapping.sequence),
                            expiresAt: entry.expiresAt, reason: "\(other): claim to \(moas) settled for \(hoa)")
            }
        }
        return settled
    }

    /// Probes the learned peers that have been silent for a while, and those whose proof
    /// is running out; limits the MoAs whose proof ran out.
    func probeIdlePeers(now: UInt64) {
        // Data from a peer counts as hearing from it, within limits (``IdleProbing``), and
        // says it is in use (``ProofFreshness``).
        for hoa in engine.takeInboundPeers() {
            idle.dataArrived(from: hoa, now: now)
            freshness.dataArrived(from: hoa, now: now)
        }
        // And so do its packets the kernel fast path translated, at their own (older) times.
        for (hoa, at) in engine.fastPath?.takeHeard() ?? [:] {
            idle.dataArrived(from: hoa, now: min(at, now))
            freshness.dataArrived(from: hoa, now: min(at, now))
        }
        expireFirstContactAlerts(now: now)
        checkProofs(now: now)
        // No more than the probes that may go out: 100,000 restored peers come due together
        // 30 s after a start, and each turn took and put back every one the slots refused.
        for hoa in idle.due(at: now, limit: signaling.probeSlotsFree) {
            guard let mapping = learned[hoa]?.mapping else {
                idle.forget(hoa)
                continue
            }
            // A peer whose mapping is being checked anyway needs no probe of its own.
            guard provisional[hoa] == nil, answerTrials[hoa] == nil else {
                idle.heard(hoa, now: now)
                continue
            }
            signaling.probe(hoa, at: mapping.moas.map(\.address), key: nil, now: now)
            // None started (every probe slot is taken, ``ReachabilityProbes``): next time.
            if !signaling.isProbing(hoa) { idle.roundNotStarted(hoa) }
        }
    }

    /// Lapses logged one by one per check; the rest of a check's get one line.
    static let lapsesLoggedPerStep = 10

    /// Limits each MoA whose proof ran out as a first contact's (nothing from it is the
    /// peer's, what goes there is held to the unvalidated-path budget, the kernel fast
    /// path leaves the peer to the engine), counts them (`proofs_lapsed`), and probes the
    /// peers ``ProofFreshness`` picks.
    private func checkProofs(now: UInt64) {
        let step = freshness.step(at: now)
        var limited = 0
        var logged = 0
        var unlogged = 0
        for lapse in step.lapses {
            guard learned[lapse.hoa] != nil else {
                endLapsedLimits(freshness.forget(lapse.hoa), of: lapse.hoa)
                continue
            }
            for moa in lapse.moas { engine.send(.limitUntilProven(moa)) }
            limited += lapse.moas.count
            // Rare: a live peer answers before (in use) or at its idle probe (F is longer).
            // Many at once (a node that was stopped past F with its peers restored) get one
            // line for the rest, so the log stays readable.
            guard logged < Self.lapsesLoggedPerStep else {
                unlogged += 1
                continue
            }
            logged += 1
            let moas = lapse.moas.map(\.description).joined(separator: ", ")
            log(.notice, "matd: \(lapse.hoa): nothing signed from \(moas) for \(freshness.lifetime / 1_000) s "
                + "(proof-lifetime)\(lapse.inUse ? " while its packets came" : ""); packets from there are not "
                + "taken as \(lapse.hoa)'s until it answers a probe")
        }
        if unlogged > 0 {
            log(.notice, "matd: and \(unlogged) more peer(s) with nothing signed for \(freshness.lifetime / 1_000) s "
                + "(proof-lifetime): their packets are not taken as theirs until they answer a probe (proofs_lapsed)")
        }
        if limited > 0 { signaling.countProofsLapsed(limited) }
        for hoa in step.probes {
            guard let mapping = learned[hoa]?.mapping else {
                endLapsedLimits(freshness.forget(hoa), of: hoa)
                continue
            }
            signaling.probe(hoa, at: mapping.moas.map(\.address), key: nil, now: now)
            // None started (every probe slot is taken, ``ReachabilityProbes``): next time.
            if !signaling.isProbing(hoa) { freshness.roundNotStarted(hoa) }
        }
    }

    /// `mapping` is back in use without ``install(_:expiresAt:reason:)`` (a move's
    /// challenge failed, and every limit of the trial's mapping ended): the MoAs the trial
    /// brought are forgotten, and the lapsed ones among the previous limited again.
    func mappingRestored(_ mapping: PeerMapping) {
        endLapsedLimits(freshness.track(mapping.hoa, moas: mapping.moas.map(\.address), now: Self.milliseconds()), of: mapping.hoa)
        for moa in freshness.lapsed[mapping.hoa] ?? [] { engine.send(.limitUntilProven(moa)) }
    }

    /// Ends the limit of `moas`, lapsed MoAs `hoa` no longer maps and no other peer's
    /// lapse holds (``ProofFreshness`` returns only those), unless a first contact's trial
    /// of another peer waits for one of them (its own check ends that).
    func endLapsedLimits(_ moas: [IPAddress], of hoa: IPAddress) {
        for moa in moas where !answerTrials.values.contains(where: { $0.pending.contains(moa) }) {
            engine.send(.endLimit(moa, validated: false))
        }
    }
}
