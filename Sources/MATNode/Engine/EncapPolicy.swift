import MATPacket

/// `udp-encapsulation` (docs/config.md): when traffic to a peer goes in UDP instead of as
/// translated packets.
public enum EncapSetting: String, Sendable, Equatable {
    /// Encapsulate only to peers the reachability probe shows the path does not carry
    /// unsolicited packets for (a port-restricted NAT in front of this node).
    case auto
    /// Never: translated packets only.
    case off
    /// To every peer, whatever the path (for measurements and for networks known to need it).
    case always
}

/// When this node sends a peer's traffic in UDP rather than as translated packets, and
/// back (docs/datapath.md, "Behind NAT"). Pure: the caller passes the time (monotonic
/// milliseconds) and carries out the actions.
///
/// Behind NAT (the node's announced MoA is not its local one) each peer is probed: the
/// node asks the peer, from a socket of its own, to send a probe answer to the node's
/// encapsulation port, which the node's NAT has seen nothing for. A 1:1 NAT forwards it
/// (translated packets get through too: direct, zero overhead); a port-restricted NAT
/// (masquerade) drops it, and after `probes` unanswered requests the peer's traffic goes
/// in UDP, with a keepalive every `keepaliveInterval` to hold the NAT's binding. Every
/// `reprobeInterval` the probe is tried again, and an answer goes back to direct.
///
/// Each peer with something to do waits in a ``DueQueue`` at its next deadline, so a tick
/// costs the due peers only, not a walk over all of them (100,000 learned peers behind
/// NAT), and the service feeds it the MoAs that appeared and vanished
/// (``follow(appeared:vanished:now:)``) rather than the whole set each turn.
public struct EncapPolicy: Sendable {
    public enum Mode: String, Sendable, Equatable {
        case direct, probing
        case encapsulated = "udp-encap"
    }

    public enum Action: Sendable, Equatable {
        case sendProbe(IPAddress, nonce: [UInt8])
        case startEncap(IPAddress)
        case stopEncap(IPAddress)
        /// Hold this node's NAT bindings towards the peer open: the encapsulation
        /// port's (the peer's traffic in UDP) and the signaling port's (its alerts).
        case keepalive(IPAddress)
    }

    struct Peer {
        var mode: Mode
        var nonce: [UInt8] = []
        var probesSent = 0
        var nextProbeAt: UInt64 = 0
        var nextKeepaliveAt: UInt64 = 0
    }

    public let setting: EncapSetting
    public let probeInterval: UInt64
    public let probes: Int
    public let keepaliveInterval: UInt64
    public let reprobeInterval: UInt64
    private let makeNonce: @Sendable () -> [UInt8]
    private var peers: [IPAddress: Peer] = [:]
    /// The peers in ``Mode/probing`` or ``Mode/encapsulated``, at their next deadline.
    private var due = DueQueue<IPAddress>()
    /// Whether this node was behind NAT at the last ``track(_:behindNAT:now:)`` or
    /// ``restart(behindNAT:now:)``.
    public private(set) var behindNAT = false
    /// With `auto`, the peers decided for before the last change of ``behindNAT``, decided
    /// for again a slice per ``tick(now:)`` from `restartCursor` (the batch is never
    /// changed meanwhile, so the index stays valid); a MoA decided for since (it vanished
    /// and came back) is skipped, as is one that vanished (in `restartGone`).
    private var restartBatch: [IPAddress: Peer] = [:]
    private var restartCursor: Dictionary<IPAddress, Peer>.Index
    private var restartGone: Set<IPAddress> = []
    /// Peers of a restart decided for again in one ``tick(now:)``.
    public let restartSlice: Int

    public init(setting: EncapSetting, probeInterval: UInt64 = 1_000, probes: Int = 3,
                keepaliveInterval: UInt64 = 15_000, reprobeInterval: UInt64 = 60_000, restartSlice: Int = 2_048,
                makeNonce: @escaping @Sendable () -> [UInt8] = { (0..<16).map { _ in UInt8.random(in: 0...255) } }) {
        self.restartSlice = max(1, restartSlice)
        self.setting = setting
        self.probeInterval = probeInterval
        self.probes = probes
        self.keepaliveInterval = keepaliveInterval
        self.reprobeInterval = reprobeInterval
        self.makeNonce = makeNonce
        restartCursor = restartBatch.endIndex
    }

    /// Room for `count` more tracked MoAs at once, so a large number of them coming in
    /// slices does not make one slice pay for growing the table.
    public mutating func reserveCapacity(more count: Int) { peers.reserveCapacity(peers.count + count) }

    /// Whether a restart after a change of behind-NAT still has peers to decide for.
    public var isRestarting: Bool { restartCursor != restartBatch.endIndex }

    /// The mode for traffic to `moa`; nil for a MoA not tracked.
    public func mode(of moa: IPAddress) -> Mode? {
        if let peer = peers[moa] { return peer.mode }
        guard isRestarting, !restartGone.contains(moa), let index = restartBatch.index(forKey: moa),
              index >= restartCursor else { return nil }
        return restartBatch[index].value.mode
    }

    /// The peers' MoAs traffic goes to now, and whether this node is behind NAT: new MoAs
    /// are decided for, MoAs gone are forgotten, and a change of `behindNAT` starts over.
    /// O(tracked), all in one call: the service follows the MoAs' changes
    /// (``follow(appeared:vanished:now:)``) and a change of `behindNAT` in slices
    /// (``restart(behindNAT:now:)``) instead.
    public mutating func track(_ moas: Set<IPAddress>, behindNAT: Bool, now: UInt64) -> [Action] {
        var actions: [Action] = []
        // The rest of a sliced restart first: every tracked MoA is in `peers` for the walk.
        while isRestarting { actions += continueRestart(now: now) }
        let restart = behindNAT != self.behindNAT
        self.behindNAT = behindNAT
        for (moa, peer) in peers where !moas.contains(moa) || restart {
            if peer.mode == .encapsulated && (!moas.contains(moa) || setting != .always) { actions.append(.stopEncap(moa)) }
            if !moas.contains(moa) || setting != .always { forget(moa) }
        }
        return actions + add(moas.filter { peers[$0] == nil }, now: now)
    }

    /// The tracked MoAs changed by these, `behindNAT` as before: O(changes).
    public mutating func follow(appeared: some Sequence<IPAddress>, vanished: some Sequence<IPAddress>, now: UInt64) -> [Action] {
        var actions: [Action] = []
        for moa in vanished {
            if mode(of: moa) == .encapsulated { actions.append(.stopEncap(moa)) }
            if isRestarting && restartBatch[moa] != nil { restartGone.insert(moa) }
            forget(moa)
        }
        return actions + add(appeared.filter { peers[$0] == nil }, now: now)
    }

    /// This node went behind NAT or out (`behindNAT`), the tracked MoAs as they are: as
    /// ``track(_:behindNAT:now:)`` with the same MoAs, but O(1) here and each peer decided
    /// for again in the slices of the next ticks (``restartSlice`` a tick): with `auto`,
    /// probed behind NAT or direct out of it, its traffic in UDP stopped first. Nothing
    /// changes for `always` and `off`. A restart still running when `behindNAT` changes again
    /// takes its peers not yet decided for along: O(those).
    public mutating func restart(behindNAT: Bool, now: UInt64) -> [Action] {
        guard behindNAT != self.behindNAT else { return [] }
        self.behindNAT = behindNAT
        guard setting == .auto else { return [] }
        var batch = peers
        if isRestarting {
            for (moa, peer) in restartBatch[restartCursor...] where batch[moa] == nil && !restartGone.contains(moa) {
                batch[moa] = peer
            }
        }
        peers = Dictionary(minimumCapacity: batch.count)
        due.removeAll()
        restartBatch = batch
        restartCursor = restartBatch.startIndex
        restartGone = []
        return []
    }

    /// Decides again for the next slice of a restart's peers.
    private mutating func continueRestart(now: UInt64) -> [Action] {
        var actions: [Action] = [], again: [IPAddress] = []
        while again.count < restartSlice && restartCursor != restartBatch.endIndex {
            let (moa, peer) = restartBatch[restartCursor]
            restartCursor = restartBatch.index(after: restartCursor)
            guard peers[moa] == nil, !restartGone.contains(moa) else { continue }
            if peer.mode == .encapsulated { actions.append(.stopEncap(moa)) }
            again.append(moa)
        }
        if !isRestarting {
            restartBatch = [:]
            restartCursor = restartBatch.endIndex
            restartGone = []
        }
        return actions + add(again, now: now)
    }

    private mutating func add(_ moas: some Sequence<IPAddress>, now: UInt64) -> [Action] {
        var actions: [Action] = []
        // In the order of their text where they get probes or keepalives (as it always
        // was); unordered where nothing is sent, which is most peers' lot: a node's first
        // turn adds every restored peer, and sorting 100,000 by text took seconds.
        let sends = setting == .always || (setting == .auto && behindNAT)
        for moa in sends ? moas.sorted(by: { $0.description < $1.description }) : Array(moas) {
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
            reschedule(moa)
        }
        return actions
    }

    private mutating func forget(_ moa: IPAddress) {
        peers[moa] = nil
        due.remove(moa)
    }

    /// Puts `moa` in ``due`` at its next deadline, or takes it out when it has none.
    private mutating func reschedule(_ moa: IPAddress) {
        if let at = peers[moa].flatMap(deadline) { due.schedule(moa, at: at) } else { due.remove(moa) }
    }

    private func deadline(_ peer: Peer) -> UInt64? {
        switch peer.mode {
        case .direct: nil
        case .probing: peer.nextProbeAt
        case .encapsulated: setting == .auto ? min(peer.nextKeepaliveAt, peer.nextProbeAt) : peer.nextKeepaliveAt
        }
    }

    /// A probe answer from `moa`: the path carries unsolicited packets, so direct.
    /// Answers with another nonce (old, or forged) change nothing.
    public mutating func probeAnswered(from moa: IPAddress, nonce: [UInt8], now: UInt64) -> [Action] {
        guard var peer = peers[moa], !peer.nonce.isEmpty, peer.nonce == nonce, setting == .auto else { return [] }
        let was = peer.mode
        peer = Peer(mode: .direct)
        peers[moa] = peer
        reschedule(moa)
        return was == .encapsulated ? [.stopEncap(moa)] : []
    }

    /// Probes, the fallback and keepalives that are due at `now`, and the next slice of a
    /// restart (``restart(behindNAT:now:)``).
    public mutating func tick(now: UInt64) -> [Action] {
        var actions: [Action] = isRestarting ? continueRestart(now: now) : []
        for moa in due.takeDue(now: now).sorted(by: { $0.description < $1.description }) {
            defer { reschedule(moa) }
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

    /// The earliest time `tick` has something to do; nil when nothing is pending, 0 (at
    /// once) while a restart has peers left.
    public var nextDeadline: UInt64? { isRestarting ? 0 : due.nextDeadline }

    private mutating func probe(_ moa: IPAddress, now: UInt64) -> [Action] {
        let nonce = makeNonce()
        peers[moa]?.nonce = nonce
        peers[moa]?.probesSent += 1
        peers[moa]?.nextProbeAt = now + probeInterval
        return [.sendProbe(moa, nonce: nonce)]
    }
}

/// The other side: where this node sends a peer's traffic in UDP, learned from the
/// datagrams that peer sends (its NAT's binding, whatever port it chose), and forgotten
/// `lifetime` ms after the last one (the peer went back to direct, or away). Pure.
///
/// The learned endpoints wait in a ``DueQueue`` at the end of their lifetime as it was when
/// they were put there (a datagram does not move them: that would be heap work per
/// packet); one that comes up heard since goes back at its new end. So an expiry costs the
/// endpoints that came up, not a walk over every one.
public struct EncapEndpoints: Sendable {
    public let lifetime: UInt64
    private var ports: [IPAddress: (port: UInt16, lastSeen: UInt64, commanded: Bool)] = [:]
    private var expiries = DueQueue<IPAddress>()
    /// The MoAs traffic goes to in UDP now, kept with `ports`. Never published by reference:
    /// a copy held elsewhere would make the next change copy every one (copy on write).
    public private(set) var moas: Set<IPAddress> = []
    /// The MoAs that went into `moas` or out of it since the last ``takeChanges()``: what
    /// the engine tells the kernel fast path and the service, instead of comparing sets of
    /// every MoA in UDP (issue 9).
    public private(set) var changed: Set<IPAddress> = []

    public init(lifetime: UInt64 = 60_000) { self.lifetime = lifetime }

    public var isEmpty: Bool { ports.isEmpty }

    /// The port to send `moa`'s traffic to in UDP, or nil: direct.
    @inlinable
    public func port(for moa: IPAddress) -> UInt16? { lookup(moa) }

    @usableFromInline
    func lookup(_ moa: IPAddress) -> UInt16? { ports[moa]?.port }

    /// A datagram came from `moa`:`port`: send there from now on.
    public mutating func heard(_ moa: IPAddress, port: UInt16, now: UInt64) {
        let old = ports.updateValue((port, now, ports[moa]?.commanded ?? false), forKey: moa)
        guard old == nil else { return }
        moas.insert(moa)
        changed.insert(moa)
        expiries.schedule(moa, at: now + lifetime)
    }

    /// This node decided to encapsulate to `moa` at `port` (its own policy): kept until stopped.
    public mutating func start(_ moa: IPAddress, port: UInt16, now: UInt64) {
        if ports.updateValue((ports[moa]?.port ?? port, now, true), forKey: moa) == nil {
            moas.insert(moa)
            changed.insert(moa)
        }
        expiries.remove(moa)
    }

    public mutating func stop(_ moa: IPAddress) {
        guard ports.removeValue(forKey: moa) != nil else { return }
        moas.remove(moa)
        changed.insert(moa)
        expiries.remove(moa)
    }

    /// Forgets learned endpoints not heard from for `lifetime`; returns them.
    public mutating func expire(now: UInt64) -> [IPAddress] {
        var gone: [IPAddress] = []
        for moa in expiries.takeDue(now: now) {
            guard let entry = ports[moa], !entry.commanded else { continue }
            if now >= entry.lastSeen + lifetime {
                ports[moa] = nil
                moas.remove(moa)
                changed.insert(moa)
                gone.append(moa)
            } else {
                expiries.schedule(moa, at: entry.lastSeen + lifetime)
            }
        }
        return gone
    }

    /// The MoAs that went in or out since the last call (one that went in and out again is
    /// there too: whoever follows looks up where it is now); O(them).
    public mutating func takeChanges() -> Set<IPAddress> {
        guard !changed.isEmpty else { return [] }
        defer { changed = [] }
        return changed
    }
}

/// What the engine tells the service of the MoAs in UDP: how many there are, and for each
/// that went in or out since the service last took them, whether its traffic goes in UDP
/// now. The service keeps its own set and applies these (``apply(to:)``), so neither side
/// holds the other's set nor compares two of them (issue 9). Pure.
public struct EncapMoAChanges: Sendable, Equatable {
    /// The MoAs whose traffic goes in UDP now.
    public var count = 0
    /// Each changed MoA and whether it is in UDP now; the latest change of a MoA wins.
    public var changed: [IPAddress: Bool] = [:]

    public init() {}

    /// Notes `moas` (changed, ``EncapEndpoints/takeChanges()``) as they are in `endpoints` now.
    public mutating func note(_ moas: Set<IPAddress>, in endpoints: EncapEndpoints) {
        count = endpoints.moas.count
        for moa in moas { changed[moa] = endpoints.moas.contains(moa) }
    }

    /// Takes what was noted: the count stays, the changes go to the caller.
    public mutating func take() -> EncapMoAChanges {
        let taken = self
        changed = [:]
        return taken
    }

    /// Puts the changes into `moas`; O(changes). True when `moas` changed.
    @discardableResult
    public func apply(to moas: inout Set<IPAddress>) -> Bool {
        var any = false
        for (moa, inUDP) in changed {
            any = (inUDP ? moas.insert(moa).inserted : moas.remove(moa) != nil) || any
        }
        return any
    }
}
