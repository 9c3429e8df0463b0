#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATLog
import MATPacket
import MATSignaling
import Synchronization

/// The mobility signaling of one node (docs/signaling.md), run by the mapping service's
/// thread: a thin driver of ``SignalingMachine``, which decides everything. This class
/// owns what the machine must not: the sockets, the receive buffer, the sequence store
/// and the snapshots other threads read. Datagrams and the service's calls go into the
/// machine with the time; the actions it returns come out as datagrams and calls on the
/// ``SignalingHost``.
final class Signaling {
    private let port: UInt16
    private let sockets: [DatagramSocket]
    private let sequences: SequenceSource
    private var machine: SignalingMachine
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 8)
    private var refusals = RefusalReporter()
    private let published = Mutex(SignalingCounters())
    private var publishedPeerStatesVersion = 0
    private let publishedPeerStates = Mutex<[IPAddress: PeerSignalState]>([:])
    weak var host: SignalingHost?
    /// Which way each peer's signaling goes, direct or through the relay
    /// (docs/signaling.md, "Signaling through the relay").
    private var routes = SignalRoutes()
    /// How a message is sent through the relay (nil: this node has no relay).
    var relaySend: (([UInt8]) throws -> Void)?
    /// The latest time an event came with, for the calls that come without one.
    private var lastNow: UInt64 = 0

    /// The environment variable that puts the signaling under load from the start (tests
    /// only): every message without a valid cookie gets a cookie reply
    /// (docs/signaling.md, "Under load").
    static let underLoadVariable = "MATD_TEST_SIGNALING_UNDER_LOAD"

    /// Opens the signaling port for each family the node has a HoA of.
    init(port: UInt16, families: Set<AddressFamily>, key: SigningKey, sequences: SequenceSource,
         lifetime: UInt32) throws(SystemError) {
        self.port = port
        self.sequences = sequences
        if getenv(Self.underLoadVariable).map({ String(cString: $0) }) == "1" {
            log(.warning, "matd: \(Self.underLoadVariable) is set (for tests only): every signaling message without a "
                + "cookie gets a cookie reply")
            machine = SignalingMachine(key: key, lifetime: lifetime,
                                       admission: SignalAdmission(shared: TokenBucket(rate: 0, burst: 0)))
        } else {
            machine = SignalingMachine(key: key, lifetime: lifetime)
        }
        var sockets: [DatagramSocket] = []
        for family in [AddressFamily.ipv4, .ipv6] where families.contains(family) {
            let socket = try DatagramSocket(family: family, port: port, role: "signaling-port")
            // Network control (DSCP CS6), as routing daemons send: routers that honour it
            // queue an alert ahead of bulk traffic (docs/signaling.md, "In matd").
            do { try socket.markAsNetworkControl() } catch { log(.warning, "matd: signaling-port: \(error)") }
            sockets.append(socket)
        }
        self.sockets = sockets
    }

    deinit { buffer.deallocate() }

    /// Descriptors to poll for incoming messages.
    var fileDescriptors: [Int32] { sockets.map(\.fileDescriptor) }

    /// The counters as of the last change.
    var counters: SignalingCounters { published.withLock { $0 } }

    /// How each peer's alerts went, as of the last change.
    var peerSignalStates: [IPAddress: PeerSignalState] { publishedPeerStates.withLock { $0 } }

    /// Peers whose acknowledgement of this node's mapping is outstanding.
    var awaiting: Set<IPAddress> { machine.awaiting }

    /// Whether `peer`'s acknowledgement is outstanding: O(1), where ``awaiting`` builds a set.
    func isAwaiting(_ peer: IPAddress) -> Bool { machine.outgoing[peer] != nil }

    /// Peers whose alert began or settled since the last call, so the service follows
    /// ``awaiting`` by its changes (the UDP encapsulation's tracked peers) instead of
    /// reading the whole set each turn.
    func takeAwaitingChanges() -> Set<IPAddress> {
        defer { awaitingChanges.removeAll() }
        return awaitingChanges
    }
    private var awaitingChanges: Set<IPAddress> = []

    /// The highest update sequence accepted from each peer, kept across restarts.
    var replayEntries: [IPAddress: UInt64] { machine.replayEntries }

    /// Bumped whenever `replayEntries` changes, so the service knows to save it.
    var replayChanges: Int { machine.replayChanges }

    /// Takes back the replay state saved before a restart.
    func restoreReplay(_ saved: [IPAddress: UInt64]) { machine.restoreReplay(saved) }

    /// `hoa`'s key changed: its sequence numbers are counted afresh.
    func forgetReplay(_ hoa: IPAddress) { machine.forgetReplay(hoa) }

    /// Signs everything from now on with `key` (`matctl rotate-key`). Updates on their
    /// way keep the old signature: peers that already have the new key refuse them and
    /// take the next alert.
    func replaceKey(_ key: SigningKey) { machine.key = key }

    /// The node's public key, for status and the IMS.
    var publicKey: VerifyingKey { machine.key.publicKey }

    /// The next sequence number, for the IMS registration too (one counter, never repeated).
    func nextSequence() throws(SystemError) -> UInt64 { try sequences.take() }

    /// Saves the block of sequence numbers the messages just sent started (``SequenceSource``).
    func saveSequences() throws(SystemError) { try sequences.save() }

    /// A registration of `hoas` with the relay (docs/signaling.md, "Relay"), signed with
    /// the key this node's alerts are signed with now, with the exchange keys of
    /// ``RelaySecrets/registration(now:)``.
    func sealRelayRegistration(hoas: [IPAddress], sequence: UInt64, nodeKey: [UInt8], relayKey: [UInt8]?) -> [UInt8] {
        RelayRegistration.seal(hoas: hoas, sequence: sequence, nodeKey: nodeKey, relayKey: relayKey, with: machine.key)
    }

    /// Tells `peer` (at `moa`) this node's current MoAs of its family, and keeps telling it
    /// until it acknowledges or the retransmissions run out. Returns false when the node
    /// has no HoA or MoA of that family.
    @discardableResult
    func announce(to peer: IPAddress, at moa: IPAddress, now: UInt64) -> Bool {
        guard let environment, let actions = machine.announce(to: peer, at: moa, now: now, environment: environment) else {
            return false
        }
        awaitingChanges.insert(peer)
        perform(actions, now: now)
        return true
    }

    /// Sends again, with fresh numbers from the next second of the corrected clock
    /// (``SequenceSource/clockMovedForward()``), the updates numbered below `floor` that
    /// wait for their acknowledgement (``SignalingMachine/renumberUpdates(below:now:environment:)``);
    /// returns how many.
    func renumberUpdates(below floor: UInt64, now: UInt64) -> Int {
        guard let environment else { return 0 }
        sequences.clockMovedForward()
        let actions = machine.renumberUpdates(below: floor, now: now, environment: environment)
        // Given-up alerts are sent again, so waiting again (rare: a clock correction).
        awaitingChanges.formUnion(machine.outgoing.keys)
        perform(actions, now: now)
        publish()
        return actions.filter { if case .event("alert", _) = $0 { true } else { false } }.count
    }

    /// Reads every waiting datagram and acts on it.
    func receive(now: UInt64) {
        for socket in sockets {
            while let (length, source, _) = try? socket.receive(into: buffer) {
                guard length <= buffer.count else {
                    machine.count { $0.refusedMalformed += 1 }
                    continue
                }
                // Without its service the signaling has nobody to act for: the datagram goes.
                guard let environment else { continue }
                perform(machine.receive(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), from: source, now: now,
                                        environment: environment), now: now)
            }
        }
        publish()
    }

    /// A message that came through the relay, which says it came from `origin`: checked
    /// and answered as one from that address. Its sender's signaling goes through the
    /// relay from now on, when its record allows (``SignalRoutes``), and a cookie reply to
    /// it goes back through the relay (``RelayedCookieReply``), as does a cookie reply
    /// that came this way: it is taken as one from `origin`.
    func receiveRelayed(_ bytes: [UInt8], from origin: IPAddress, now: UInt64) {
        guard bytes.count <= buffer.count, let environment else { return }
        var message = bytes
        let hoas: (sender: IPAddress, receiver: IPAddress)?
        if let relayed = RelayedCookieReply.open(bytes) {
            hoas = (relayed.sender, relayed.receiver)
            message = SignalCodec.seal(relayed.reply)
        } else {
            hoas = SignalCodec.peekHeader(bytes).map { ($0.sender, $0.receiver) }
        }
        lastNow = max(lastNow, now)
        if let sender = hoas?.sender, routes.heardThroughRelay(from: sender, now: now) {
            log("matd: signaling to \(sender) goes through the relay: its own came through it")
        }
        message.withUnsafeBytes {
            perform(machine.receive($0, from: origin, now: now, environment: environment), now: now, relayed: hoas)
        }
        publish()
    }

    /// Whether `peer` may be reached through the relay (its record or `[peer]` section
    /// names this node's relay); returns whether that changed. Its signaling still tries
    /// direct first (``SignalRoutes``).
    @discardableResult
    func reachThroughRelay(_ peer: IPAddress, _ through: Bool) -> Bool {
        guard relaySend != nil else { return false }
        let changed = routes.allow(peer, through)
        // Its message came through the relay before its record did (the lookup of its key).
        if changed && through && routes.routeIsRelay(peer, now: lastNow) {
            log("matd: signaling to \(peer) goes through the relay: its own came through it")
        }
        return changed
    }

    /// Retransmits what is due, looks up peers that stay silent, gives up on the hopeless.
    /// Returns when it next needs to run (milliseconds), or nil.
    func tick(now: UInt64) -> UInt64? {
        if let environment {
            perform(machine.tick(now: now, environment: environment), now: now)
            // After the tick's actions: a peer they dropped has no probes left to send.
            perform(machine.sendDueProbes(now: now, environment: environment), now: now)
        }
        refusals.report(machine.counters, now: now)
        logDropSummary(dropLog.takeSummary(now: now))
        logIdleDropSummary(idleDropLog.takeSummary(now: now))
        publish()
        return [machine.nextEventAt, dropLog.summaryDueAt, idleDropLog.summaryDueAt].compactMap { $0 }.min()
    }

    /// Probes `peer` at each of `moas` (``ReachabilityProbes``): `reached` follows each
    /// answer from its MoA, `unreachable` each probe that stays unanswered. `key` is the
    /// key the answers must verify with when it is not the one bound to `peer`.
    func probe(_ peer: IPAddress, at moas: [IPAddress], key: VerifyingKey?, now: UInt64) {
        guard let environment else { return }
        perform(machine.probe(peer, at: moas, key: key, now: now, environment: environment), now: now)
        publish()
    }

    /// Whether a probe of `peer` is out.
    func isProbing(_ peer: IPAddress) -> Bool { machine.isProbing(peer) }

    /// How many more probes may go out now: the idle peers taken in one turn at most.
    var probeSlotsFree: Int { machine.probeSlotsFree }

    /// Drops the probes of `peer` (its mapping went).
    func cancelProbes(of peer: IPAddress) { machine.cancelProbes(of: peer) }

    /// The service started an IMS lookup for a first packet, or deferred one over the bound
    /// (``FirstPacketLookups``).
    func countFirstPacketLookup(deferred: Bool) {
        countAndPublish { deferred ? ($0.firstPacketLookupsDeferred += 1) : ($0.firstPacketLookups += 1) }
    }

    /// The service dropped a peer that stopped answering: counted, and `message` logged
    /// within ``PerPeerLogLimit``'s bound (a move's 100,000 unanswered peers are dropped
    /// one by one), the rest told by one line once its window ends.
    func peerDropped(logging message: String) {
        countAndPublish { $0.peersDropped += 1 }
        let (write, summary) = dropLog.admit(now: lastNow)
        logDropSummary(summary)
        if write { log(message) }
    }
    private var dropLog = PerPeerLogLimit()

    private func logDropSummary(_ left: Int?) {
        guard let left else { return }
        log("matd: and \(left) more peer(s) dropped that answered none of their alerts (\(dropLog.perWindow) logged "
            + "per \(dropLog.window / 1_000) s; all counted in peers_dropped)")
    }

    /// The service took a MoA from a HoA whose claim to it was stale (``MappingService/settleClaims(to:provenBy:)``).
    func countClaimSettled() { countAndPublish { $0.claimsSettled += 1 } }

    /// The service limited `count` learned MoAs whose proof ran out (``ProofFreshness``).
    func countProofsLapsed(_ count: Int) { countAndPublish { $0.proofsLapsed += UInt64(count) } }

    /// The service dropped a learned peer that answered none of its idle probes: counted,
    /// and `message` logged within ``PerPeerLogLimit``'s bound (100,000 restored peers
    /// that are gone come due for their idle probe together and are dropped one by one),
    /// the rest told by one line once its window ends.
    func idlePeerDropped(logging message: String) {
        countAndPublish { $0.idlePeersDropped += 1 }
        let (write, summary) = idleDropLog.admit(now: lastNow)
        logIdleDropSummary(summary)
        if write { log(.notice, message) }
    }
    private var idleDropLog = PerPeerLogLimit()

    private func logIdleDropSummary(_ left: Int?) {
        guard let left else { return }
        log(.notice, "matd: and \(left) more idle peer(s) dropped that answered none of their probes "
            + "(\(idleDropLog.perWindow) logged per \(idleDropLog.window / 1_000) s; all counted in idle_peers_dropped)")
    }

    /// The service dropped a mapping whose registration lifetime passed.
    func countMappingLapsed() { countAndPublish { $0.mappingsLapsed += 1 } }

    /// A peer's hold ended before the IMS said which public address it sees.
    func countPublicAddressWaitExpired() { countAndPublish { $0.publicAddressWaitsExpired += 1 } }

    /// The IMS answered with `hoa`'s key: the message that waited for it is handled now.
    func keyArrived(for hoa: IPAddress, now: UInt64) {
        guard let environment else { return }
        perform(machine.keyArrived(for: hoa, now: now, environment: environment), now: now)
        publish()
    }

    /// Whether the message of `hoa` waiting for its key verifies with `key`.
    func waitingMessageVerifies(from hoa: IPAddress, with key: VerifyingKey) -> Bool {
        machine.waitingMessageVerifies(from: hoa, with: key)
    }

    /// The IMS says unanswering `peer` is at `moas` now: its retransmissions go there.
    func redirect(_ peer: IPAddress, to moas: [IPAddress]) { perform(machine.redirect(peer, to: moas)) }

    /// Sends `moa` a keepalive from the signaling port to its signaling port: behind a NAT
    /// that forwards only what answers the inside, it keeps open the binding a peer's alert
    /// comes back through (docs/datapath.md, "Behind NAT").
    func sendKeepalive(to moa: IPAddress) { perform(machine.keepalive(to: moa)) }

    /// What the machine asks of the service, while the service is there.
    private var environment: HostEnvironment? {
        host.map { HostEnvironment(host: $0, sequences: sequences) }
    }

    /// Carries out the machine's decisions in their order, at `now` (the last time given
    /// when nil: the calls without one send no message). `relayed`: the sender and
    /// receiver HoAs of the message that came through the relay and was decided on. The
    /// service may call back into this driver from here (a dropped peer's probes are
    /// cancelled): the machine is not in the middle of an event then.
    private func perform(_ actions: [SignalingAction], now: UInt64? = nil,
                         relayed: (sender: IPAddress, receiver: IPAddress)? = nil) {
        let now = max(now ?? lastNow, lastNow)
        lastNow = now
        for action in actions {
            switch action {
            case .transmit(let bytes, let moa):
                transmit(bytes, to: moa, now: now, answering: relayed)
            case .tryOut(let hoa, let moas, let unproven, let sequence, let updateBytes):
                host?.tryOut(hoa: hoa, moas: moas, unproven: unproven, sequence: sequence, updateBytes: updateBytes)
            case .adopt(let hoa, let moas, let lifetime, let sequence):
                host?.adopt(hoa: hoa, moas: moas, lifetime: lifetime, sequence: sequence)
            case .challengeFailed(let hoa, let sequence):
                host?.challengeFailed(hoa: hoa, sequence: sequence)
            case .reached(let hoa, let moa, let key):
                routes.answered(by: hoa)
                host?.reached(hoa: hoa, at: moa, key: key)
            case .unreachable(let hoa, let moa):
                host?.unreachable(hoa: hoa, at: moa)
            case .peerIsAlive(let hoa):
                host?.peerIsAlive(hoa: hoa)
            case .settled(let hoa, let acknowledged):
                awaitingChanges.insert(hoa)
                host?.settled(hoa: hoa, acknowledged: acknowledged)
            case .event(let kind, let details):
                EventLog.shared.post(kind, details)
            case .log(let level, let message):
                log(level, message)
            }
        }
    }

    /// Sends `bytes` to `moa`'s signaling port, or through the relay: a message as
    /// ``SignalRoutes`` says for its receiver, a cookie reply to a message that came
    /// through the relay (`answering`) back that way (direct it would be lost behind the
    /// peer's NAT, and the peer would wait for the load to pass).
    private func transmit(_ bytes: [UInt8], to moa: IPAddress, now: UInt64,
                          answering relayed: (sender: IPAddress, receiver: IPAddress)?) {
        if relaySend != nil {
            if let relayed, let reply = RelayedCookieReply.wrap(bytes, from: relayed.receiver, to: relayed.sender) {
                sendThroughRelay(reply, to: relayed.sender)
                return
            }
            if let header = SignalCodec.peekHeader(bytes) {
                let wantsAnswer = header.type == .bindingUpdate || header.type == .challenge
                let (route, change) = routes.route(to: header.receiver, wantsAnswer: wantsAnswer, now: now)
                switch change {
                case .unanswered?:
                    log("matd: signaling to \(header.receiver) went unanswered direct for "
                        + "\(SignalRoutes.answerWait) ms: it goes through the relay")
                case .holdEnded?:
                    log("matd: signaling to \(header.receiver) tries direct again after "
                        + "\(SignalRoutes.relayHold / 1_000) s through the relay")
                case nil:
                    break
                }
                if route == .relay {
                    sendThroughRelay(bytes, to: header.receiver)
                    return
                }
            }
        }
        guard let socket = sockets.first(where: { $0.family == moa.family }) else { return }
        do {
            try socket.send(bytes, to: moa, port: port)
        } catch {
            log(.warning, "matd: signaling to \(moa): \(error)")
        }
    }

    private func sendThroughRelay(_ bytes: [UInt8], to receiver: IPAddress) {
        do {
            try relaySend?(bytes)
        } catch {
            log(.warning, "matd: signaling to \(receiver) through the relay: \(error)")
        }
    }

    private func countAndPublish(_ change: (inout SignalingCounters) -> Void) {
        machine.count(change)
        publish()
    }

    private func publish() {
        let snapshot = machine.counters
        published.withLock { $0 = snapshot }
        if machine.peerStatesVersion != publishedPeerStatesVersion {
            let states = machine.peerStates
            publishedPeerStates.withLock { $0 = states }
            publishedPeerStatesVersion = machine.peerStatesVersion
        }
    }
}

/// The service and the sequence store, as the machine asks for them.
private struct HostEnvironment: SignalingEnvironment {
    let host: SignalingHost
    let sequences: SequenceSource

    var nodeAddresses: NodeAddresses { host.nodeAddresses }
    func verifyingKey(for hoa: IPAddress, mayLookUp: () -> Bool) -> KeyAnswer { host.verifyingKey(for: hoa, mayLookUp: mayLookUp) }
    func keyMayHaveChanged(for hoa: IPAddress, mayLookUp: () -> Bool) -> Bool {
        host.keyMayHaveChanged(for: hoa, mayLookUp: mayLookUp)
    }
    func currentMoAs(of hoa: IPAddress) -> [IPAddress] { host.currentMoAs(of: hoa) }
    func lookUpAgain(hoa: IPAddress) -> Bool { host.lookUpAgain(hoa: hoa) }

    func takeSequence(for what: String) -> UInt64? {
        do {
            return try sequences.take()
        } catch {
            log(.error, "matd: no sequence number for \(what): \(error)")
            return nil
        }
    }
}
