import MATLinux
import MATLog
import MATPacket
import MATSignaling
import Synchronization

/// The service thread's side of the UDP encapsulation: the ``EncapPolicy``, the sockets it
/// sends probe requests from (ephemeral ports, so the probe answer, sent to the
/// encapsulation port, is something this node's NAT has not seen), and the answers the
/// engine passes back.
final class EncapControl: @unchecked Sendable {
    // @unchecked: `policy` is touched by the service thread only; `answers` and the others shared are Mutexes.
    var policy: EncapPolicy
    let probeSockets: [AddressFamily: DatagramSocket]
    let answers = Mutex<[(IPAddress, [UInt8])]>([])
    /// Signaling messages that came through the relay, with the origin it stamped
    /// (``MappingService/relayedSignal(from:_:)``).
    let relayedSignals = Mutex<[(IPAddress, [UInt8])]>([])
    /// HoAs the relay's engine has no key for (``MappingService/relayKeyWanted(_:)``), and
    /// the bound on looking them up.
    let relayKeyMisses = Mutex<[IPAddress]>([])
    var relayKeyLookups = RelayKeyLookups() {
        didSet { relayKeyLookupCounts.withLock { $0 = (relayKeyLookups.started, relayKeyLookups.overBudget) } }
    }
    /// ``RelayKeyLookups``'s lookups started and refused for budget, for `matctl stats`.
    let relayKeyLookupCounts = Mutex<(started: UInt64, overBudget: UInt64)>((0, 0))
    /// When lookups over their bound were last warned about (one warning per 10 s).
    var relayKeyWarnedAt: UInt64?
    /// The peers whose IMS record names this node's relay: their traffic goes through it
    /// as soon as it goes in UDP.
    var relayedHoAs: Set<IPAddress> = []
    /// The `[peer]`s whose section names this node's relay, as last applied
    /// (``MappingService/followConfiguredRelays()``).
    var configuredRelayPeers: Set<IPAddress> = []

    /// Whether `moa`'s traffic in UDP goes through the relay at once: some peer at `moa`
    /// (several nodes behind one NAT share it) has an IMS record naming this node's relay.
    static func relaysAtOnce(_ moa: IPAddress, peers: [(hoa: IPAddress, moa: IPAddress)],
                             relayedHoAs: Set<IPAddress>) -> Bool {
        !relayedHoAs.isEmpty && peers.contains { $0.moa == moa && relayedHoAs.contains($0.hoa) }
    }

    init(_ config: NodeConfig) throws(SystemError) {
        policy = EncapPolicy(setting: config.udpEncapsulation, keepaliveInterval: config.encapKeepalive * 1_000,
                             reprobeInterval: config.encapReprobe * 1_000)
        var sockets: [AddressFamily: DatagramSocket] = [:]
        for family in Set(config.homeAddresses.map(\.family)) { sockets[family] = try DatagramSocket(family: family, port: 0) }
        probeSockets = sockets
    }
}

extension MappingService {
    /// Called by the engine thread with a probe answer's source and nonce.
    public func probeAnswered(from moa: IPAddress, nonce: [UInt8]) {
        guard let control = encapControl else { return }
        let added = control.answers.withLock { queue -> Bool in
            guard queue.count < 64 else { return false }
            queue.append((moa, nonce))
            return true
        }
        if added { wakeup.signal() }
    }

    /// Peers of ``SettledMoAs`` looked at in one turn: a start with 100,000 restored
    /// mappings notes every one of them.
    static let encapSlice = 2_048

    /// Decides, for the peers whose alerts are settled, whether their traffic goes in UDP,
    /// and carries out what is due. Returns when it next has something to do. A turn
    /// costs a slice of the peers that changed (``SettledMoAs``), a slice of a restart
    /// after a change of behind-NAT (``EncapPolicy/restart(behindNAT:now:)``) and the peers
    /// due (``EncapPolicy``), plus the configured peers: bounded, whatever the table.
    func tickEncap(now: UInt64) -> UInt64? {
        // Taken whatever happens, so they do not pile up while nothing tracks them.
        var changed = learned.takeFirstMoAChanges()
        changed.formUnion(signaling.takeAwaitingChanges())
        guard let control = encapControl, let encap = engine.encap else { return nil }
        if control.policy.setting != .off {
            let configured = configuredMoAs
            changed.formUnion(configured.keys)
            encapSettled.note(changed)
            control.policy.reserveCapacity(more: encapSettled.pendingCount)
            let (appeared, vanished) = encapSettled.update(encapSettled.nextSlice(Self.encapSlice).lazy.map { hoa in
                (hoa: hoa, moa: self.signaling.isAwaiting(hoa) ? nil : self.activeMoA(hoa, configured: configured))
            })
            // Not while the IMS is being asked: the answer may well be "no NAT".
            let behindNAT = publicState.asking.isEmpty && publicState.announced.mobileAddresses != addresses.mobileAddresses
            if behindNAT != control.policy.behindNAT {
                run(control.policy.restart(behindNAT: behindNAT, now: now), control: control, encap: encap)
            }
            if !appeared.isEmpty || !vanished.isEmpty {
                run(control.policy.follow(appeared: appeared, vanished: vanished, now: now), control: control, encap: encap)
            }
        }
        for (moa, nonce) in control.answers.withLock({ queue in defer { queue.removeAll() }; return queue }) {
            run(control.policy.probeAnswered(from: moa, nonce: nonce, now: now), control: control, encap: encap)
        }
        run(control.policy.tick(now: now), control: control, encap: encap)
        // What went in or out of UDP since the last tick, not a comparison of every MoA in it.
        let encapsulated = engine.takeEncapsulatedMoAChanges()
        if encapsulated.count > 0 { engine.expireEncapEndpoints() }
        if encapsulated.apply(to: &host.encapsulatedMoAs) { updateDiversion() }
        // The next slice of changed peers in the next turn.
        return encapSettled.hasPending ? now : control.policy.nextDeadline
    }

    /// The configured peers' MoAs (the first of each), by HoA.
    private var configuredMoAs: [IPAddress: IPAddress] {
        var moas: [IPAddress: IPAddress] = [:]
        for peer in config.peers { moas[peer.homeAddress] = peer.mobileAddresses.first }
        return moas
    }

    /// The MoA `hoa`'s traffic goes to, as ``activePeers()`` says, without building it: the
    /// learned mapping's first, else the configured peer's.
    private func activeMoA(_ hoa: IPAddress, configured: [IPAddress: IPAddress]) -> IPAddress? {
        if let entry = learned[hoa] { return entry.mapping.moas.first?.address }
        return configured[hoa]
    }

    private func run(_ actions: [EncapPolicy.Action], control: EncapControl, encap: EncapPath) {
        for action in actions {
            switch action {
            case .sendProbe(let moa, let nonce):
                do {
                    try control.probeSockets[moa.family]?.send(EncapWire.control(.probeRequest, nonce: nonce),
                                                                to: moa, port: config.encapPort)
                } catch {
                    log(.warning, "matd: probe request to \(moa): \(error)")
                }
            case .startEncap(let moa):
                log("matd: \(moa) did not answer the probe through this node's NAT: its traffic goes in UDP "
                    + "(port \(config.encapPort)) now")
                EventLog.shared.post("encapsulation", ["peer": "\(moa)", "mode": "udp"])
                engine.encapsulate(.start(moa, port: config.encapPort))
                // Some peer at `moa` whose IMS record names this node's relay (as
                // ``EncapControl/relaysAtOnce(_:peers:relayedHoAs:)``, without a walk).
                let configured = control.relayedHoAs.isEmpty ? [:] : configuredMoAs
                if control.relayedHoAs.contains(where: { activeMoA($0, configured: configured) == moa }) {
                    engine.encapsulate(.relayAtOnce(moa, true))
                }
                host.encapsulatedMoAs.insert(moa)
                updateDiversion()
            case .stopEncap(let moa):
                log("matd: traffic to \(moa) goes direct again")
                EventLog.shared.post("encapsulation", ["peer": "\(moa)", "mode": "direct"])
                engine.encapsulate(.stop(moa))
            case .keepalive(let moa):
                do {
                    try encap.sendControl(EncapWire.control(.keepalive), to: moa, port: config.encapPort)
                } catch {
                    log(.warning, "matd: keepalive to \(moa): \(error)")
                }
                // The signaling port's binding too: the peer's next alert (it moved) comes
                // back through it, however long this node has been silent.
                signaling.sendKeepalive(to: moa)
            }
        }
    }
}
