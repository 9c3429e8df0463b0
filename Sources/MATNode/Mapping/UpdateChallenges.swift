import MATPacket
import MATSignaling

/// The challenges of peers' binding updates: every MoA an update lists that the peer has
/// not proven is challenged on its own, with a nonce of its own, and only the MoAs that
/// answer from themselves are adopted. So a signed update cannot slip a bystander in
/// behind an address of the signer's own; a bystander gets one challenge per update.
///
/// Pure: the caller passes the time (monotonic milliseconds), sends the challenges and
/// acts on the outcomes.
struct UpdateChallenges {
    /// How long a challenge waits for its response, milliseconds.
    static let lifetime: UInt64 = 5_000

    struct Challenge: Equatable {
        var peer: IPAddress
        var moa: IPAddress
        var sequence: UInt64
        var expiresAt: UInt64
    }

    /// An update whose MoAs are being challenged.
    struct Trial: Equatable {
        var sequence: UInt64
        /// The MoAs it lists, duplicates dropped, in its order.
        var moas: [IPAddress]
        var lifetime: UInt32
        /// Listed MoAs proven before, or answered since.
        var proven: Set<IPAddress>
        /// Whether a response came (the update was acknowledged then).
        var acknowledged = false
    }

    private(set) var challenges: [Nonce: Challenge] = [:]
    private(set) var trials: [IPAddress: Trial] = [:]
    /// The last update of each peer none of whose challenges was answered: its late
    /// retransmissions (the mover resends until 6.2 s, the challenge waits 5 s) start no
    /// second trial of the MoAs that just failed. Emptied past ``failedCapacity`` peers.
    private(set) var failed: [IPAddress: UInt64] = [:]
    static let failedCapacity = 4_096

    /// What to do about a verified update.
    enum Decision: Equatable {
        /// A retransmission while its challenges are out: send these again.
        case again([Nonce: IPAddress])
        /// Every listed MoA is proven already: acknowledge; first adopt `moas` when they
        /// differ from what is in use (a MoA given up, or another order).
        case known(adopt: [IPAddress]?)
        /// A retransmission of an update whose challenges all went unanswered: nothing.
        case failedBefore
        /// Send these challenges; `unproven` are the MoAs to try out within the
        /// unvalidated-path limit; `void` are MoAs only an older update's challenges were
        /// checking, which are not used.
        case challenge([Nonce: IPAddress], unproven: [IPAddress], void: [IPAddress])
    }

    /// Decides on `peer`'s verified update `sequence` listing `moas`, valid for
    /// `lifetime` seconds, with `inUse` the MoAs proven for it now (its current mapping).
    mutating func update(from peer: IPAddress, sequence: UInt64, moas: [IPAddress], lifetime: UInt32,
                         inUse: [IPAddress], now: UInt64) -> Decision {
        let open = challenges.filter { $0.value.peer == peer && $0.value.sequence == sequence }
        if !open.isEmpty { return .again(open.mapValues(\.moa)) }
        if failed[peer] == sequence { return .failedBefore }
        var listed: [IPAddress] = []
        for moa in moas where !listed.contains(moa) { listed.append(moa) }
        let known = Set(inUse)
        let unproven = listed.filter { !known.contains($0) }
        if unproven.isEmpty {
            return .known(adopt: listed == inUse ? nil : listed)
        }
        var void: [IPAddress] = []
        if let stale = trials[peer], stale.sequence != sequence {
            for (nonce, challenge) in challenges where challenge.peer == peer && challenge.sequence == stale.sequence {
                challenges[nonce] = nil
                if !listed.contains(challenge.moa) { void.append(challenge.moa) }
            }
        }
        trials[peer] = Trial(sequence: sequence, moas: listed, lifetime: lifetime, proven: Set(listed).intersection(known))
        var sent: [Nonce: IPAddress] = [:]
        for moa in unproven {
            let nonce = Nonce.random()
            challenges[nonce] = Challenge(peer: peer, moa: moa, sequence: sequence, expiresAt: now + Self.lifetime)
            sent[nonce] = moa
        }
        return .challenge(sent, unproven: unproven, void: void.sorted { $0.description < $1.description })
    }

    /// What a response proved.
    struct Proof: Equatable {
        /// The update's MoAs proven so far, in its order: the mapping to adopt.
        var moas: [IPAddress]
        var lifetime: UInt32
        /// Whether this is the update's first response (acknowledge it now).
        var first: Bool
    }

    /// A verified response from `peer`, received from `source`, echoing `nonce` for update
    /// `sequence`: the proof, or nil when it matches no challenge (another nonce, another
    /// peer or update, or an answer from elsewhere than the MoA challenged).
    mutating func response(_ nonce: Nonce, from peer: IPAddress, sequence: UInt64, source: IPAddress) -> Proof? {
        guard let challenge = challenges[nonce], challenge.peer == peer, challenge.sequence == sequence,
              challenge.moa == source, var trial = trials[peer], trial.sequence == sequence else { return nil }
        challenges[nonce] = nil
        trial.proven.insert(source)
        let first = !trial.acknowledged
        trial.acknowledged = true
        trials[peer] = challenges.values.contains { $0.peer == peer } ? trial : nil
        return Proof(moas: trial.moas.filter(trial.proven.contains), lifetime: trial.lifetime, first: first)
    }

    /// A challenge whose wait ended unanswered; `trialFailed` when it was the update's last
    /// one and none was answered (the mapping goes back to what it was).
    struct Expiry: Equatable {
        var peer: IPAddress
        var moa: IPAddress
        var sequence: UInt64
        var trialFailed: Bool
    }

    /// When the next challenge expires, if any is out.
    var nextExpiry: UInt64? { challenges.values.map(\.expiresAt).min() }

    /// The challenges that expired at `now`, removed.
    mutating func expire(at now: UInt64) -> [Expiry] {
        var expired: [Expiry] = []
        for (nonce, challenge) in challenges.sorted(by: { $0.value.moa.description < $1.value.moa.description })
        where challenge.expiresAt <= now {
            challenges[nonce] = nil
            let open = challenges.values.contains { $0.peer == challenge.peer && $0.sequence == challenge.sequence }
            var failed = false
            if !open, let trial = trials[challenge.peer], trial.sequence == challenge.sequence {
                trials[challenge.peer] = nil
                failed = !trial.acknowledged
                if failed {
                    if self.failed.count >= Self.failedCapacity { self.failed.removeAll() }
                    self.failed[challenge.peer] = challenge.sequence
                }
            }
            expired.append(Expiry(peer: challenge.peer, moa: challenge.moa, sequence: challenge.sequence, trialFailed: failed))
        }
        return expired
    }
}
