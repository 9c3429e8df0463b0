import MATDNS
import MATIMSClient
import MATLog
import MATPacket

/// Where the service's mapping of a peer came from.
public enum PeerOrigin: String, Sendable, Codable {
    /// A `[peer]` section of the configuration.
    case configured
    /// An IMS answer or a peer's verified alert.
    case learned
}

/// SIGHUP, the engine's refusals and a restart: the ways the service's view of its peers
/// changes from outside its own logic, all applied on the service thread.
extension MappingService {
    /// Called on SIGHUP with the configuration read anew (its run-time part already
    /// merged by `NodeConfig.reloaded(from:)`); applied on the service thread.
    public func reload(_ config: NodeConfig) {
        reloads.withLock { $0.append(config) }
        wakeup.signal()
    }

    /// Called by the engine thread when its table refused a mapping.
    public func noteRefusal(_ refusal: PacketProcessor.Refusal) {
        refusals.withLock { $0.append(refusal) }
        wakeup.signal()
    }

    /// The peers the service maps, by HoA, for the control socket.
    public var peerView: [IPAddress: PeerOrigin] { publishedPeers.withLock { $0 } }

    func takeReloads(now: UInt64) {
        let pending = reloads.withLock { queue -> [NodeConfig] in
            defer { queue.removeAll() }
            return queue
        }
        for next in pending { apply(next, now: now) }
    }

    /// Swaps in the new peers and IMS section: peers gone are removed from the engine,
    /// new or changed ones replaced, pinned keys follow, and a changed `[ims]` section, or
    /// one whose key files now hold other keys, gets a new client and registers at once.
    private func apply(_ reloaded: NodeConfig, now: UInt64) {
        var next = reloaded
        if next.ims != config.ims || keysChanged(next) {
            do {
                let (madeClient, madeSchedules) = try Self.makeClient(next)
                client = madeClient
                let announced = publicState.announced.mobileAddresses
                registrations.replaceSchedules(madeSchedules, moas: { family in announced.filter { $0.family == family } },
                                               at: now)
                log("matd: reload: [ims] section applied")
            } catch {
                // The peers are still taken; only the section that failed keeps its old value.
                log(.warning, "matd: reload: the [ims] section was not applied: \(error); the old one stays in force")
                next.ims = config.ims
            }
        }
        let oldPeers = Dictionary(config.peers.map { ($0.homeAddress, $0) }, uniquingKeysWith: { first, _ in first })
        let newPeers = Dictionary(next.peers.map { ($0.homeAddress, $0) }, uniquingKeysWith: { first, _ in first })
        config = next
        followConfiguredRelays()
        var changed = false
        for (hoa, _) in oldPeers where newPeers[hoa] == nil {
            peerKeys[hoa] = nil
            publishedPeers.withLock { $0[hoa] = nil }
            engine.send(.removeMapping(hoa))
            log("matd: reload: peer \(hoa) removed")
            changed = true
        }
        for (hoa, peer) in newPeers
        where oldPeers[hoa]?.mobileAddresses != peer.mobileAddresses || oldPeers[hoa]?.publicKey != peer.publicKey {
            peerKeys[hoa] = peer.publicKey
            learned[hoa] = nil
            publishedPeers.withLock { $0[hoa] = .configured }
            engine.send(.replaceMapping(peer.mapping))
            log("matd: reload: peer \(hoa) -> \(peer.mobileAddresses.map(\.description).joined(separator: ", "))")
            changed = true
        }
        if changed { updateDiversion() }
        register(now: now)
    }

    /// Whether the key files of `next`'s `[ims]` section hold other keys than the client
    /// signs with (a key rotated, or the IPv6 HoA's key added, with the section's text as it
    /// was). Files that cannot be read or do not match the HoAs count as changed, so that
    /// `makeClient` says why and the old client stays.
    private func keysChanged(_ next: NodeConfig) -> Bool {
        guard let ims = next.ims, let client else { return false }
        // Compared by name, algorithm and secret: TSIGKey is not Equatable (its secret
        // must not be compared by accident, or printed).
        func fingerprint(_ keys: [TSIGKey]) -> [String] {
            keys.map { "\($0.name) \($0.algorithm.rawValue) \($0.base64Secret)" }
        }
        do {
            return fingerprint(try NodeKeys.load(ims, homeAddresses: next.homeAddresses))
                != fingerprint(client.configuration.keys)
        } catch {
            return true
        }
    }

    /// The engine's table is the truth: a refused mapping leaves the service with what
    /// the table holds for that HoA (nothing, or the mapping it kept).
    func takeRefusals() {
        let pending = refusals.withLock { queue -> [PacketProcessor.Refusal] in
            defer { queue.removeAll() }
            return queue
        }
        guard !pending.isEmpty else { return }
        for refusal in pending {
            let hoa = refusal.offered.hoa
            log(.warning, "matd: the engine refused the mapping \(hoa) -> "
                + "\(refusal.offered.moas.map(\.address.description).joined(separator: ", ")): \(refusal.error)")
            EventLog.shared.post("mapping_refused", ["peer": "\(hoa)", "error": "\(refusal.error)"])
            if let current = refusal.current {
                if learned[hoa] != nil { learned[hoa]?.mapping = current }
                continue
            }
            learned[hoa] = nil
            if config.peers.contains(where: { $0.homeAddress == hoa }) {
                config.peers.removeAll { $0.homeAddress == hoa }
                peerKeys[hoa] = nil
            }
            publishedPeers.withLock { $0[hoa] = nil }
        }
        updateDiversion()
    }

    /// Drops a learned mapping from the service and the engine.
    func forget(_ hoa: IPAddress) {
        endTrial(of: hoa)
        dropFirstContactAlert(hoa)
        idle.forget(hoa)
        endLapsedLimits(freshness.forget(hoa), of: hoa)
        signaling.cancelProbes(of: hoa)
        stateDirty = true
        learned[hoa] = nil
        publishedPeers.withLock { $0[hoa] = nil }
        engine.send(.removeMapping(hoa))
    }

    /// The IMS client and registration schedules an `[ims]` section calls for. Throws
    /// when a key file is missing, unreadable, readable by others, or holds no key, or
    /// when the keys do not match the HoAs one to one (``NodeKeys``).
    static func makeClient(_ config: NodeConfig) throws -> (IMSClient?, [AddressFamily: RegistrationSchedule]) {
        guard let ims = config.ims else { return (nil, [:]) }
        let keys = try NodeKeys.load(ims, homeAddresses: config.homeAddresses)
        let client = IMSClient(
            configuration: IMSClientConfiguration(names: try MappingNames(zone: ims.zone), servers: ims.servers,
                                                  keys: keys, recordTTL: ims.recordTTL,
                                                  registrationLifetime: UInt32(clamping: ims.lifetime),
                                                  relay: config.relay?.address),
            clock: SteppedWallClock.seconds,
            log: { level, message in log(LogLevel(name: level.rawValue) ?? .info, "matd: ims \(level.rawValue): \(message)") })
        var schedules: [AddressFamily: RegistrationSchedule] = [:]
        if !keys.isEmpty {
            for home in config.homeAddresses { schedules[home.family] = RegistrationSchedule(lifetime: ims.lifetime) }
        }
        return (client, schedules)
    }

}

extension PeerMapping {
    /// A mapping whose MoAs are preferred in the order given, all with `flags`.
    init(hoa: IPAddress, ranked moas: [IPAddress], flags: MappingFlags, sequence: UInt64 = 0) {
        self.init(hoa: hoa, moas: moas.enumerated().map {
            MoABinding(address: $0.element, priority: UInt8(clamping: $0.offset), flags: flags)
        }, sequence: sequence)
    }
}

extension NodeConfig.StaticPeer {
    /// This configured peer's mapping, as the engine's table holds it.
    var mapping: PeerMapping { PeerMapping(hoa: homeAddress, ranked: mobileAddresses, flags: .static) }
}

extension MappingService {
    /// Takes back what the last run saved: learned mappings (looked up again at once, and
    /// used meanwhile), peers' keys and replay state. Configured peers win over saved ones.
    func restoreState() {
        let saved: PeerState
        do {
            let (state, skipped) = try PeerState.load(stateFile)
            if skipped > 0 { log("matd: \(stateFile): \(skipped) entries did not parse and were skipped") }
            saved = state
        } catch {
            log(.warning, "matd: \(stateFile) not restored: \(error); starting without learned peers")
            return
        }
        let configured = Set(config.peers.map(\.homeAddress))
        let now = Self.milliseconds()
        for peer in saved.peers where !configured.contains(peer.hoa) {
            let mapping = PeerMapping(hoa: peer.hoa, ranked: peer.moas, flags: .confirmed, sequence: peer.sequence)
            learned[peer.hoa] = (mapping, now + MappingRefresh.soon)
            idle.track(peer.hoa, now: now)
            _ = freshness.track(peer.hoa, moas: peer.moas, now: now)
            publishedPeers.withLock { $0[peer.hoa] = .learned }
            engine.send(.replaceMapping(mapping))
        }
        let pinned = Set(config.peers.filter { $0.publicKey != nil }.map(\.homeAddress))
        for (hoa, key) in saved.keys where !pinned.contains(hoa) { peerKeys[hoa] = key }
        signaling.restoreReplay(saved.replay)
        savedReplayChanges = signaling.replayChanges
        if !saved.peers.isEmpty {
            log("matd: restored \(saved.peers.count) learned peer(s) from \(stateFile)")
            updateDiversion()
        }
    }

    /// Saves the state when it changed, at most once a second unless `force`d (on stop).
    func saveStateIfChanged(now: UInt64, force: Bool = false) {
        let replayChanged = signaling.replayChanges != savedReplayChanges
        if force {
            stateWriter.close(writing: stateDirty || replayChanged || stateWriter.behind ? stateSnapshot() : nil)
            return
        }
        guard stateDirty || replayChanged, now >= lastStateSave + 1_000 else { return }
        lastStateSave = now
        stateWriter.submit(stateSnapshot())
        stateDirty = false
        savedReplayChanges = signaling.replayChanges
    }

    /// What `peers.json` keeps, as of now (``StateWriter`` sorts and writes it).
    private func stateSnapshot() -> PeerState {
        let pinned = Set(config.peers.filter { $0.publicKey != nil }.map(\.homeAddress))
        return PeerState(
            peers: learned.values.map { entry in
                PeerState.Peer(hoa: entry.mapping.hoa, moas: entry.mapping.moas.map(\.address),
                               sequence: entry.mapping.sequence)
            },
            keys: peerKeys.filter { !pinned.contains($0.key) },
            replay: signaling.replayEntries)
    }
}
