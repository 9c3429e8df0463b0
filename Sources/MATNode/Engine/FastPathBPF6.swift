#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket
import Synchronization

/// The IPv6 half of the kernel fast path on the BPF datapath (docs/datapath.md, "The BPF
/// datapath"): what ``FastPathBPF`` is for IPv4, with ``BPFDatapath6``'s programs and
/// maps. ``KernelFastPath`` hands it the IPv6 part of every element delta in the same call
/// as the IPv4 part, so both families follow the engine's decisions together. A peer's
/// next hop is the kernel's route for a packet from the own MoA to the peer's MoA arriving
/// on the TUN device (a router's link-local address, or the MoA itself when on the link),
/// its neighbour resolved when the peer enters the map (``NextHopResolver``).
/// Engine thread only, except ``routesChanged()``, ``takeHeard()`` and ``counted()``.
final class FastPathBPF6: @unchecked Sendable {
    // @unchecked: the write state is the engine thread's; `current` (read by the control
    // thread for the counters) is behind a lock, the route flag atomic.

    /// What the programs are built for: the own addresses and the uplinks they run on inbound.
    struct Shape: Equatable {
        var home: IPv6Address
        var mobile: IPv6Address
        var inboundUplinks: [String]
    }

    private let tun: String
    private let localPorts: [UInt16]
    private let routes: RouteLookup
    private let neighbours: NextHopResolver
    private let tunIndex: Int32
    /// The datapath attached now (nil: none), and the counts of the ones closed before it.
    private let current = Mutex<(datapath: BPFDatapath6?, closed: (outbound: BPFSystem.Count, inbound: BPFSystem.Count))>(
        (nil, (BPFSystem.Count(), BPFSystem.Count())))
    private var shape: Shape?
    /// The IPv6 elements decided on (whether a datapath is attached or not) and the next
    /// hop written for each peer.
    private var outbound: [IPv6Address: IPv6Address] = [:]
    private var inbound: [IPv6Address: IPv6Address] = [:]
    private var hops: [IPv6Address: RouteLookup.Hop] = [:]
    /// Whether the inbound elements are in the map (not while the host's input chain would
    /// drop what the programs deliver).
    private var inboundOn = true
    /// Whether a move holds the family (``FastPathGates``): the outbound map then has only
    /// the peers released from the hold (``admits(_:_:)``), each written at its
    /// release; the packets to the others go on to the engine, which holds them.
    private var held = false
    private let routesStale = Atomic<Bool>(false)
    private var unroutedLogged = false
    /// What the heard map was read to (under `current`'s lock).
    private var rounds = HeardRounds<IPv6Address>()

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

    /// Attaches programs for `wanted` (nil: detaches them) unless they are attached for it
    /// already, and fills the new maps from what is kept; `inboundWanted` says whether the
    /// MoA elements may be in the inbound map, `gates` which peers' outbound ones may be
    /// while a move holds IPv6. Throws when the kernel refuses: nothing is attached then.
    func prepare(_ wanted: Shape?, inbound inboundWanted: Bool, gates: FastPathGates) throws(SystemError) {
        if wanted != shape || (wanted != nil && !attached) {
            detach()
            shape = wanted
            guard let wanted else { return }
            let datapath = try BPFDatapath6(home: wanted.home, mobile: wanted.mobile, localPorts: localPorts, tun: tun,
                                            uplinks: wanted.inboundUplinks)
            current.withLock { $0.datapath = datapath }
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

    /// Makes the maps hold the IPv6 part of `delta` (its flush, deletions and additions),
    /// and the outbound map follow a move's hold of IPv6, as ``FastPathBPF/apply(_:gated:gates:changes:)``.
    func apply(_ delta: FastPathElements.Delta, gated nowHeld: Bool, gates: FastPathGates,
               changes: FastPathGates.Changes) throws(SystemError) {
        let change = changes.hold(.ipv6, wasHeld: held, gated: nowHeld)
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
        if delta.flushed.contains(.ipv6) {
            for home in outbound.keys { try datapath?.removeOutbound(home: home) }
            for mobile in inbound.keys where inboundOn { try datapath?.removeInbound(mobile: mobile) }
            outbound = [:]
            inbound = [:]
            hops = [:]
        }
        for element in delta.outDeleted {
            guard case .v6(let home) = element.key else { continue }
            outbound[home] = nil
            hops[home] = nil
            try datapath?.removeOutbound(home: home)
            try datapath?.forgetHeard(home: home)
        }
        for element in delta.inDeleted {
            guard case .v6(let mobile) = element.key else { continue }
            inbound[mobile] = nil
            if inboundOn { try datapath?.removeInbound(mobile: mobile) }
        }
        for element in delta.outAdded {
            guard case .v6(let home) = element.key, case .v6(let mobile) = element.value else { continue }
            outbound[home] = mobile
            if let datapath, admits(home, gates) { try writeOutbound(home, mobile, on: datapath) }
        }
        for element in delta.inAdded {
            guard case .v6(let mobile) = element.key, case .v6(let home) = element.value else { continue }
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
            for case .v6(let home) in changes.released {
                if let mobile = outbound[home] { try writeOutbound(home, mobile, on: datapath) }
            }
        }
    }

    /// Whether `home`'s outbound element belongs in the map: no hold, or released from it.
    private func admits(_ home: IPv6Address, _ gates: FastPathGates) -> Bool { !held || gates.open.contains(.v6(home)) }

    /// Looks up the next hop of `home`'s MoA and writes its outbound element if it
    /// changed; without a route out of an uplink the element goes (the engine carries it).
    private func writeOutbound(_ home: IPv6Address, _ mobile: IPv6Address, on datapath: BPFDatapath6) throws(SystemError) {
        guard let own = shape?.mobile else { return }
        let hop = try routes.forwardingHop(to: .v6(mobile), from: .v6(own), inputInterface: tunIndex)
        guard let hop, case .v6(let nextHop) = hop.nextHop, hop.device != tun, case let index = if_nametoindex(hop.device), index != 0 else {
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

    /// Has the next hops looked up again at the next update (any thread).
    func routesChanged() { routesStale.store(true, ordering: .releasing) }

    /// Forgets every element and detaches.
    func reset() {
        detach()
        shape = nil
        outbound = [:]
        inbound = [:]
        hops = [:]
    }

    /// Detaches the programs; their counts are kept.
    func detach() {
        current.withLock { state in
            guard let datapath = state.datapath else { return }
            do {
                let counts = try datapath.counted()
                state.closed.outbound = state.closed.outbound + counts.outbound
                state.closed.inbound = state.closed.inbound + counts.inbound
            } catch {
                // Only counts are lost: the datapath goes either way.
                log(.error, "matd: BPF datapath: reading its IPv6 counters before detaching failed (\(error)); they restart from 0")
            }
            datapath.close()
            state.datapath = nil
        }
    }

    /// The peers whose packets the inbound program translated and were not reported yet at
    /// that time, from the next ``FastPathBPF/heardPerRead`` entries of the heard map, with
    /// when each last was at the latest (monotonic ms), any thread.
    func takeHeard() throws(SystemError) -> [IPAddress: UInt64] {
        try current.withLock { state throws(SystemError) -> [IPAddress: UInt64] in
            guard let datapath = state.datapath else { return [:] }
            var heard: [IPAddress: UInt64] = [:]
            let limit = FastPathBPF.heardPerRead
            for (home, at) in rounds.take(try datapath.heard(limit: limit), limit: limit) { heard[.v6(home)] = at }
            return heard
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

extension FastPathBPF6 {
    /// The BPF datapath's part of `matctl status`'s fast path line (`detail`: and of the
    /// log line when the fast path comes on): which families its programs carry, or that
    /// the kernel refused them.
    static func status(carries4: Bool, carries6: Bool, refused: String?, detail: Bool) -> String {
        let families = [carries4 ? "IPv4" : nil, carries6 ? "IPv6" : nil].compactMap { $0 }.joined(separator: " and ")
        if !families.isEmpty { return "; \(families) on the BPF datapath" + (detail ? " (tc programs, \(BPFSystem.attachedWith == .tcFilter ? "tc filters" : "tcx links"))" : "") }
        return refused == nil ? "" : "; IPv4 and IPv6 on nftables (BPF datapath unavailable)"
    }
}

extension FastPathElements.Delta {
    /// The delta without the elements of `families` (those the BPF datapath carries: what
    /// is left is nftables').
    func excluding(_ families: Set<AddressFamily>) -> Self {
        Self(flushed: flushed.subtracting(families), outDeleted: outDeleted.filter { !families.contains($0.key.family) },
             inDeleted: inDeleted.filter { !families.contains($0.key.family) },
             outAdded: outAdded.filter { !families.contains($0.key.family) },
             inAdded: inAdded.filter { !families.contains($0.key.family) }, refused: refused)
    }
}
