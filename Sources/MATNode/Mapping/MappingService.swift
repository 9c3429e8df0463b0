#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATDNS
import MATIMSClient
import MATLinux
import MATLog
import MATPacket
import MATSignaling
import Synchronization

/// The control plane, on a thread of its own: follows the uplinks through netlink events,
/// registers the node's mapping with the IMS (on start, on every move and before the
/// lifetime runs out), alerts peers when the node moves and answers their alerts, looks
/// up peers the engine has packets for, refreshes learned mappings when their TTL runs
/// out, and keeps the engine's table and the inbound diversion in step with all of it.
public final class MappingService: @unchecked Sendable {
    // @unchecked: everything but the Mutex-guarded members and `wakeup` is touched only
    // by the service thread (and by `init` before it starts).

    /// The configuration in force: what SIGHUP may change (peers, the IMS section) is
    /// replaced by `reload`.
    var config: NodeConfig
    let host: HostSetup
    let engine: Engine
    var client: IMSClient?
    let signaling: Signaling
    let monitor: NetlinkMonitor
    /// When each family's mapping is written to the IMS (``Registrations``).
    var registrations = Registrations()
    var addresses: NodeAddresses
    /// `addresses` as of the last change, for the control thread.
    let publishedAddresses: Mutex<NodeAddresses>
    /// Mappings learned from the IMS or from peers' alerts, with when to look them up again.
    var learned = LearnedPeers()
    /// What the diversion was last written for in whole (nil: not yet, or that write
    /// failed); while the node's addresses and the configured peers' MoAs stay, a change of
    /// learned peers only adds and deletes their MoAs.
    var diverted: (addresses: NodeAddresses, configured: Set<IPAddress>)?
    /// Keys bound to peers' HoAs: pinned in the configuration or published in the IMS.
    var peerKeys: [IPAddress: VerifyingKey] = [:]
    /// When the uplinks are due to be read again after netlink events.
    var debounce = MovementDebounce()
    /// Whether the pending reading was caused by netlink events (a storm counts those).
    var eventsPending = false
    /// A MoA chosen by `matctl rebind --moa`, preferred while it is on an uplink.
    var pinnedMoAs: [IPAddress] = []
    /// Set by a live-migration event or `matctl rebind`: alert the peers even if the MoA stayed.
    var announceEvenIfUnchanged = false
    /// Runs `on-notify-peers` after a live migration; nil when none is configured.
    let readdresser: Readdresser?
    /// The `matctl rebind` calls waiting for their peers' acknowledgements.
    var rebinds: [PendingRebind] = []
    /// How each peer's last alert ended: acknowledged (true) or unanswered (false).
    var settlements: [IPAddress: Bool] = [:]
    /// Mappings put in on a peer's signed word while its new MoA is challenged, with the
    /// mapping each replaced (restored if the challenge goes unanswered).
    var provisional: [IPAddress: (sequence: UInt64, previous: PeerMapping?)] = [:]
    /// Public addresses behind 1:1 NAT: what is announced, asked and learned.
    var publicState = PublicAddressState()
    /// The alerts of the last move not sent yet.
    var alerts = AlertQueue()
    /// The peers whose traffic waits for their answer to the last move's alert.
    var peerHolds = PeerHolds()
    /// When the service loop last walked the learned peers for refreshes and idle probes.
    var lastPeerScan: UInt64 = 0
    /// When saving the sequence counter last failed, and how often it has (``saveSequences``).
    private var sequenceSaveFailedAt: UInt64 = 0
    private var sequenceSaveFailures = 0
    /// `publicState.announced` as of the last change, for the control thread.
    let publishedAnnounced = Mutex(NodeAddresses())
    /// The UDP encapsulation's policy and probe sockets (nil: `udp-encapsulation = off`),
    /// and the MoAs of the settled peers it tracks, kept by their changes.
    var encapControl: EncapControl?
    var encapSettled = SettledMoAs()
    /// When this node next registers with its relay (`[relay] address`); nil before the first.
    var relaySchedule: RelayRegistrationSchedule?
    /// Registration lifetimes of learned mappings (``MappingLifetimes``).
    var lifetimes = MappingLifetimes()
    /// IMS answers whose new MoAs or key are being probed (``AnswerTrial``), and those
    /// none of whose probes was answered (``RefusedAnswers``).
    var answerTrials: [IPAddress: AnswerTrial] = [:]
    var refusedAnswers = RefusedAnswers()
    /// First contacts whose alert waits for the first answer to a probe of the peer's MoAs
    /// (``FirstContacts``).
    var firstContacts = FirstContacts()
    /// Learned peers' silence, probed after a while (``IdleProbing``); set from the IMS's
    /// record TTL in `init`.
    var idle = IdleProbing(idleAfter: 30_000)
    /// How long each learned MoA counts as proven (``ProofFreshness``); set from
    /// `proof-lifetime` in `init`.
    var freshness = ProofFreshness(lifetime: NodeConfig.defaultProofLifetime * 1_000)
    /// `matctl rotate-key` requests, the rotations waiting for their registrations, and
    /// the signing key each family's last confirmed registration published.
    let keyRotationRequests = Mutex<[KeyRotationTicket]>([])
    var keyRotations: [PendingKeyRotation] = []
    var confirmedKeys: [AddressFamily: String?] = [:]
    /// `matctl deregister`: requests and those waiting for the IMS.
    let deregistrationRequests = Mutex<[DeregistrationTicket]>([])
    var pendingDeregistrations: [PendingDeregistration] = []
    /// The IMS lookups of unknown or perhaps rotated keys: at most one per HoA every 5 s.
    var keyLookups = AddressThrottle(interval: 5_000)
    /// The global bound on lookups of HoAs the engine has packets for (``FirstPacketLookups``),
    /// and its warning when spent: at most one every 10 s (a flood would fill the log).
    var firstPacketLookups = FirstPacketLookups()
    var deferredLookupWarnedAt: UInt64?
    /// The warnings about unsigned answers for a HoA with no key held (``refusedUnkeyed(_:now:)``):
    /// at most one per HoA every 5 min.
    var unkeyedRefusals = AddressThrottle(interval: 300_000)
    let requests = Mutex<[RebindRequest]>([])
    private let misses = Mutex<[IPAddress]>([])
    /// Mappings the engine's table refused, for the service to take the table's word.
    let refusals = Mutex<[PacketProcessor.Refusal]>([])
    /// Configurations read on SIGHUP, waiting to be applied.
    let reloads = Mutex<[NodeConfig]>([])
    /// Every peer HoA the service maps, and where its mapping came from: what the control
    /// socket compares with the engine's table.
    let publishedPeers = Mutex<[IPAddress: PeerOrigin]>([:])
    let wakeup: Wakeup
    /// Runs the IMS exchanges off this thread.
    var imsWorker: IMSWorker!
    /// Lookups on their way to the IMS.
    var lookingUp: Set<PendingLookup> = []
    /// The wall clock sequence numbers start from: the host's, or the IMS's if ahead.
    let sequenceClock = SequenceClock(host: SteppedWallClock.seconds)
    /// Where learned mappings, keys and replay state are kept across restarts.
    let stateFile: String
    /// Writes `stateFile` off this thread.
    let stateWriter: StateWriter
    /// Whether the state changed since it was last saved, and when that was (ms).
    var stateDirty = false
    var savedReplayChanges = 0
    var lastStateSave: UInt64 = 0
    private let stopped = Mutex(false)
    private var thread: SystemThread?

    /// Prepares the service; `start()` begins the work. Throws when a key file is missing,
    /// unreadable, readable by others, or holds no key, when the keys do not match the
    /// HoAs one to one (``NodeKeys``), or when the signaling port is taken.
    public init(config: NodeConfig, host: HostSetup, engine: Engine, addresses: NodeAddresses) throws {
        self.config = config
        self.host = host
        self.engine = engine
        self.addresses = addresses
        publishedAddresses = Mutex(addresses)
        wakeup = try Wakeup()
        try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let sequences = SequenceSource(store: SequenceStore(path: config.stateDirectory + "/sequence",
                                                            clock: sequenceClock.closure))
        let signingKey = try SigningKeyFile.load(config.signingKeyFile ?? config.stateDirectory + "/signing.key",
                                                 createIfMissing: config.signingKeyFile == nil)
        let lifetime = UInt32(clamping: config.ims?.lifetime ?? 300)
        signaling = try Signaling(port: config.signalingPort, families: Set(config.homeAddresses.map(\.family)),
                                  key: signingKey, sequences: sequences, lifetime: lifetime)
        monitor = try NetlinkMonitor()
        readdresser = Readdresser(command: config.onNotifyPeers, wakeup: wakeup)
        for peer in config.peers {
            if let key = peer.publicKey { peerKeys[peer.homeAddress] = key }
        }
        publishedPeers.withLock { view in
            for peer in config.peers { view[peer.homeAddress] = .configured }
        }
        let (madeClient, madeSchedules) = try Self.makeClient(config)
        client = madeClient
        registrations = Registrations(madeSchedules)
        if config.udpEncapsulation != .off {
            encapControl = try EncapControl(config)
        }
        idle = IdleProbing(idleAfter: Self.idleProbeAfter(config))
        freshness = ProofFreshness(lifetime: config.proofLifetime * 1_000)
        if let step = SteppedWallClock.step {
            log(.warning, "matd: \(ClockStep.variable) is set (for tests only): the wall clock, \(SteppedWallClock.seconds()) now, "
                + "steps by \(step.seconds) s in \(step.afterMilliseconds) ms")
        }
        stateFile = config.stateDirectory + "/peers.json"
        stateWriter = StateWriter(path: stateFile)
        signaling.host = self
        imsWorker = try IMSWorker { [wakeup] in wakeup.signal() }
        restoreState()
    }

    /// Starts the service thread; throws when the system gives no thread.
    public func start() throws(SystemError) {
        guard let thread = SystemThread.start(name: "matd-mapping", { [self] in self.loop() }) else {
            throw SystemError("start the mapping service thread", detail: "no thread to be had")
        }
        self.thread = thread
    }

    /// Stops the service thread and waits for it.
    public func stop() {
        imsWorker.stop()
        stopped.withLock { $0 = true }
        wakeup.signal()
        thread?.join()
        thread = nil
    }

    /// When the service thread last came round its loop (monotonic milliseconds): at
    /// least once a second while it is healthy, for the service manager's watchdog.
    public var lastTurn: UInt64 { turned.withLock { $0 } }
    private let turned = Mutex(MonotonicClock.milliseconds())

    /// The node's HoAs and current MoAs.
    public var currentAddresses: NodeAddresses { publishedAddresses.withLock { $0 } }

    /// The node's public key for signed alerts (base64), as published in the IMS.
    public var publicKey: String { signaling.publicKey.base64 }

    /// The IMS client's counters by metric name, or nil without an `[ims]` section.
    public var imsCounters: [String: UInt64]? {
        client.map { client in
            Dictionary(client.statistics.named.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// How each peer's alerts went, for `matctl peers`.
    public var peerSignalStates: [IPAddress: PeerSignalState] { signaling.peerSignalStates }

    /// The signaling counters by metric name.
    public var signalingCounters: [String: UInt64] {
        Dictionary(signaling.counters.named.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    /// Called by the engine thread: packets wait for a mapping of `hoa`.
    public func lookUp(_ hoa: IPAddress) {
        let added = misses.withLock { queue -> Bool in
            guard queue.count < 256, !queue.contains(hoa) else { return false }
            queue.append(hoa)
            return true
        }
        if added { wakeup.signal() }
    }

    private func loop() {
        var descriptors = ([wakeup.readDescriptor, monitor.fileDescriptor] + signaling.fileDescriptors).map {
            pollfd(fd: $0, events: Int16(POLLIN), revents: 0)
        }
        debounce.readNow(at: 0)
        while !stopped.withLock({ $0 }) {
            let now = Self.milliseconds()
            turned.withLock { $0 = now }
            if descriptors[1].revents != 0 { noteNetlinkEvents(now: now) }
            takeRenewals(now: now)
            if descriptors[2...].contains(where: { $0.revents != 0 }) { signaling.receive(now: now) }
            if let due = debounce.dueAt, due <= now { followUplinks(now: now) }
            sendQueuedAlerts(now: now)
            takeIMSResults(now: now)
            takeReloads(now: now)
            takeRefusals()
            takeRebindRequests(now: now)
            // After a move's first alerts (in `followUplinks`, this turn): its per-peer part.
            finishDiversionMove()
            rotateKeys(now: now)
            deregistrations(now: now)
            askPublicAddressesAgain(now: now)
            register(now: now)
            resolveMisses(now: now)
            // Both walk every learned peer: not on every turn, which comes at once while
            // a move's alerts are still going out (`AlertQueue`).
            if now >= lastPeerScan + 100 {
                lastPeerScan = now
                refreshLearned(now: now)
                probeIdlePeers(now: now)
            }
            let retransmitAt = signaling.tick(now: now)
            let encapAt = tickEncap(now: now)
            let relayAt = tickRelay(now: now)
            let rebindsToCount = finishRebinds(now: now)
            saveStateIfChanged(now: now)
            saveSequences(now: now)
            let next = [debounce.dueAt, retransmitAt, encapAt, relayAt, alerts.isEmpty && !rebindsToCount ? now + 1_000 : now]
                .compactMap { $0 }.min()!
            for index in descriptors.indices { descriptors[index].revents = 0 }
            _ = poll(&descriptors, nfds_t(descriptors.count), Int32(clamping: next > now ? next - now : 0))
            if descriptors[0].revents != 0 { wakeup.drain() }
        }
        saveStateIfChanged(now: Self.milliseconds(), force: true)
        saveSequences(now: Self.milliseconds(), force: true)
    }

    /// Saves the block of sequence numbers this turn's messages started, now that they
    /// are sent (``SequenceSource``); after a failure, once a second at most.
    private func saveSequences(now: UInt64, force: Bool = false) {
        guard force || now >= sequenceSaveFailedAt + 1_000 else { return }
        do {
            try signaling.saveSequences()
        } catch {
            sequenceSaveFailedAt = now
            sequenceSaveFailures += 1
            log(.error, "matd: saving the sequence counter failed (\(sequenceSaveFailures) times so far): \(error); trying again in a second")
        }
    }

    private func resolveMisses(now: UInt64) {
        let pending = misses.withLock { queue -> [IPAddress] in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        guard client != nil else { return }
        for hoa in pending {
            let asked = lookingUp.contains(PendingLookup(hoa: hoa, purpose: .firstPacket))
            switch firstPacketLookups.decide(hoa, domains: config.domainPrefixes, alreadyAsked: asked, now: now) {
            case .lookUp:
                signaling.countFirstPacketLookup(deferred: false)
                lookUp(hoa, for: .firstPacket)
            case .overBudget:
                signaling.countFirstPacketLookup(deferred: true)
                if deferredLookupWarnedAt.map({ now >= $0 + 10_000 }) ?? true {
                    deferredLookupWarnedAt = now
                    log(.warning, "matd: first-packet lookups over their bound (\(FirstPacketLookups.rate)/s): \(hoa) "
                        + "is asked at its next packet (first_packet_lookups_deferred)")
                }
            case .outsideDomain, .alreadyAsked:
                break
            }
        }
    }

    /// Looks learned mappings up again when their TTL has run out. An unreachable IMS
    /// answers from the cache (stale, logged and counted by the client), so the engine
    /// keeps the mapping it has.
    private func refreshLearned(now: UInt64) {
        checkLapsedMappings(now: now)
        for hoa in learned.takeDueRefreshes(now: now) { lookUp(hoa, for: .refresh) }
    }

    /// Queues a lookup of `hoa` unless one for the same reason is on its way.
    func lookUp(_ hoa: IPAddress, for purpose: IMSWorker.Purpose) {
        guard let client, lookingUp.insert(PendingLookup(hoa: hoa, purpose: purpose)).inserted else { return }
        imsWorker.submit(.lookup(client, hoa: hoa, purpose: purpose))
    }

    /// Acts on what the IMS worker finished.
    private func takeIMSResults(now: UInt64) {
        var changed = false
        // The IMS's time: from a refusal for time, or from any signed answer (BIND and
        // Knot refuse nothing within the 300 s fudge).
        if let client, case let ahead = max(client.clockCorrection, client.serverTimeAhead ?? 0), sequenceClock.follow(ahead) {
            let again = signaling.renumberUpdates(below: sequenceClock.floor, now: now)
            if again > 0 {
                log(.warning, "matd: the IMS's clock is \(ahead) s ahead of this node's (restored from a "
                    + "snapshot?): \(again) alert(s) numbered by this node's clock sent again with numbers from the IMS's")
            }
        }
        for outcome in imsWorker.takeResults() {
            switch outcome {
            case .registered(let hoa, let moas, let sequence, let result):
                registered(hoa: hoa, moas: moas, sequence: sequence, result, now: now)
            case .lookedUp(let hoa, let purpose, let result):
                lookingUp.remove(PendingLookup(hoa: hoa, purpose: purpose))
                changed = lookedUp(hoa, purpose: purpose, result, now: now) || changed
            case .publicAddress(let family, let local, let result):
                learnedPublicAddress(family: family, local: local, result, now: now)
            }
        }
        if changed { updateDiversion() }
    }

    /// Uses a lookup's answer as its purpose says. Returns whether a mapping's MoAs changed.
    private func lookedUp(_ hoa: IPAddress, purpose: IMSWorker.Purpose,
                          _ result: Result<PeerMappingAnswer, IMSClientError>, now: UInt64) -> Bool {
        if purpose == .relayKey {
            takeRelayKey(hoa, result)
            return false
        }
        followRelay(hoa, result)
        if purpose != .key, case .success(let answer) = result, !admitLifetime(of: answer, now: now) { return true }
        switch (purpose, result) {
        case (.firstPacket, .success(let answer)):
            guard learned[hoa] == nil, let moa = answer.moas.first else { return install(answer, now: now) }
            return beginFirstContact(hoa, answer, at: moa, now: now)
        case (.refresh, _) where learned[hoa] == nil:
            // Dropped while the lookup was on its way (it stopped answering, its lifetime
            // passed): the answer must not bring it back; its next packet asks afresh.
            return false
        case (.refresh, .success(let answer)) where answer.moas.isEmpty:
            // Deregistered, or expired by the IMS: the TXT stays, the MoAs went.
            forget(hoa)
            return true
        case (.refresh, .success(let answer)):
            return install(answer, now: now)
        case (.refresh, .failure(.noMapping)):
            forget(hoa)
            return true
        case (.refresh, .failure):
            learned.refreshFailed(hoa, now: now)
            return false
        case (.key, .success) where !lookupsAreSigned && peerKeys[hoa] == nil:
            // Unsigned: the key would be whoever answered's, and the message waiting for
            // it may be that answerer's too.
            refusedUnkeyed(hoa, now: now)
            return false
        case (.key, .success(let answer)):
            // A key that replaces one is taken only if the message that made this node ask
            // (a peer's, signed with the key it uses now) verifies with it: an answer alone
            // changes no key.
            if let held = peerKeys[hoa], let text = answer.publicKey, let key = VerifyingKey(base64: text), key != held,
               !signaling.waitingMessageVerifies(from: hoa, with: key) {
                log(.warning, "matd: \(hoa): the IMS names another key (\(text)), but no message of \(hoa)'s verifies with it; kept the old one")
                return false
            }
            if learnKey(from: answer) != nil { signaling.keyArrived(for: hoa, now: now) }
            return false
        case (.again, .success(let answer)):
            guard !answer.moas.isEmpty else { return false }
            let changed = install(answer, now: now)
            signaling.redirect(hoa, to: answer.moas)
            return changed
        case (.relayKey, _):
            return false
        case (.firstPacket, .failure(let error)), (.key, .failure(let error)), (.again, .failure(let error)):
            // Counted by the IMS client; the next packet, alert or retransmission asks again.
            log(.warning, "matd: looking up \(hoa) (\(purpose)) failed: \(error)")
            return false
        }
    }

    /// Puts an IMS answer into the engine's table. Returns whether the MoAs changed.
    @discardableResult
    func install(_ answer: PeerMappingAnswer?, now: UInt64) -> Bool {
        guard let answer, !answer.moas.isEmpty else { return false }
        // The answer's times are the IMS client's (wall-clock seconds); ours are monotonic.
        let expiresAt = MappingRefresh.afterAnswer(remainingTTL: UInt64(answer.remainingTTL(at: SteppedWallClock.seconds())),
                                                   stale: answer.isStale, now: now)
        // A mapping taken from a peer's alert carries a newer sequence number than what the
        // IMS may still say (its registration failed, or the answer is a stale cache): an
        // older answer with other MoAs does not move the traffic back.
        if let current = learned[answer.hoa]?.mapping, answer.sequence ?? 0 < current.sequence,
           Set(answer.moas) != Set(current.moas.map(\.address)) {
            learned[answer.hoa]?.expiresAt = expiresAt
            return false
        }
        return takeChecked(answer, expiresAt: expiresAt, now: now)
    }

    /// Takes the key an IMS answer publishes for its HoA, unless the configuration pins
    /// one; returns the key bound to that HoA now.
    @discardableResult
    func learnKey(from answer: PeerMappingAnswer) -> VerifyingKey? {
        let pinned = config.peers.contains { $0.homeAddress == answer.hoa && $0.publicKey != nil }
        if !pinned, let text = answer.publicKey, let key = VerifyingKey(base64: text), peerKeys[answer.hoa] != key {
            if peerKeys[answer.hoa] != nil { keyReplaced(answer.hoa, by: text) }
            peerKeys[answer.hoa] = key
            stateDirty = true
        }
        return peerKeys[answer.hoa]
    }

    /// A peer's key changed (it rotated it, after a theft say): sequence numbers count per
    /// key, so its alerts and its mapping start afresh. The old key's messages no longer
    /// verify, so none of them can be replayed; a huge sequence signed with the old key
    /// stops shadowing the owner's alerts (the replay guard) and its registrations (the
    /// engine table keeps the highest sequence, so the mapping goes in after a removal).
    func keyReplaced(_ hoa: IPAddress, by text: String) {
        signaling.forgetReplay(hoa)
        lifetimes.forget(hoa)
        if learned.removeValue(forKey: hoa) != nil {
            provisional[hoa] = nil
            engine.send(.removeMapping(hoa))
        }
        log(.notice, "matd: \(hoa) has a new signing key (\(text)); its alerts and mapping start afresh")
        EventLog.shared.post("key_changed", ["peer": "\(hoa)", "key": text])
    }

    /// Puts a mapping into the engine's table. Returns whether the MoAs changed.
    func install(_ mapping: PeerMapping, expiresAt: UInt64, reason: String) -> Bool {
        let previous = learned[mapping.hoa]?.mapping
        learned[mapping.hoa] = (mapping, expiresAt)
        idle.track(mapping.hoa, now: Self.milliseconds())
        endLapsedLimits(freshness.track(mapping.hoa, moas: mapping.moas.map(\.address), now: Self.milliseconds()), of: mapping.hoa)
        publishedPeers.withLock { $0[mapping.hoa] = .learned }
        // A refresh that only moves the expiry leaves the saved state as it is.
        if previous?.sequence != mapping.sequence || previous?.moas.map(\.address) != mapping.moas.map(\.address) {
            stateDirty = true
        }
        guard previous?.moas.map(\.address) != mapping.moas.map(\.address) else { return false }
        engine.send(.replaceMapping(mapping))
        log("matd: mapping \(reason)")
        return true
    }

    /// Points the diversion at the node's addresses and every peer's MoA: after a move or a
    /// reload in whole, otherwise only the learned MoAs that appeared or vanished.
    func updateDiversion() {
        let changes = learned.takeMoAChanges()
        let configured = Set(config.peers.flatMap(\.mobileAddresses))
        do {
            if let diverted, diverted.addresses == addresses, diverted.configured == configured {
                try host.changePeerMoAs(adding: changes.appeared.subtracting(configured),
                                        removing: changes.vanished.subtracting(configured))
            } else if diverted?.configured == configured {
                // A move: O(changed) before its alerts, the rest after them (``finishMove()``).
                diverted = nil
                do {
                    try host.moveDiversion(to: addresses, adding: changes.appeared.subtracting(configured),
                                           removing: changes.vanished.subtracting(configured))
                } catch {
                    log(.warning, "matd: the move's diversion: \(error); writing it whole")
                    try host.divertInbound(addresses: addresses, peerMoAs: Array(configured.union(learned.moas)))
                }
                diverted = (addresses, configured)
            } else {
                diverted = nil
                try host.divertInbound(addresses: addresses, peerMoAs: Array(configured.union(learned.moas)))
                diverted = (addresses, configured)
            }
        } catch {
            diverted = nil
            log(.error, "matd: updating the inbound diversion failed: \(error)")
        }
    }

    /// The part of a move's diversion that waits for its first alerts (``HostSetup/finishMove()``).
    func finishDiversionMove() {
        do {
            try host.finishMove()
        } catch {
            diverted = nil
            log(.error, "matd: pointing IPv6 at the new next hops after the move failed: \(error); writing the diversion again")
            updateDiversion()
        }
    }

    /// How long a learned peer may stay silent before it is probed: three record TTLs (so a
    /// peer is checked about once per three lookups), 30 s by default, at least 3 s.
    static func idleProbeAfter(_ config: NodeConfig) -> UInt64 {
        max(3, 3 * UInt64(config.ims?.recordTTL ?? 10)) * 1_000
    }

    /// Milliseconds of the monotonic clock.
    static func milliseconds() -> UInt64 { MonotonicClock.milliseconds() }
}
