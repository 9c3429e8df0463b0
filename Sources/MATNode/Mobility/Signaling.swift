#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATLog
import MATPacket
import MATSignaling
import Synchronization

/// The mobility signaling of one node (docs/signaling.md), run by the mapping service's
/// thread: binding updates to peers with retransmission until acknowledged, and, for
/// peers' updates, the checks (rate, receiver, signature, replay), the reachability
/// challenge to the announced MoA and the acknowledgement.
final class Signaling {
    private let port: UInt16
    private let sockets: [DatagramSocket]
    private var key: SigningKey
    private let sequences: SequenceSource
    private let lifetime: UInt32
    private var replay = ReplayGuard()
    private var admission = SignalAdmission()
    private var cookieJar = CookieJar()
    /// IMS lookups of unknown senders' keys, all senders together: forged senders must not
    /// turn the node into a query generator.
    private var keyLookupBudget = TokenBucket(rate: 10, burst: 20)
    private var outgoing: [IPAddress: Outgoing] = [:]
    private var challenges = UpdateChallenges()
    private var probes = ReachabilityProbes()
    /// The latest message of each sender whose key is being looked up, handled again when
    /// the key arrives (bounded: a flood of unknown senders keeps only the newest few).
    private var waitingForKey: [IPAddress: (signal: UnverifiedSignal, source: IPAddress, since: UInt64)] = [:]
    private static let waitingForKeyLimit = 64
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 8)
    private var counting = SignalingCounters()
    private var refusals = RefusalReporter()
    private let published = Mutex(SignalingCounters())
    weak var host: SignalingHost?

    /// An update of this node's mapping waiting for a peer's acknowledgement.
    private struct Outgoing {
        var destination: IPAddress
        var bytes: [UInt8]
        var sequence: UInt64
        var schedule: RetransmitSchedule
        var firstSentAt: UInt64
    }

    /// How each peer's alerts went, for `matctl peers`; published when it changes.
    private var peerStates: [IPAddress: PeerSignalState] = [:]
    private var peerStatesChanged = false
    private let publishedPeerStates = Mutex<[IPAddress: PeerSignalState]>([:])

    /// The sequence a challenge names when it is a probe (``ReachabilityProbes``): no update
    /// has it, as sequence numbers start from the wall clock.
    static let probeSequence: UInt64 = 0

    /// Acknowledgements that do not come after this many sends make the node look the
    /// peer up again: it may have moved at the same time.
    private static let sendsBeforeLookup = 2

    /// Opens the signaling port for each family the node has a HoA of.
    init(port: UInt16, families: Set<AddressFamily>, key: SigningKey, sequences: SequenceSource,
         lifetime: UInt32) throws(SystemError) {
        self.port = port
        self.key = key
        self.sequences = sequences
        self.lifetime = lifetime
        var sockets: [DatagramSocket] = []
        for family in [AddressFamily.ipv4, .ipv6] where families.contains(family) {
            sockets.append(try DatagramSocket(family: family, port: port))
        }
        self.sockets = sockets
    }

    deinit { buffer.deallocate() }

    /// Descriptors to poll for incoming messages.
    var fileDescriptors: [Int32] { sockets.map(\.fileDescriptor) }

    /// The counters as of the last change.
    var counters: SignalingCounters { published.withLock { $0 } }

    /// Peers whose acknowledgement of this node's mapping is outstanding.
    var awaiting: Set<IPAddress> { Set(outgoing.keys) }

    /// The highest update sequence accepted from each peer, kept across restarts.
    var replayEntries: [IPAddress: UInt64] { replay.entries }

    /// Bumped whenever `replayEntries` changes, so the service knows to save it.
    private(set) var replayChanges = 0

    /// Takes back the replay state saved before a restart.
    func restoreReplay(_ saved: [IPAddress: UInt64]) { replay.restore(saved) }

    /// `hoa`'s key changed: its sequence numbers are counted afresh.
    func forgetReplay(_ hoa: IPAddress) {
        replay.forget(hoa)
        replayChanges += 1
    }

    /// Signs everything from now on with `key` (`matctl rotate-key`). Updates on their
    /// way keep the old signature: peers that already have the new key refuse them and
    /// take the next alert.
    func replaceKey(_ key: SigningKey) { self.key = key }

    /// The node's public key, for status and the IMS.
    var publicKey: VerifyingKey { key.publicKey }

    /// The next sequence number, for the IMS registration too (one counter, never repeated).
    func nextSequence() throws(SystemError) -> UInt64 { try sequences.take() }

    /// Tells `peer` (at `moa`) this node's current MoAs of its family, and keeps telling it
    /// until it acknowledges or the retransmissions run out. Returns false when the node
    /// has no HoA or MoA of that family.
    @discardableResult
    func announce(to peer: IPAddress, at moa: IPAddress, now: UInt64) -> Bool {
        guard let host, let (home, mobile) = Self.own(host.nodeAddresses, family: peer.family),
              let sequence = takeSequence(for: "an alert to \(peer)") else { return false }
        let message = SignalMessage(sequence: sequence, sender: home, receiver: peer,
                                    body: .bindingUpdate(moas: [mobile], lifetime: lifetime))
        var entry = Outgoing(destination: moa, bytes: SignalCodec.seal(message, with: key, paddedTo: SignalCodec.paddedUpdateLength),
                             sequence: sequence,
                             schedule: RetransmitSchedule(now: now), firstSentAt: now)
        send(entry.bytes, to: moa, now: now)
        entry.schedule.sent(now: now)
        outgoing[peer] = entry
        count { $0.updatesSent += 1 }
        EventLog.shared.post("alert", ["peer": "\(peer)", "at": "\(moa)", "sequence": "\(sequence)"])
        note(peer) { $0.alert = .awaitingAck }
        return true
    }

    /// Reads every waiting datagram and acts on it.
    func receive(now: UInt64) {
        for socket in sockets {
            while let (length, source, _) = try? socket.receive(into: buffer) {
                guard length <= buffer.count else {
                    count { $0.refusedMalformed += 1 }
                    continue
                }
                handle(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), from: source, now: now)
            }
        }
        publish()
    }

    /// Retransmits what is due, looks up peers that stay silent, gives up on the hopeless.
    /// Returns when it next needs to run (milliseconds), or nil.
    func tick(now: UInt64) -> UInt64? {
        for (peer, var entry) in outgoing {
            guard let due = entry.schedule.nextSendAt else {
                // The last send has had its full wait.
                guard entry.schedule.hasExpired(at: now) else { continue }
                outgoing[peer] = nil
                count { $0.updatesUnanswered += 1 }
                EventLog.shared.post("unanswered", ["peer": "\(peer)", "at": "\(entry.destination)", "sequence": "\(entry.sequence)"])
                note(peer) { $0.alert = .unanswered }
                log(.warning, "matd: \(peer) did not acknowledge update seq \(entry.sequence) at \(entry.destination)")
                host?.settled(hoa: peer, acknowledged: false)
                continue
            }
            guard due <= now else { continue }
            if entry.schedule.attempts >= Self.sendsBeforeLookup, host?.lookUpAgain(hoa: peer) == true {
                count { $0.peersLookedUpAgain += 1 }
            }
            send(entry.bytes, to: entry.destination, now: now)
            entry.schedule.sent(now: now)
            outgoing[peer] = entry
            count { $0.updatesRetransmitted += 1 }
        }
        for expiry in challenges.expire(at: now) {
            count { $0.challengesUnanswered += 1 }
            host?.unreachable(hoa: expiry.peer, at: expiry.moa)
            if expiry.trialFailed { host?.challengeFailed(hoa: expiry.peer, sequence: expiry.sequence) }
        }
        sendProbes(now: now)
        if !waitingForKey.isEmpty {
            waitingForKey = waitingForKey.filter { $0.value.since + UpdateChallenges.lifetime > now }
        }
        refusals.report(counting, now: now)
        publish()
        return (outgoing.values.map { $0.schedule.nextSendAt ?? $0.schedule.deadline }
            + [probes.nextEvent, challenges.nextExpiry].compactMap { $0 }).min()
    }

    /// Probes `peer` at each of `moas` (``ReachabilityProbes``): `reached` follows each
    /// answer from its MoA, `unreachable` each probe that stays unanswered. `key` is the
    /// key the answers must verify with when it is not the one bound to `peer`.
    func probe(_ peer: IPAddress, at moas: [IPAddress], key: VerifyingKey?, now: UInt64) {
        guard !probes.start(peer, at: moas, key: key, now: now).isEmpty else { return }
        sendProbes(now: now)
        publish()
    }

    /// Whether a probe of `peer` is out.
    func isProbing(_ peer: IPAddress) -> Bool { probes.isProbing(peer) }

    /// Drops the probes of `peer` (its mapping went).
    func cancelProbes(of peer: IPAddress) { probes.cancel(peer) }

    private func sendProbes(now: UInt64) {
        for (nonce, probe) in probes.due(at: now) {
            guard let host, let (home, _) = Self.own(host.nodeAddresses, family: probe.peer.family) else { continue }
            reply(to: probe.peer, at: probe.moa, home: home, body: .challenge(nonce: nonce, sequence: Self.probeSequence), now: now)
            count { $0.probesSent += 1 }
        }
        for probe in probes.expired(at: now) {
            count { $0.probesUnanswered += 1 }
            host?.unreachable(hoa: probe.peer, at: probe.moa)
        }
    }

    private func handle(_ datagram: UnsafeRawBufferPointer, from source: IPAddress, now: UInt64) {
        if EncapWire.parse(datagram) == .keepalive {
            // A peer behind NAT holding open the binding this node's alerts reach it through.
            count { $0.keepalivesReceived += 1 }
            return
        }
        if SignalCodec.isCookieReply(datagram) {
            takeCookieReply(datagram, from: source, now: now)
            return
        }
        guard let trailer = SignalCodec.peekTrailer(datagram) else {
            count { $0.refusedMalformed += 1 }
            return
        }
        switch admission.admit(from: source, cookie: trailer.cookie, now: now) {
        case .accept:
            break
        case .refuse:
            count { $0.refusedRateLimited += 1 }
            return
        case .askForCookie(let cookie):
            // Stateless, and smaller than what it answers: no work for a stranger under load.
            transmit(SignalCodec.seal(CookieReply(echo: trailer.echo, cookie: cookie)), to: source)
            count { $0.cookiesSent += 1 }
            return
        }
        guard let signal = try? SignalCodec.open(datagram) else {
            count { $0.refusedMalformed += 1 }
            return
        }
        process(signal, from: source, size: datagram.count, now: now)
    }

    /// A cookie reply to the last message sent to `source`: send that message again, with
    /// the cookie, now; and attach the cookie to what follows.
    private func takeCookieReply(_ datagram: UnsafeRawBufferPointer, from source: IPAddress, now: UInt64) {
        guard admission.admitCookieReply(from: source, now: now) else {
            count { $0.refusedRateLimited += 1 }
            return
        }
        guard let reply = try? SignalCodec.openCookieReply(datagram) else {
            count { $0.refusedMalformed += 1 }
            return
        }
        guard let again = cookieJar.take(reply, from: source, now: now) else {
            count { $0.refusedUnexpected += 1 }
            return
        }
        count { $0.cookiesReceived += 1 }
        transmit(again, to: source)
    }

    /// A framed message within its budgets: receiver, staleness, key, signature, then its kind.
    private func process(_ signal: UnverifiedSignal, from source: IPAddress, size: Int, now: UInt64) {
        guard let host else { return }
        let addresses = host.nodeAddresses
        guard let home = addresses.homeAddresses.first(where: { $0.family == signal.receiver.family }),
              signal.receiver == home else {
            count { $0.refusedWrongReceiver += 1 }
            return
        }
        // A binding update older than the last accepted is dropped before any cryptography.
        if signal.type == .bindingUpdate, let last = replay.lastSequence(from: signal.sender), signal.sequence < last {
            count { $0.refusedReplayed += 1 }
            return
        }
        let key: VerifyingKey
        switch host.verifyingKey(for: signal.sender, mayLookUp: { keyLookupBudget.take(now: now) }) {
        case .known(let known):
            key = known
        case .lookingUp:
            if waitingForKey[signal.sender] == nil && waitingForKey.count >= Self.waitingForKeyLimit {
                count { $0.refusedUnknownKey += 1 }
                return
            }
            waitingForKey[signal.sender] = (signal, source, now)
            return
        case .unknown:
            count { $0.refusedUnknownKey += 1 }
            return
        }
        let message: SignalMessage
        var candidate: VerifyingKey?
        do {
            message = try signal.verify(with: key)
        } catch .badSignature where signal.type == .challengeResponse && !probes.candidateKeys(of: signal.sender).isEmpty {
            // The answer to a probe of a key an IMS answer named: verified with that key,
            // and good for that probe only.
            guard let verified = probes.candidateKeys(of: signal.sender).lazy
                .compactMap({ key in (try? signal.verify(with: key)).map { (message: $0, key: key) } }).first else {
                count { $0.refusedBadSignature += 1 }
                return
            }
            message = verified.message
            candidate = verified.key
        } catch .badSignature {
            // The sender may have rotated its key: the message waits for the IMS's answer
            // (at most one lookup per sender every 5 s, within the global budget), and is
            // refused if it still does not verify.
            if waitingForKey[signal.sender] != nil || waitingForKey.count < Self.waitingForKeyLimit,
               host.keyMayHaveChanged(for: signal.sender, mayLookUp: { keyLookupBudget.take(now: now) }) {
                waitingForKey[signal.sender] = (signal, source, now)
                return
            }
            count { $0.refusedBadSignature += 1 }
            return
        } catch {
            count { $0.refusedMalformed += 1 }
            return
        }
        switch message.body {
        case .bindingUpdate(let moas, let lifetime):
            handleUpdate(message, moas: moas, lifetime: lifetime, home: home, size: size, now: now)
        case .challenge(let nonce, Self.probeSequence):
            // A probe: answered from here, whatever this node has sent.
            reply(to: message.sender, at: source, home: home,
                  body: .challengeResponse(nonce: nonce, sequence: Self.probeSequence), now: now)
            count { $0.probesReceived += 1 }
        case .challenge(let nonce, let sequence):
            guard let entry = outgoing[message.sender], entry.sequence == sequence else {
                count { $0.refusedUnexpected += 1 }
                return
            }
            reply(to: message.sender, at: source, home: home, body: .challengeResponse(nonce: nonce, sequence: sequence),
                  now: now)
            count { $0.challengesAnswered += 1 }
            host.reached(hoa: message.sender, at: source, key: nil)
            host.peerIsAlive(hoa: message.sender)
        case .challengeResponse(let nonce, Self.probeSequence):
            guard probes.candidateKey(for: nonce, from: message.sender) == candidate,
                  let probe = probes.answered(nonce, by: message.sender, from: source) else {
                count { $0.refusedUnexpected += 1 }
                return
            }
            count { $0.probesAnswered += 1 }
            host.reached(hoa: probe.peer, at: probe.moa, key: probe.key)
        case .challengeResponse(let nonce, let sequence):
            guard let proof = challenges.response(nonce, from: message.sender, sequence: sequence, source: source) else {
                count { $0.refusedUnexpected += 1 }
                return
            }
            host.adopt(hoa: message.sender, moas: proof.moas, lifetime: proof.lifetime, sequence: sequence)
            host.reached(hoa: message.sender, at: source, key: nil)
            count { $0.bindingsAdopted += 1 }
            EventLog.shared.post("adopted", ["peer": "\(message.sender)", "mobile": proof.moas.map(\.description).joined(separator: " "),
                                             "sequence": "\(sequence)"])
            if proof.first { acknowledge(message.sender, sequence: sequence, at: source, home: home, now: now) }
        case .bindingAck(let sequence, _):
            guard let entry = outgoing[message.sender], entry.sequence == sequence else {
                count { $0.refusedUnexpected += 1 }
                return
            }
            host.reached(hoa: message.sender, at: source, key: nil)
            outgoing[message.sender] = nil
            let took = now - min(now, entry.firstSentAt)
            count { counters in
                counters.acksReceived += 1
                counters.alertAcknowledged.record(milliseconds: took)
            }
            EventLog.shared.post("ack", ["peer": "\(message.sender)", "milliseconds": "\(took)"])
            note(message.sender) { state in
                state.alert = .acknowledged
                state.lastAckAt = now
                // Only an update sent once gives a round trip that means something (Karn).
                state.roundTripMilliseconds = entry.schedule.attempts == 1 ? took : nil
            }
            host.settled(hoa: message.sender, acknowledged: true)
        }
    }

    /// The service dropped a peer that stopped answering.
    func countPeerDropped() {
        count { $0.peersDropped += 1 }
        publish()
    }

    /// The service took a MoA from a HoA whose claim to it was stale (``MappingService/settleClaims(to:provenBy:)``).
    func countClaimSettled() {
        count { $0.claimsSettled += 1 }
        publish()
    }

    /// The service dropped a learned peer that answered none of its idle probes.
    func countIdlePeerDropped() {
        count { $0.idlePeersDropped += 1 }
        publish()
    }

    /// The service dropped a mapping whose registration lifetime passed.
    func countMappingLapsed() {
        count { $0.mappingsLapsed += 1 }
        publish()
    }

    /// The IMS answered with `hoa`'s key: the message that waited for it is handled now.
    func keyArrived(for hoa: IPAddress, now: UInt64) {
        guard let waiting = waitingForKey.removeValue(forKey: hoa) else { return }
        process(waiting.signal, from: waiting.source, size: waiting.signal.datagramLength, now: now)
        publish()
    }

    /// Whether the message of `hoa` waiting for its key verifies with `key`.
    func waitingMessageVerifies(from hoa: IPAddress, with key: VerifyingKey) -> Bool {
        guard let waiting = waitingForKey[hoa] else { return false }
        return (try? waiting.signal.verify(with: key)) != nil
    }

    /// The IMS says unanswering `peer` is at `moas` now: its retransmissions go there.
    func redirect(_ peer: IPAddress, to moas: [IPAddress]) {
        guard let moa = moas.first, var entry = outgoing[peer], moa != entry.destination else { return }
        log("matd: \(peer) is at \(moa) now (per the IMS); updating it there")
        entry.destination = moa
        outgoing[peer] = entry
    }

    /// A verified update: already known (a retransmission, or first contact from a peer
    /// this node looked up), acknowledged at once; otherwise the new MoA is challenged.
    private func handleUpdate(_ message: SignalMessage, moas: [IPAddress], lifetime: UInt32, home: IPAddress,
                              size: Int, now: UInt64) {
        let peer = message.sender
        let isNewest = replay.accept(sequence: message.sequence, from: peer)
        if isNewest { replayChanges += 1 }
        guard isNewest || replay.lastSequence(from: peer) == message.sequence else {
            count { $0.refusedReplayed += 1 }
            return
        }
        if isNewest {
            count { $0.updatesReceived += 1 }
            // Newest, so signed now: the peer is alive (where, only a challenge tells).
            host?.reached(hoa: peer, at: nil, key: nil)
        }
        guard let host, let target = moas.first else { return }
        let decision = challenges.update(from: peer, sequence: message.sequence, moas: moas, lifetime: lifetime,
                                         inUse: host.currentMoAs(of: peer), now: now)
        switch decision {
        case .again(let open):
            // A retransmission while its challenges are out: the same challenges again.
            for (nonce, moa) in open { challenge(peer, at: moa, nonce: nonce, sequence: message.sequence, home: home, now: now) }
        case .failedBefore:
            count { $0.refusedUnexpected += 1 }
        case .known(let adopt):
            if let adopt { host.adopt(hoa: peer, moas: adopt, lifetime: lifetime, sequence: message.sequence) }
            acknowledge(peer, sequence: message.sequence, at: target, home: home, now: now)
        case .challenge(let sent, let unproven, let void):
            for moa in void { host.unreachable(hoa: peer, at: moa) }
            let listed = challenges.trials[peer]?.moas ?? moas
            host.tryOut(hoa: peer, moas: listed, unproven: unproven, sequence: message.sequence, updateBytes: UInt64(size))
            for (nonce, moa) in sent { challenge(peer, at: moa, nonce: nonce, sequence: message.sequence, home: home, now: now) }
        }
    }

    private func challenge(_ peer: IPAddress, at moa: IPAddress, nonce: Nonce, sequence: UInt64, home: IPAddress, now: UInt64) {
        reply(to: peer, at: moa, home: home, body: .challenge(nonce: nonce, sequence: sequence), now: now)
        count { $0.challengesSent += 1 }
    }

    private func acknowledge(_ peer: IPAddress, sequence: UInt64, at moa: IPAddress, home: IPAddress, now: UInt64) {
        reply(to: peer, at: moa, home: home, body: .bindingAck(sequence: sequence, status: .accepted), now: now)
        count { $0.acksSent += 1 }
    }

    private func reply(to peer: IPAddress, at moa: IPAddress, home: IPAddress, body: SignalBody, now: UInt64) {
        guard let sequence = takeSequence(for: "a reply to \(peer)") else { return }
        let message = SignalMessage(sequence: sequence, sender: home, receiver: peer, body: body)
        send(SignalCodec.seal(message, with: key), to: moa, now: now)
    }

    /// The next sequence number, or nil (logged) when the counter cannot be persisted: a
    /// number that might repeat after a crash is never used.
    private func takeSequence(for what: String) -> UInt64? {
        do {
            return try sequences.take()
        } catch {
            log(.error, "matd: no sequence number for \(what): \(error)")
            return nil
        }
    }

    /// Sends `moa` a keepalive from the signaling port to its signaling port: behind a NAT
    /// that forwards only what answers the inside, it keeps open the binding a peer's alert
    /// comes back through (docs/datapath.md, "Behind NAT").
    func sendKeepalive(to moa: IPAddress) {
        transmit(EncapWire.control(.keepalive), to: moa)
        count { $0.keepalivesSent += 1 }
    }

    /// Sends a sealed message, with `moa`'s cookie when it gave one.
    private func send(_ sealed: [UInt8], to moa: IPAddress, now: UInt64) {
        transmit(cookieJar.prepare(sealed, to: moa, now: now), to: moa)
    }

    private func transmit(_ bytes: [UInt8], to moa: IPAddress) {
        guard let socket = sockets.first(where: { $0.family == moa.family }) else { return }
        do {
            try socket.send(bytes, to: moa, port: port)
        } catch {
            log(.warning, "matd: signaling to \(moa): \(error)")
        }
    }

    private func count(_ change: (inout SignalingCounters) -> Void) { change(&counting) }

    private func note(_ peer: IPAddress, _ change: (inout PeerSignalState) -> Void) {
        change(&peerStates[peer, default: PeerSignalState()])
        peerStatesChanged = true
    }

    /// How each peer's alerts went, as of the last change.
    var peerSignalStates: [IPAddress: PeerSignalState] { publishedPeerStates.withLock { $0 } }

    private func publish() {
        let snapshot = counting
        published.withLock { $0 = snapshot }
        if peerStatesChanged {
            let states = peerStates
            publishedPeerStates.withLock { $0 = states }
            peerStatesChanged = false
        }
    }

    private static func own(_ addresses: NodeAddresses, family: AddressFamily) -> (home: IPAddress, mobile: IPAddress)? {
        switch family {
        case .ipv4:
            guard let home = addresses.home4, let mobile = addresses.mobile4 else { return nil }
            return (.v4(home), .v4(mobile))
        case .ipv6:
            guard let home = addresses.home6, let mobile = addresses.mobile6 else { return nil }
            return (.v6(home), .v6(mobile))
        }
    }
}
