#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket
import Synchronization

/// What translates on the kernel fast path (`kernel-fast-path = on` or `bpf`).
public enum FastPathDatapath: String, Sendable, Equatable {
    /// nftables rules (docs/datapath.md, "Kernel fast path").
    case nftables
    /// tc/BPF programs attached with tcx, Linux 6.6 (docs/datapath.md, "The BPF datapath"),
    /// both families (``FastPathBPF`` and ``FastPathBPF6``).
    case bpf
}

/// The IPv4 half of the kernel fast path on the BPF datapath (docs/datapath.md, "The BPF
/// datapath"): ``KernelFastPath`` hands it the IPv4 part of every element delta it
/// computes from the engine's decisions, and this writes it into ``BPFDatapath``'s maps
/// (peer HoA -> MoA and next hop; MoA -> HoA), in the same call, so a peer the engine
/// holds is out of the maps before the engine reads another packet. Each peer's next hop
/// is the kernel's route for a packet from the own MoA to the peer's MoA arriving on the
/// TUN device (the MoA itself when on the link), looked up when the peer joins, and for
/// every peer again after a route change (``routesChanged()``).
///
/// The programs carry the node's own addresses in their code: a new HoA or MoA, or another
/// set of uplinks, detaches them and attaches new ones, and the maps are written again
/// from what this keeps. Engine thread only, except ``routesChanged()`` and
/// ``translated()``.
final class FastPathBPF: @unchecked Sendable {
    // @unchecked: the write state is the engine thread's; `current` (read by the control
    // thread for the counters) is behind a lock, the route flag atomic.

    /// What the programs are built for: the own addresses and the uplinks they run on inbound.
    struct Shape: Equatable {
        var home: IPv4Address
        var mobile: IPv4Address
        var inboundUplinks: [String]
    }

    private let tun: String
    private let localPorts: [UInt16]
    private let routes: RouteLookup
    private let neighbours: NextHopResolver
    private let tunIndex: Int32
    /// The datapath attached now (nil: none, the node has no IPv4 to translate), and the
    /// counts of the ones closed before it, for ``translated()``.
    private let current = Mutex<(datapath: BPFDatapath?, closed: (outbound: BPFSystem.Count, inbound: BPFSystem.Count))>(
        (nil, (BPFSystem.Count(), BPFSystem.Count())))
    private var shape: Shape?
    /// The IPv4 elements the fast path decided on (whether a datapath is attached or not):
    /// peer HoA -> its preferred MoA, MoA -> HoA; and the next hop written for each peer.
    private var outbound: [IPv4Address: IPv4Address] = [:]
    private var inbound: [IPv4Address: IPv4Address] = [:]
    private var hops: [IPv4Address: RouteLookup.Hop] = [:]
    /// Whether the inbound elements are in the map (not while the host's input chain would
    /// drop what the programs deliver: ``KernelFastPath/inboundFence``).
    private var inboundOn = true
    /// Whether a move holds the family (``FastPathGates``): the outbound map then has only
    /// the peers released from the hold (``admits(_:_:)``), each written at its
    /// release; the packets to the others go on to the engine, which holds them.
    private var held = false
    private let routesStale = Atomic<Bool>(false)
    /// Peers without a route to their MoA (left to the engine outbound): logged once.
    private var unroutedLogged = false

    /// Opens the route lookups; nothing is attached before ``prepare(_:inbound:gates:)``.
    init(tun: String, localPorts: [UInt16]) throws(SystemError) {
        self.tun = tun
        self.localPorts = localPorts
        routes = try RouteLookup()
        neighbours = try NextHopResolver()
        tunIndex = Int32(if_nametoindex(tun))
    }

    /// Whether programs are attached now.
    var attached: Bool { current.withLock { $0.datapath != nil } }

    /// The number of IPv4 peers in the outbound map.
    var peerCount: Int { outbound.count }

    /// Attaches programs for `shape` (nil: detaches them) unless they are attached for it
    /// already, and fills the new maps from what is kept; `inbound` says whether the MoA
    /// elements may be in the inbound map, `gates` which peers' outbound ones may be while
    /// a move holds IPv4. Throws when the kernel refuses (no tcx, a program the verifier
    /// rejects): nothing is attached then.
    func prepare(_ wanted: Shape?, inbound inboundWanted: Bool, gates: FastPathGates) throws(SystemError) {
        if wanted != shape || (wanted != nil && !attached) {
            detach()
            shape = wanted
            guard let wanted else { return }
            let datapath = try BPFDatapath(home: wanted.home, mobile: wanted.mobile, localPorts: localPorts, tun: tun,
                                           uplinks: wanted.inboundUplinks)
            current.withLock { state in
                state.datapath = datapath
                write(boundServices, on: datapath)
            }
            hops = [:]
            inboundOn = inboundWanted
            for (home, mobile) in outbound where admits(home, gates) { try writeOutbound(home, mobile, on: datapath) }
            if inboundOn {
                for (mobile, home) in inbound { try datapath.setInbound(mobile: mobile, home: home) }
            }
            return
        }
        guard let datapath = current.withLock({ $0.datapath }) else { return }
        if inboundWanted != inboundOn {
            inboundOn = inboundWanted
            for (mobile, home) in inbound {
                if inboundOn { try datapath.setInbound(mobile: mobile, home: home) } else { try datapath.removeInbound(mobile: mobile) }
            }
        }
        if routesStale.exchange(false, ordering: .acquiring) {
            for (home, mobile) in outbound where admits(home, gates) { try writeOutbound(home, mobile, on: datapath) }
        }
    }

    /// Makes the maps hold the IPv4 part of `delta` (its flush, deletions and additions),
    /// and the outbound map follow a move's hold of IPv4 (`gated`: the rules gate IPv4 after
    /// the batch; `changes`: what it did to the released peers; `gates`: those after it).
    func apply(_ delta: FastPathElements.Delta, gated nowHeld: Bool, gates: FastPathGates,
               changes: FastPathGates.Changes) throws(SystemError) {
        let change = changes.hold(.ipv4, wasHeld: held, gated: nowHeld)
        if change == .began {
            // No peer is released yet: ``prepare(_:inbound:gates:)`` builds the programs
            // again at once (for the new MoA when the move brought one) with the inbound
            // elements and no outbound one, at the cost of one write per peer, as a
            // deletion per peer would cost.
            detach()
            shape = nil
            held = true
        }
        let holdEnded = change == .ended
        if holdEnded { held = false }
        let datapath = current.withLock { $0.datapath }
        if delta.flushed.contains(.ipv4) {
            for home in outbound.keys { try datapath?.removeOutbound(home: home) }
            for mobile in inbound.keys where inboundOn { try datapath?.removeInbound(mobile: mobile) }
            outbound = [:]
            inbound = [:]
            hops = [:]
        }
        for element in delta.outDeleted {
            guard case .v4(let home) = element.key else { continue }
            outbound[home] = nil
            hops[home] = nil
            try datapath?.removeOutbound(home: home)
            try datapath?.forgetHeard(home: home)
        }
        for element in delta.inDeleted {
            guard case .v4(let mobile) = element.key else { continue }
            inbound[mobile] = nil
            if inboundOn { try datapath?.removeInbound(mobile: mobile) }
        }
        for element in delta.outAdded {
            guard case .v4(let home) = element.key, case .v4(let mobile) = element.value else { continue }
            outbound[home] = mobile
            if let datapath, admits(home, gates) { try writeOutbound(home, mobile, on: datapath) }
        }
        for element in delta.inAdded {
            guard case .v4(let mobile) = element.key, case .v4(let home) = element.value else { continue }
            inbound[mobile] = home
            if inboundOn { try datapath?.setInbound(mobile: mobile, home: home) }
        }
        guard let datapath else { return }
        if holdEnded {
            // Once per hold: the peers still out of the map (the last released, and the
            // ones a route lookup left out) go in.
            for (home, mobile) in outbound where hops[home] == nil { try writeOutbound(home, mobile, on: datapath) }
        } else if held {
            // Each peer released from the hold is back on the programs at once: one write.
            for case .v4(let home) in changes.released {
                if let mobile = outbound[home] { try writeOutbound(home, mobile, on: datapath) }
            }
        }
    }

    /// Whether `home`'s outbound element belongs in the map: no hold, or released from it.
    private func admits(_ home: IPv4Address, _ gates: FastPathGates) -> Bool { !held || gates.open.contains(.v4(home)) }

    /// Looks up the next hop of `home`'s MoA and writes its outbound element if it
    /// changed; without a route (or one into the TUN device) the element goes, and the
    /// engine carries the peer's outbound packets.
    private func writeOutbound(_ home: IPv4Address, _ mobile: IPv4Address, on datapath: BPFDatapath) throws(SystemError) {
        guard let own = shape?.mobile else { return }
        let hop = try routes.forwardingHop(to: .v4(mobile), from: .v4(own), inputInterface: tunIndex)
        guard let hop, case .v4(let nextHop) = hop.nextHop, hop.device != tun, case let index = if_nametoindex(hop.device), index != 0 else {
            if !unroutedLogged {
                unroutedLogged = true
                log(.warning, "matd: BPF datapath: no route to peer MoA \(mobile) out of an uplink; the engine carries "
                    + "its outbound packets (logged once)")
            }
            hops[home] = nil
            try datapath.removeOutbound(home: home)
            return
        }
        guard hops[home] != hop else { return }
        hops[home] = hop
        neighbours.resolve(hop, interface: index)
        try datapath.setOutbound(home: home, mobile: mobile, nextHop: nextHop, interfaceIndex: index)
    }

    /// Has the next hops looked up again at the next update (any thread: netlink said the
    /// routes changed).
    func routesChanged() { routesStale.store(true, ordering: .releasing) }

    /// Forgets every element (the maps are to be written from scratch) and detaches.
    func reset() {
        detach()
        shape = nil
        outbound = [:]
        inbound = [:]
        hops = [:]
    }

    /// Detaches the programs (closing their links); their counts are kept.
    func detach() {
        current.withLock { state in
            guard let datapath = state.datapath else { return }
            do {
                let counts = try datapath.counted()
                state.closed.outbound = state.closed.outbound + counts.outbound
                state.closed.inbound = state.closed.inbound + counts.inbound
            } catch {
                // Only counts are lost: the datapath goes either way.
                log(.error, "matd: BPF datapath: reading its counters before detaching failed (\(error)); they restart from 0")
            }
            datapath.close()
            state.datapath = nil
        }
    }

    /// Heard map entries read per ``takeHeard()``. The mapping service calls it every 100 ms,
    /// so a round of 65,536 peers takes about 6.4 s, well inside an idle period (30 s), and
    /// a read holds `current`'s lock (which the engine thread takes at each update) for
    /// about a thousand lookups, not for a walk of every peer.
    static let heardPerRead = 1_024

    /// The peers whose packets the inbound program translated and were not reported yet at
    /// that time, from the next ``heardPerRead`` entries of the heard map, with when each
    /// last was at the latest (monotonic ms, as ``FastPathHeardReader/take()``), any thread.
    func takeHeard() throws(SystemError) -> [IPAddress: UInt64] {
        try current.withLock { state throws(SystemError) -> [IPAddress: UInt64] in
            guard let datapath = state.datapath else { return [:] }
            var heard: [IPAddress: UInt64] = [:]
            for (home, at) in rounds.take(try datapath.heard(limit: Self.heardPerRead), limit: Self.heardPerRead) {
                heard[.v4(home)] = at
            }
            return heard
        }
    }
    /// What the heard map was read to (under `current`'s lock).
    private var rounds = HeardRounds<IPv4Address>()

    /// The sockets bound to the own MoAs changed (any thread): the guard's service map of
    /// the datapath attached now, and of each attached later, holds those of IPv4.
    func servicesChanged(_ services: Set<PeerMoATraffic.BoundService>) {
        let wanted = Set(services.compactMap { service -> BPFDatapath.Service? in
            guard service.address.family == .ipv4 else { return nil }
            return BPFDatapath.Service(protocol: service.proto, version: 4, port: service.port)
        })
        current.withLock { state in
            boundServices = wanted
            if let datapath = state.datapath { write(wanted, on: datapath) }
        }
    }
    /// The IPv4 services bound to the own MoA (under `current`'s lock).
    private var boundServices: Set<BPFDatapath.Service> = []

    /// Writes the guard's service map (under `current`'s lock); a refused write leaves
    /// peers' traffic to the services not written to be rewritten as HoA traffic: logged.
    private func write(_ services: Set<BPFDatapath.Service>, on datapath: BPFDatapath) {
        do {
            try datapath.setServices(services)
        } catch {
            log(.error, "matd: BPF datapath: writing the services bound to the MoA failed (\(error)); peers' traffic "
                + "to those not written is taken for HoA traffic")
        }
    }

    /// Packets and bytes the programs translated since start (outbound, inbound), any thread.
    func counted() throws(SystemError) -> (outbound: BPFSystem.Count, inbound: BPFSystem.Count) {
        try current.withLock { state throws(SystemError) in
            let now = try state.datapath?.counted() ?? (outbound: BPFSystem.Count(), inbound: BPFSystem.Count())
            return (state.closed.outbound + now.outbound, state.closed.inbound + now.inbound)
        }
    }
}

extension FastPathElements.Delta {
    /// The part of the delta for `family`'s maps.
    func only(_ family: AddressFamily) -> Self {
        Self(flushed: flushed.intersection([family]), outDeleted: outDeleted.filter { $0.key.family == family },
             inDeleted: inDeleted.filter { $0.key.family == family }, outAdded: outAdded.filter { $0.key.family == family },
             inAdded: inAdded.filter { $0.key.family == family }, refused: refused)
    }
}
