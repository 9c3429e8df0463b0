#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATIMSClient
import MATLinux
import MATLog
import MATPacket
import MATSignaling
import Synchronization

/// Movement: netlink events, debounced, decide when the uplinks are read again; a new MoA
/// re-points the datapath, is registered with the IMS, and is announced to every peer,
/// whose traffic waits until it acknowledges. `matctl rebind` forces the same path.
extension MappingService {
    func noteNetlinkEvents(now: UInt64) {
        let events: [NetlinkEvent]
        do {
            events = try monitor.readEvents()
        } catch {
            log("matd: reading netlink events failed: \(error); reading the uplinks again")
            events = [.overflow]
        }
        var relevant = false
        for event in events {
            switch event {
            case .overflow:
                // Events were lost: read everything again now rather than trust any of them.
                log("matd: netlink event overflow; reading the uplinks again")
                debounce.readNow(at: now)
                return
            case .addressAdded, .addressRemoved, .defaultRouteChanged:
                relevant = true
            case .linkChanged(_, let name, _, let notifyPeers):
                // By entry, not by the present uplinks: a NIC just plugged in that matches
                // a pattern counts, and so does one just removed.
                guard config.isUplink(name) else { continue }
                if notifyPeers, let readdresser {
                    // The renewal moves the node (its address events) or, on the same
                    // site, has the peers alerted when it ends (takeRenewals). QEMU's
                    // announcement rounds themselves are no movement: five readings in a
                    // second would count as a flapping link and hold the real move back.
                    readdresser.announced(on: name, addresses: addresses)
                    continue
                }
                relevant = true
                if notifyPeers {
                    // The guest was live-migrated: tell the peers again even if the MoA
                    // stayed, so they check it answers from the new host.
                    log("matd: \(name) reports a live migration (notify peers)")
                    announceEvenIfUnchanged = true
                }
            case .linkRemoved(_, let name):
                relevant = relevant || config.isUplink(name)
            }
        }
        guard relevant else { return }
        eventsPending = true
        debounce.eventArrived(at: now)
    }

    /// Reads the uplinks; on a new MoA (or when forced) re-points the datapath, registers
    /// and alerts the peers.
    func followUplinks(now: UInt64) {
        let reading = MonotonicClock.nanoseconds()
        let found = host.uplinkAddresses()
        let vanished = addresses.mobileAddresses.contains { moa in !found.contains { $0.family == moa.family } }
        if eventsPending, vanished, debounce.addressesVanished(at: now) { return }
        debounce.didRead(at: now, afterEvents: eventsPending)
        eventsPending = false
        let force = announceEvenIfUnchanged
        announceEvenIfUnchanged = false
        pinnedMoAs.removeAll { !found.contains($0) }
        let ordered = pinnedMoAs + found.filter { !pinnedMoAs.contains($0) }
        let next = addresses.withMobile(from: ordered)
        // Behind NAT the registration and the alerts name the public address (for `auto`
        // once the IMS has said it): families being asked wait for the answer.
        let asking = refreshAnnounced(for: next, moved: next != addresses || force, now: now)
        for family in registrations.families {
            guard let moas = registrationMoAs(family: family, candidates: ordered) else { continue }
            registrations.moasChanged(family, to: moas, at: now)
        }
        guard next != addresses || force else {
            host.followRoutes()   // a new gateway with the same MoA: IPv6 next hops (nftables path)
            if let fastPath = engine.fastPath {   // and the BPF datapath's IPv4 next hops
                fastPath.routesChanged()
                engine.refreshFastPathRules()
            }
            return
        }
        // Held before the engine takes the new MoA, each family whole in one command
        // (``PeerHolds``): nothing per peer comes before the first alerts.
        let families = PeerHolds.families(from: addresses, to: next, force: force)
        engine.send(peerHolds.move(families, now: now))
        if next != addresses {
            log("matd: mobile addresses now \(next.mobileDescription) (were \(addresses.mobileDescription))")
            EventLog.shared.post("move", ["mobile": next.mobileDescription, "previous": addresses.mobileDescription])
            addresses = next
            publishedAddresses.withLock { $0 = next }
            engine.send(.setAddresses(next))
            updateDiversion()
        }
        // The configured peers' alerts first, then the registration beside them (through the
        // IMS worker); the learned peers are gathered a slice per turn (``AlertQueue``), from
        // the HoAs learned now, the first slice in this turn: with up to a slice of them their
        // alerts go now too, not after the rest of the turn (the diversion's per-peer part,
        // the state and sequence files' writes and syncs).
        let round = alerts.begin(for: families)
        let configured = configuredPeers(of: families)
        joinRound(configured, round: round, asking: asking, now: now)
        sendQueuedAlerts(now: now, gathering: false)
        let alerted = MonotonicClock.nanoseconds()
        register(now: now)
        guard !families.isEmpty else { return }
        peerHolds.reserve(learned.count)
        alerts.gather(Array(learned.keys))
        let learnedAlerted = sendQueuedAlerts(now: now)
        let learnedAt = MonotonicClock.nanoseconds()
        log("matd: move: \(configured.count) configured peer(s) alerted \(Self.milliseconds(alerted - reading)) ms after the reading, "
            + "\(learnedAlerted) learned peer(s) \(Self.milliseconds(learnedAt - reading)) ms after it; "
            + "\(learned.count) learned peer(s) to gather, \(AlertQueue.gatheredPerTurn) a turn")
    }

    private static func milliseconds(_ nanoseconds: UInt64) -> String { String(format: "%.1f", Double(nanoseconds) / 1e6) }

    /// The configured peers of `families`, at the MoA they are sent to (the learned one
    /// when a mapping was learned for them: ``activePeers()``).
    private func configuredPeers(of families: Set<AddressFamily>) -> [AlertQueue.Peer] {
        config.peers.compactMap { peer in
            guard families.contains(peer.homeAddress.family),
                  let moa = learned[peer.homeAddress]?.mapping.moas.first?.address ?? peer.mobileAddresses.first else { return nil }
            return (hoa: peer.homeAddress, moa: moa)
        }
    }

    /// `peers`, gathered by a move's round: held by the move (``PeerHolds``) and queued
    /// for their alerts, or, for a family whose public address is being asked, waiting for
    /// the answer (``PublicAddressWaits``).
    private func joinRound(_ peers: [AlertQueue.Peer], round: UInt64, asking: Set<AddressFamily>, now: UInt64) {
        peerHolds.join(peers.map(\.hoa))
        let queued = asking.isEmpty ? peers : peers.filter { !asking.contains($0.hoa.family) }
        if queued.count < peers.count { publicState.waiting.wait(peers.filter { asking.contains($0.hoa.family) }, now: now) }
        alerts.add(queued, to: round, first: Set(config.peers.map(\.homeAddress)),
                   recentSince: now > idle.idleAfter ? now - idle.idleAfter : 0, lastHeard: heardAt)
    }

    /// When `hoa` was last heard from, signed or by its data (0: never).
    private func heardAt(_ hoa: IPAddress) -> UInt64 { max(idle.lastHeard[hoa] ?? 0, idle.lastData[hoa] ?? 0) }

    /// Gathers the next slice of the learned peers a move concerns (``AlertQueue``): the
    /// configured ones went with the move, a learned one whose mapping went since is
    /// passed over. Once the round has them all, each family's hold ends with the last of
    /// its peers' (at once if none is held).
    private func gatherRound(now: UInt64) {
        guard let gathering = alerts.nextToGather() else { return }
        let configured = Set(config.peers.map(\.homeAddress))
        var peers: [AlertQueue.Peer] = []
        peers.reserveCapacity(gathering.hoas.count)
        for hoa in gathering.hoas where gathering.families.contains(hoa.family) && !configured.contains(hoa) {
            guard let moa = learned[hoa]?.mapping.moas.first?.address else { continue }
            peers.append((hoa: hoa, moa: moa))
        }
        joinRound(peers, round: gathering.round, asking: Set(publicState.asking.keys), now: now)
        guard gathering.isLast else { return }
        for family in gathering.families {
            if let end = peerHolds.gathered(family) { engine.send(end) }
        }
    }

    /// Gathers the next slice of the last move's peers (unless `gathering` is false: before
    /// the move's configured peers' alerts), then sends its next alerts (`AlertQueue`), so a
    /// round complete with this slice starts in this turn; a peer that cannot be alerted is
    /// not held. Returns how many alerts went out.
    @discardableResult
    func sendQueuedAlerts(now: UInt64, gathering: Bool = true) -> Int {
        if gathering { gatherRound(now: now) }
        let batch = alerts.next()
        for peer in batch where !signaling.announce(to: peer.hoa, at: peer.moa, now: now) {
            endHold(peer.hoa, .notAlerted, now: now)
        }
        return batch.count
    }

    /// Ends `hoa`'s hold (``PeerHolds``): the engine releases its traffic, and its family's
    /// hold when it was the last peer held.
    func endHold(_ hoa: IPAddress, _ reason: PeerHolds.End, now: UInt64) {
        let ending = peerHolds.end(hoa, reason, now: now)
        engine.send(ending.command)
        if let end = ending.familyEnd { engine.send(end) }
        // Checked first: a move with 100,000 peers ends as many holds.
        if let heldFor = ending.heldFor, Log.level == .debug {
            log(.debug, "matd: \(hoa): traffic released after \(heldFor) ms (\(reason.rawValue))")
        }
    }

    /// Every peer this node has a mapping for, with the MoA it sends to.
    func activePeers() -> [(hoa: IPAddress, moa: IPAddress)] {
        var peers: [IPAddress: IPAddress] = [:]
        for peer in config.peers { peers[peer.homeAddress] = peer.mobileAddresses.first }
        for (hoa, entry) in learned { peers[hoa] = entry.mapping.moas.first?.address }
        return peers.map { (hoa: $0.key, moa: $0.value) }
    }

    // MARK: matctl rebind

    /// Forces the movement path (`matctl rebind`): reads the uplinks, re-points the
    /// datapath, registers with the IMS and alerts every peer, and returns once the whole
    /// round of alerts has gone out (`AlertQueue` sends it over several turns) and each
    /// peer has acknowledged or its retransmissions ran out, or after `timeout` seconds.
    /// `interface` limits the MoA to one uplink; `moa` picks one of its addresses.
    /// Idempotent: a second call with nothing changed registers and alerts again.
    public func rebind(interface: String?, moa: IPAddress?, timeout: Double = 30) -> RebindReport {
        let ticket = RebindTicket()
        requests.withLock { $0.append(RebindRequest(interface: interface, moa: moa, ticket: ticket)) }
        wakeup.signal()
        guard ticket.done.wait(timeout: .now() + timeout) == .success, let report = ticket.report.withLock({ $0 }) else {
            return RebindReport(error: "no answer within \(Int(timeout)) s")
        }
        return report
    }

    func takeRebindRequests(now: UInt64) {
        let pending = requests.withLock { queue -> [RebindRequest] in
            defer { queue.removeAll() }
            return queue
        }
        for request in pending {
            if let error = choose(interface: request.interface, moa: request.moa) {
                request.ticket.finish(RebindReport(error: error))
                continue
            }
            announceEvenIfUnchanged = true
            registrations.resume(at: now)
            followUplinks(now: now)
            guard !addresses.mobileAddresses.isEmpty else {
                request.ticket.finish(RebindReport(error: "no uplink has an address to use as MoA"))
                continue
            }
            // The round: what was sent this turn and what the queue sends in the next ones.
            let round = signaling.awaiting.union(alerts.hoas)
            rebinds.append(PendingRebind(ticket: request.ticket, round: round, startedAt: now))
        }
    }

    /// Pins the MoA `matctl rebind` asked for; returns an error message when it cannot.
    private func choose(interface: String?, moa: IPAddress?) -> String? {
        var candidates = host.uplinkAddresses()
        if let interface {
            guard config.uplinks.contains(interface) else {
                return "\(interface) is not an uplink (uplinks: \(config.uplinks.joined(separator: ", ")))"
            }
            candidates = host.uplinkAddresses(only: interface)
            guard !candidates.isEmpty else { return "\(interface) has no usable address" }
        }
        if let moa {
            guard candidates.contains(moa) else {
                return "\(moa) is not an address of \(interface ?? "any uplink") (found: \(candidates.map(\.description).joined(separator: ", ")))"
            }
            pinnedMoAs = [moa]
        } else {
            pinnedMoAs = interface == nil ? [] : candidates
        }
        return nil
    }

    /// Reports the rebinds whose round has settled. Returns whether one has more settled
    /// peers to count than a turn looks at (``PendingRebind/lookedAtPerTurn``): the next
    /// turn is to come at once.
    @discardableResult
    func finishRebinds(now: UInt64) -> Bool {
        // While alerts wait in the queue no rebind is done, and its round is not looked at
        // on every turn that sends 256 of them.
        guard !rebinds.isEmpty, alerts.isEmpty else { return false }
        let registering = !registrations.inFlight.isEmpty
        rebinds.removeAll { pending in
            guard pending.isDone(alertsWaiting: alerts.count, registering: registering, isAwaiting: signaling.isAwaiting) else {
                return false
            }
            let acknowledged = pending.round.filter { settlements[$0] == true }
            pending.ticket.finish(RebindReport(
                mobileAddresses: addresses.mobileAddresses.map(\.description),
                registered: registrations.schedules.isEmpty ? nil : registrations.isRegistered,
                alerted: pending.round.count,
                acknowledged: acknowledged.map(\.description).sorted(),
                unanswered: pending.round.subtracting(acknowledged).map(\.description).sorted(),
                milliseconds: now - pending.startedAt))
            return true
        }
        return rebinds.contains { $0.hasMoreToCount }
    }
}

/// A `matctl rebind` on its way to the service thread.
struct RebindRequest {
    var interface: String?
    var moa: IPAddress?
    var ticket: RebindTicket
}

/// A `matctl rebind` waiting for its peers.
final class PendingRebind {
    let ticket: RebindTicket
    /// Every peer the rebind's move alerts (or was still alerting before it).
    let round: Set<IPAddress>
    let startedAt: UInt64
    /// The round in a fixed order, and how many of it, from the front, were found settled
    /// (alerted and no longer awaiting their acknowledgement): each turn looks from there
    /// on and stops at the first still awaited, so a rebind's wait costs a turn what
    /// settled since the last (issue 9), where comparing the round with the outstanding
    /// set built that set, O(outstanding), on every turn.
    private let order: [IPAddress]
    private var settled = 0
    /// How many peers the last ``isDone(alertsWaiting:registering:isAwaiting:)`` asked about.
    private(set) var lastExamined = 0
    /// Whether the last ``isDone(alertsWaiting:registering:isAwaiting:)`` stopped at
    /// ``lookedAtPerTurn`` with settled peers perhaps left to count: the next turn comes at once.
    private(set) var hasMoreToCount = false
    /// Most peers a turn asks about: when the peer at the front was the last to settle,
    /// the whole round is counted in slices of this.
    static let lookedAtPerTurn = 4_096

    init(ticket: RebindTicket, round: Set<IPAddress>, startedAt: UInt64) {
        self.ticket = ticket
        self.round = round
        self.startedAt = startedAt
        order = Array(round)
    }

    /// Done when the whole round has gone out (no alert waits in the queue), every peer in
    /// it has answered or will not (none `isAwaiting`), and the IMS has answered. A peer
    /// found settled once, after the round went out, counts as settled for this rebind
    /// (another move's alert to it is another round's).
    func isDone(alertsWaiting: Int, registering: Bool, isAwaiting: (IPAddress) -> Bool) -> Bool {
        lastExamined = 0
        hasMoreToCount = false
        guard alertsWaiting == 0 else { return false }
        while settled < order.count {
            guard lastExamined < Self.lookedAtPerTurn else {
                hasMoreToCount = true
                break
            }
            lastExamined += 1
            guard !isAwaiting(order[settled]) else { break }
            settled += 1
        }
        return !registering && settled == order.count
    }
}

/// Where the service thread leaves a rebind's report for the control thread.
final class RebindTicket: Sendable {
    let done = DispatchSemaphore(value: 0)
    let report = Mutex<RebindReport?>(nil)

    func finish(_ result: RebindReport) {
        report.withLock { $0 = result }
        done.signal()
    }
}

// MARK: what the signaling asks of the service

extension MappingService: SignalingHost {
    /// The HoAs and the MoAs announced (public ones behind NAT): what alerts carry.
    var nodeAddresses: NodeAddresses {
        var announced = publicState.announced
        (announced.home4, announced.home6) = (addresses.home4, addresses.home6)
        return announced
    }

    func verifyingKey(for hoa: IPAddress, mayLookUp: () -> Bool) -> KeyAnswer {
        if let key = peerKeys[hoa] { return .known(key) }
        // Unknown senders cost an IMS query each: only HoAs of the domain, at most one
        // query per HoA every few seconds.
        guard client != nil, config.domainPrefixes.contains(where: { $0.contains(hoa) }) else { return .unknown }
        if lookingUp.contains(PendingLookup(hoa: hoa, purpose: .key)) { return .lookingUp }
        let now = Self.milliseconds()
        guard keyLookups.allows(hoa, now: now), mayLookUp() else { return .unknown }
        keyLookups.record(hoa, now: now)
        lookUp(hoa, for: .key)
        return .lookingUp
    }

    func currentMoAs(of hoa: IPAddress) -> [IPAddress] {
        // A mapping on trial is not yet where the peer is known to be.
        if let trial = provisional[hoa] { return trial.previous?.moas.map(\.address) ?? [] }
        if let entry = learned[hoa] { return entry.mapping.moas.map(\.address) }
        return config.peers.first { $0.homeAddress == hoa }?.mobileAddresses ?? []
    }

    func tryOut(hoa: IPAddress, moas: [IPAddress], unproven: [IPAddress], sequence: UInt64, updateBytes: UInt64) {
        // A second trial before the first was decided goes back, if it fails, to the mapping
        // that was proven, not to the first trial's.
        let previous = provisional[hoa].map(\.previous)
            ?? learned[hoa]?.mapping ?? config.peers.first { $0.homeAddress == hoa }?.mapping
        // A signed update supersedes what the IMS said: its trial is over.
        endTrial(of: hoa)
        for moa in unproven { engine.send(.limitUntilValidated(moa, received: updateBytes)) }
        provisional[hoa] = (sequence, previous)
        // The MoAs in use until now stay in the trial, last and least preferred, so the
        // peer's packets still on their way from there are translated, not dropped as
        // from an unknown peer: the alert overtakes them when the engine is behind on its
        // queue (about a thousand packets a move at 50 ms RTT under a bulk flow). The
        // challenge's answer or failure ends the trial and with it the old MoAs.
        let current = learned[hoa]?.mapping ?? config.peers.first { $0.homeAddress == hoa }?.mapping
        let stragglers = (current?.moas.map(\.address) ?? []).filter { !moas.contains($0) }
        let bindings = moas.enumerated().map { MoABinding(address: $0.element, priority: UInt8(clamping: $0.offset)) }
            + stragglers.prefix(max(0, MappingTable.maximumMoAsPerMapping - moas.count))
                .map { MoABinding(address: $0, priority: .max) }
        let changed = install(PeerMapping(hoa: hoa, moas: bindings, sequence: sequence),
                              expiresAt: Self.milliseconds() + MappingRefresh.whileChallenged,
                              reason: "\(hoa) -> \(moas.map(\.description).joined(separator: ", ")) seq \(sequence) (alert, MoA being checked)")
        if changed { updateDiversion() }
    }

    func challengeFailed(hoa: IPAddress, sequence: UInt64) {
        guard let trial = provisional[hoa], trial.sequence == sequence else { return }
        provisional[hoa] = nil
        for moa in learned[hoa]?.mapping.moas.map(\.address) ?? [] { engine.send(.endLimit(moa, validated: false)) }
        log("matd: \(hoa) did not answer at its announced MoA (seq \(sequence)); back to its previous mapping")
        // The table keeps the newest sequence: the older mapping goes in after a removal.
        engine.send(.removeMapping(hoa))
        if config.peers.contains(where: { $0.homeAddress == hoa }), let previous = trial.previous {
            learned[hoa] = nil
            publishedPeers.withLock { $0[hoa] = .configured }
            engine.send(.replaceMapping(previous))
        } else if let previous = trial.previous {
            learned[hoa] = (previous, Self.milliseconds() + MappingRefresh.soon)
            engine.send(.replaceMapping(previous))
            mappingRestored(previous)
        } else {
            forget(hoa)
        }
        stateDirty = true
        updateDiversion()
    }

    func peerIsAlive(hoa: IPAddress) {
        endHold(hoa, .signOfLife, now: Self.milliseconds())
    }

    func adopt(hoa: IPAddress, moas: [IPAddress], lifetime: UInt32, sequence: UInt64) {
        if provisional[hoa]?.sequence == sequence { provisional[hoa] = nil }
        for moa in moas { engine.send(.endLimit(moa, validated: true)) }
        // A claim settled here means the table refused the trial: put the mapping in anew.
        if settleClaims(to: moas, provenBy: hoa) { learned[hoa] = nil }
        lifetimes.renewed(hoa, sequence: sequence, lifetime: lifetime, now: Self.milliseconds())
        let changed = install(PeerMapping(hoa: hoa, ranked: moas, flags: [.confirmed, .reachable], sequence: sequence),
                              expiresAt: MappingRefresh.afterAlert(lifetime: lifetime, recordTTL: config.ims?.recordTTL,
                                                                   now: Self.milliseconds()),
                              reason: "\(hoa) -> \(moas.map(\.description).joined(separator: ", ")) seq \(sequence) (alert, MoA answered)")
        if changed { updateDiversion() }
    }

    func settled(hoa: IPAddress, acknowledged: Bool) {
        settlements[hoa] = acknowledged
        endHold(hoa, acknowledged ? .acknowledged : .unanswered, now: Self.milliseconds())
        // A learned peer that answers neither its alerts nor, through the IMS, from a new
        // MoA is gone: its mapping goes, so its traffic is not sent into a hole; the next
        // packet for it asks the IMS afresh. A configured peer stays as configured.
        guard !acknowledged, learned[hoa] != nil, !config.peers.contains(where: { $0.homeAddress == hoa }) else { return }
        signaling.peerDropped(logging: "matd: dropping peer \(hoa): it answered none of its alerts and the IMS knows no other MoA for it")
        forget(hoa)
        updateDiversion()
    }

    func lookUpAgain(hoa: IPAddress) -> Bool {
        guard client != nil else { return false }
        lookUp(hoa, for: .again)
        return true
    }
}
