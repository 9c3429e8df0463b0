import MATPacket
import MATSignaling

/// An IMS answer that names something this node has not seen proven: a MoA no signed
/// message came from, or another key than the one bound to the HoA. Nothing of it is
/// taken for good before the peer answers a probe from that MoA, signed with that key.
///
/// A lookup's answer is signed by the IMS only when the node has an IMS key; even then it
/// says only what the HoA's key holder registered, and a holder of a stolen key can
/// register a bystander's address, a key of its own or a sequence number far above the
/// owner's. So the answer's new MoAs go into the table limited to 3x what came from them
/// (``PacketProcessor/Command/limitUntilValidated(_:received:)``) and are probed; each
/// one that answers is adopted, and the answer's key and sequence with the first. If none
/// answers, the mapping goes back to what was proven before (or goes, for a first
/// contact), so the next lookup starts from there: the answer changed nothing lasting.
///
/// Pure: the service feeds it the probes' outcomes.
struct AnswerTrial: Equatable {
    /// The mapping the answer asks for, MoAs in its order of preference.
    let answer: PeerMapping
    /// The key the answer names, when it differs from the one bound to the HoA.
    let key: VerifyingKey?
    /// What was proven before the answer, put back if no MoA answers.
    let previous: PeerMapping?
    /// MoAs of the answer known to reach the peer: proven before, or answered since.
    private(set) var proven: Set<IPAddress>
    /// MoAs whose probe is still out.
    private(set) var pending: Set<IPAddress>
    /// Whether a probe was answered: something of the answer is proven now.
    private(set) var answeredAny = false

    /// What to do with an answer, given what is proven now.
    enum Decision: Equatable {
        /// Nothing new: take this mapping (the answer's, with an unsigned answer's sequence
        /// replaced by the proven one).
        case take(PeerMapping)
        /// Probe these MoAs (with the answer's key, when it is a new one) before any of it
        /// is taken for good.
        case probe(AnswerTrial)
        /// An unsigned answer naming another key than the one bound to the HoA: nothing of
        /// it is taken, and nothing is probed.
        case refuse
        /// An unsigned answer for a HoA with no key bound (a first contact of a node
        /// without an IMS key): nothing of it is taken, and nothing is probed.
        case refuseUnkeyed
    }

    /// Decides on an answer mapping `answer` (its MoAs), naming `answerKey`, with `heldKey`
    /// bound to the HoA now and `previous` the proven mapping. A new key puts every MoA on
    /// trial: what the old key proved says nothing about the new one.
    ///
    /// `authenticated` is false for the answers of a node without an IMS key, which asks
    /// unsigned: anyone on the path may have written them. Such an answer
    /// - never replaces a held key (``Decision/refuse``): a probe of a new key would prove
    ///   only that someone holds it, and an attacker answers at an address of its own with
    ///   a key of its own. The peer's next alert, which does not verify with the old key,
    ///   has its key looked up and taken only if the alert verifies with it (a rotation);
    /// - never sets a sequence number: a probe proves where the key holder is, not what
    ///   number it registered, and a forged `seq=18446744073709551615` would make every
    ///   later genuine answer and alert look older. Its mapping carries the proven mapping's
    ///   sequence (0 at a first contact), so any newer signed alert still wins;
    /// - gets its new MoAs probed with the held key, as a signed answer's, and limited to
    ///   3x what came from them until then;
    /// - never starts a first contact (``Decision/refuseUnkeyed``): with no key held, the
    ///   answer's key is the only one there is, and a probe or a challenge with it proves
    ///   nothing, since an on-path attacker answers with a key of its own from an address
    ///   of its own (trust on first use is what it needs). Such a node reaches the peers it
    ///   holds a key for: pinned in a `[peer]`, or proven before.
    static func decide(_ answer: PeerMapping, answerKey: VerifyingKey?, heldKey: VerifyingKey?,
                       previous: PeerMapping?, authenticated: Bool = true) -> Decision {
        var answer = answer
        if !authenticated {
            guard let heldKey else { return .refuseUnkeyed }
            if let answerKey, answerKey != heldKey { return .refuse }
            answer.sequence = previous?.sequence ?? 0
        }
        let newKey = answerKey.flatMap { $0 == heldKey || heldKey == nil ? nil : $0 }
        let known = newKey == nil ? Set(previous?.moas.map(\.address) ?? []) : []
        let moas = answer.moas.map(\.address)
        let unproven = Set(moas).subtracting(known)
        guard !unproven.isEmpty else { return .take(answer) }
        return .probe(AnswerTrial(answer: answer, key: newKey, previous: previous,
                                  proven: Set(moas).intersection(known), pending: unproven))
    }

    /// The MoAs to probe.
    var toProbe: [IPAddress] { answer.moas.map(\.address).filter { pending.contains($0) } }

    /// The answer's mapping with only its proven MoAs, or nil when none is.
    var provenMapping: PeerMapping? {
        let moas = answer.moas.filter { proven.contains($0.address) }
        guard !moas.isEmpty else { return nil }
        return PeerMapping(hoa: answer.hoa, moas: moas, sequence: answer.sequence)
    }

    /// The probe of `moa` was answered. Returns whether it is the trial's first answer
    /// (the time to take the answer's key).
    mutating func answered(_ moa: IPAddress) -> Bool {
        guard pending.remove(moa) != nil else { return false }
        let first = !answeredAny
        answeredAny = true
        proven.insert(moa)
        return first
    }

    /// The probe of `moa` went unanswered.
    mutating func failed(_ moa: IPAddress) { pending.remove(moa) }

    /// Whether every probe is over.
    var isDecided: Bool { pending.isEmpty }
}

/// IMS answers whose probes all went unanswered, remembered for a while so that reading
/// the same answer again (every record TTL, or at each first packet) does not probe, or
/// alert, the same addresses again: a key holder who registers a bystander's address gets
/// a trial per peer after ``firstHoldOff``, then after twice as long each time, and at
/// most one per ``longestHoldOff`` (10, 20, 40 ... 300 s by default), not one per lookup.
/// The hold starts short because an answer also goes unanswered when the path to a
/// genuine peer was cut for a while: once the cut heals, the peer is tried again within
/// a hold-off, not five minutes later. A changed answer (another sequence, key or MoA) is
/// tried at once. Pure: the caller passes the time (ms).
struct RefusedAnswers {
    /// How long an answer refused once is not tried again (ms).
    let firstHoldOff: UInt64
    /// The longest hold-off, reached by doubling ``firstHoldOff`` at each refusal of the
    /// same answer (ms).
    let longestHoldOff: UInt64
    /// Most HoAs remembered; past it the memory starts afresh.
    let capacity: Int
    /// A refused answer, its key, how many times in a row it was refused, and until when
    /// it is not tried again.
    struct Entry {
        var answer: PeerMapping
        var key: VerifyingKey?
        var refusals: Int
        var until: UInt64
    }
    private(set) var entries: [IPAddress: Entry] = [:]

    init(firstHoldOff: UInt64 = 10_000, longestHoldOff: UInt64 = 300_000, capacity: Int = 4_096) {
        self.firstHoldOff = max(1, firstHoldOff)
        self.longestHoldOff = max(self.firstHoldOff, longestHoldOff)
        self.capacity = max(1, capacity)
    }

    /// The hold-off after the `refusals`-th refusal in a row of the same answer.
    func holdOff(afterRefusals refusals: Int) -> UInt64 {
        let doublings = UInt64(min(max(refusals - 1, 0), 32))
        let (held, overflow) = firstHoldOff.multipliedReportingOverflow(by: 1 << doublings)
        return overflow ? longestHoldOff : min(held, longestHoldOff)
    }

    /// `trial` ended with no answer at `now`.
    mutating func refused(_ trial: AnswerTrial, now: UInt64) {
        let hoa = trial.answer.hoa
        if entries[hoa] == nil, entries.count >= capacity { entries.removeAll() }
        var refusals = 1
        if let entry = entries[hoa], entry.answer == trial.answer, entry.key == trial.key { refusals = entry.refusals + 1 }
        entries[hoa] = Entry(answer: trial.answer, key: trial.key, refusals: refusals,
                             until: now + holdOff(afterRefusals: refusals))
    }

    /// Whether `answer` with `key` (as a trial would test it) is still held off at `now`.
    func isRefused(_ answer: PeerMapping, key: VerifyingKey?, now: UInt64) -> Bool {
        guard let entry = entries[answer.hoa], now < entry.until else { return false }
        return entry.answer == answer && entry.key == key
    }

    /// Forgets `hoa` (a proven mapping of it came since).
    mutating func forget(_ hoa: IPAddress) { entries[hoa] = nil }
}
