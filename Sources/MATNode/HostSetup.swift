#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket

/// Everything matd changes on the host, and how it undoes it (docs/datapath.md).
///
/// - The persistent TUN device, with the HoAs, routes for the domain prefixes (in a table
///   of matd's own) and per-device sysctls that let the kernel forward what the engine
///   writes back. All of it goes when the device is deleted; a crash leaves the device, so
///   HoA traffic is dropped there instead of leaking out of the default route.
/// - A policy rule per domain prefix that sends this host's own traffic to that table.
///   Packets the engine writes back come from the TUN device, not from the host, so they
///   are routed by the main table even when their destination (a peer at home, whose MoA
///   is its HoA) lies inside a domain prefix.
/// - One nftables table, `netdev matd_<tun>`, with an ingress chain per uplink that hands
///   packets from known peers' MoAs (and ICMP errors about them) to the TUN device, and,
///   where IPv6 leaves through nftables, a chain on the TUN device that sends the engine's
///   IPv6 packets to each peer's next hop.
/// - One table `inet matd_<tun>` that recognises traffic between MoAs that is not HoA
///   traffic, so the diversion lets it pass (PeerMoATraffic).
public final class HostSetup {
    private let config: NodeConfig
    private let netlink: RouteNetlink
    private let nftables: Nftables
    private let tun: TunDevice
    private let routes: RouteLookup
    private let tunIndex: Int32
    private let services: MoAServiceWatch
    /// How IPv6 packets from the engine leave (probed at start).
    public let ipv6Path: IPv6OutboundPath
    /// What the rules of both tables were last written for; while it holds, a change of
    /// peers only adds and deletes set elements (`PeerMoASets`). With `divertedSets`, what
    /// the diversion is written again for when only the routes changed (a new gateway).
    private var divertedShape: DiversionShape?
    private var divertedSets = PeerMoASets()
    /// The IPv6 next hops' sets and rules (nftables path) as last written.
    private var divertedHops6 = NextHopSets6()
    /// A move wrote the rules for new MoAs and left the IPv6 next hops (nftables path) for
    /// ``finishMove()``, after the move's first alerts.
    private var nextHops6Pending = false
    private var watchingServices = false
    /// Peers' MoAs whose traffic comes in UDP (docs/datapath.md, "Behind NAT"): all of it
    /// goes to the stack, where the fragments of a large datagram are put together again
    /// (the ingress hook sees them one by one, the later ones without a UDP header, and
    /// would otherwise divert those into the engine). Set before `divertInbound`; a change
    /// after it is written by the next ``changePeerMoAs(adding:removing:)``, even of no peer.
    public var encapsulatedMoAs: Set<IPAddress> = [] { didSet { encapsulationChanged = true } }
    /// ``encapsulatedMoAs`` changed since the rules were last written for it.
    private var encapsulationChanged = false

    /// The nftables table matd owns for TUN device `tun`.
    public static func tableName(tun: String) -> String {
        "matd_" + String(tun.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// Configures the host around an open TUN device. Idempotent: a device and table a
    /// dead matd left are taken over, so its peers' sessions survive the restart.
    public init(config: NodeConfig, tun: TunDevice) throws(SystemError) {
        self.config = config
        self.tun = tun
        netlink = try RouteNetlink()
        nftables = try Nftables()
        routes = try RouteLookup()
        services = MoAServiceWatch(table: Self.tableName(tun: tun.name))
        try tun.setPersistent(true)
        // No IPv6 link-local address on the TUN device: nothing but HoA traffic should
        // enter it, and router solicitations from it would only be counted as drops.
        try? Self.writeSysctl("net/ipv6/conf/\(tun.name)/addr_gen_mode", "1")
        // Larger than the uplinks' MTU, and the engine would write packets they must fragment.
        var mtu: UInt32 = 1500
        for uplink in config.uplinks { mtu = min(mtu, (try? netlink.mtu(of: uplink)) ?? mtu) }
        try netlink.setUp(tun.name, mtu: mtu, transmitQueueLength: 10_000)
        let index = try netlink.interfaceIndex(tun.name)
        tunIndex = index
        for home in config.homeAddresses {
            try netlink.addAddress(IPPrefix(home, length: home.family == .ipv4 ? 32 : 128)!,
                                   interface: index, allowExisting: true)
        }
        for prefix in config.domainPrefixes {
            try netlink.addRoute(prefix, interface: index, table: config.routingTable, allowExisting: true)
        }
        try Self.setDeviceSysctls(tun: tun.name)
        ipv6Path = try Self.chooseIPv6Path(setting: config.ipv6Forwarding, tun: tun.name,
                                           needed: config.homeAddresses.contains { $0.family == .ipv6 },
                                           nftables: nftables)
        for rule in Self.rules(config) {
            // A rule a dead matd left is replaced rather than doubled.
            try? netlink.deleteRule(rule)
            try netlink.addRule(rule)
        }
    }

    /// The policy rules: locally generated traffic (input interface `lo`) to a domain
    /// prefix looks up matd's table.
    static func rules(_ config: NodeConfig) -> [RouteNetlink.Rule] {
        config.domainPrefixes.map {
            RouteNetlink.Rule(family: $0.address.family, priority: config.rulePriority, destination: $0,
                              inputInterface: "lo", table: config.routingTable)
        }
    }

    /// The uplinks' current addresses, the candidates for the node's MoAs. An uplink that
    /// does not exist (mid-move, between its removal and its return) has none.
    public func uplinkAddresses() -> [IPAddress] {
        config.uplinks.flatMap { uplinkAddresses(only: $0) }
    }

    /// The addresses of one interface, none if it does not exist.
    public func uplinkAddresses(only uplink: String) -> [IPAddress] {
        guard let index = try? netlink.interfaceIndex(uplink) else { return [] }
        return ((try? netlink.addresses(interface: index)) ?? []).map(\.address)
    }

    /// Points the inbound diversion at the node's current MoAs and the peers' MoAs, in one
    /// nftables transaction: the old rules stay in force until the new ones replace them.
    ///
    /// The same transaction points the IPv6 outbound chain (nftables path) at each peer's
    /// next hop. The table of MoA-to-MoA traffic is rewritten just before, keeping the flows
    /// it has seen. When only the peers (or their next hops) changed, both tables keep their
    /// rules and only the elements of their peer sets and next-hop sets change.
    public func divertInbound(addresses: NodeAddresses, peerMoAs: [IPAddress]) throws(SystemError) {
        let table = Self.tableName(tun: tun.name)
        let sets = PeerMoASets(addresses: Set(peerMoAs))
        let hops = nextHops6(addresses: addresses, peerMoAs: peerMoAs)
        let shape = DiversionShape(addresses: addresses, encapsulated: encapsulatedMoAs.intersection(sets.addresses))
        if shape == divertedShape {
            try changeElements(deleted: divertedSets.addresses.subtracting(sets.addresses),
                               added: sets.addresses.subtracting(divertedSets.addresses), into: sets, shape: shape,
                               hops6: hopChanges(to: hops, shape: shape))
        } else {
            // A move rewrites the rules; the sets keep their elements (only what changed
            // is added or deleted), unless nothing this process wrote can be trusted.
            let whole = divertedShape == nil
            try rewrite(table: table, shape: shape, sets: sets,
                        elements: whole ? nil : (divertedSets.addresses.subtracting(sets.addresses),
                                                 sets.addresses.subtracting(divertedSets.addresses)),
                        hops6: hops)
        }
        divertedShape = shape
        divertedSets = sets
        nextHops6Pending = false
        encapsulationChanged = false
        watchServices(addresses)
    }

    /// A move to `addresses`, the peers' MoAs changed by `adding` and `removing` since the
    /// diversion was last written: the rules of both tables follow the new MoAs, the peer
    /// sets change by those elements only, and the IPv6 next hops (nftables path), a route
    /// lookup per IPv6 peer, wait for ``finishMove()``. So the work before the move's
    /// first alerts is O(changed), where ``divertInbound(addresses:peerMoAs:)`` is
    /// O(peers). Until `finishMove`, the IPv6 HoA traffic the engine translates from the
    /// new MoA is not forwarded on the nftables path: the move holds it anyway. Writes as
    /// `divertInbound` does when a change concerns a MoA whose traffic comes in UDP;
    /// throws when nothing was written whole yet.
    public func moveDiversion(to addresses: NodeAddresses, adding: Set<IPAddress>, removing: Set<IPAddress>) throws(SystemError) {
        guard divertedShape != nil else {
            throw SystemError("nftables: a move's diversion", detail: "the diversion was not written in whole first")
        }
        guard encapsulatedMoAs.isDisjoint(with: adding), encapsulatedMoAs.isDisjoint(with: removing) else {
            try divertInbound(addresses: addresses, peerMoAs: Array(divertedSets.addresses.subtracting(removing).union(adding)))
            return
        }
        var sets = divertedSets
        let deleted = removing.intersection(sets.addresses), added = adding.subtracting(sets.addresses)
        sets.addresses.subtract(deleted)
        sets.addresses.formUnion(added)
        let shape = DiversionShape(addresses: addresses, encapsulated: encapsulatedMoAs.filter { sets.addresses.contains($0) })
        try rewrite(table: Self.tableName(tun: tun.name), shape: shape, sets: sets, elements: (deleted, added), hops6: nil)
        divertedShape = shape
        divertedSets = sets
        nextHops6Pending = ipv6Path == .nftables
        encapsulationChanged = false
        watchServices(addresses)
    }

    /// Points the IPv6 next hops (nftables path) at the routes from the MoA of the last
    /// ``moveDiversion(to:adding:removing:)``, after its first alerts: O(IPv6 peers).
    /// Nothing to do on the sysctl path, or when no move waits for it.
    public func finishMove() throws(SystemError) {
        guard nextHops6Pending, let shape = divertedShape else { return }
        nextHops6Pending = false
        let table = Self.tableName(tun: tun.name)
        let hops = nextHops6(addresses: shape.addresses, peerMoAs: Array(divertedSets.addresses))
        let out6 = NextHopSets6.whole(hops, replacing: divertedHops6, table: table, tun: tun.name, mobile: shape.addresses.mobile6)
        do {
            try nftables.run(out6.batch.joined(separator: "\n"))
            divertedHops6 = out6.state
        } catch {
            divertedShape = nil
            throw error
        }
    }

    /// Calls `observer` with the TCP listeners and UDP sockets bound to the node's MoAs,
    /// now and whenever they change (the watch's thread): the services the `listen4` and
    /// `listen6` sets hold, for the BPF datapath's MoA-to-MoA guard.
    func observeMoAServices(_ observer: @escaping @Sendable (Set<PeerMoATraffic.BoundService>) -> Void) {
        services.observe(observer)
    }

    /// At home (MoA == HoA) a service on that address is HoA traffic's: the engine
    /// decides by source there, as for everything else.
    private func watchServices(_ addresses: NodeAddresses) {
        services.watch(addresses.mobileAddresses.filter { !config.homeAddresses.contains($0) })
    }

    /// Adds and deletes peers' MoAs in the sets of both tables, after `divertInbound`
    /// wrote them in whole: O(change), where `divertInbound` walks every peer. On the
    /// nftables IPv6 path only the added IPv6 MoAs' next hops are looked up, and they go
    /// into their next hop's set. Where the MoAs whose traffic comes in UDP that the rules
    /// name changed (``encapsulatedMoAs`` set since, or a peer of theirs added or gone), the
    /// rules are written again in the same transaction, the sets still changed by their
    /// elements: O(change + MoAs in UDP). Throws when nothing was written in whole yet.
    public func changePeerMoAs(adding: Set<IPAddress>, removing: Set<IPAddress>) throws(SystemError) {
        guard !adding.isEmpty || !removing.isEmpty || encapsulationChanged else { return }
        guard let shape = divertedShape else {
            throw SystemError("nftables: peer sets", detail: "the diversion was not written in whole first")
        }
        let added = adding.subtracting(divertedSets.addresses)
        let deleted = removing.intersection(divertedSets.addresses)
        var sets = divertedSets
        sets.addresses.subtract(deleted)
        sets.addresses.formUnion(added)
        var hops6: (batch: [String], state: NextHopSets6) = ([], divertedHops6)
        if let mobile = shape.addresses.mobile6, ipv6Path == .nftables {
            hops6 = divertedHops6.changes(removing: deleted.filter { $0.family == .ipv6 },
                                          adding: nextHops6(addresses: shape.addresses, peerMoAs: Array(added)),
                                          table: Self.tableName(tun: tun.name), mobile: mobile)
        }
        let rulesMayChange = encapsulationChanged || !encapsulatedMoAs.isDisjoint(with: added)
            || !encapsulatedMoAs.isDisjoint(with: deleted)
        let next = rulesMayChange ? DiversionShape(addresses: shape.addresses, encapsulated: encapsulatedMoAs.intersection(sets.addresses))
            : shape
        if next == shape {
            try changeElements(deleted: deleted, added: added, into: sets, shape: shape, hops6: hops6)
        } else {
            try rewrite(table: Self.tableName(tun: tun.name), shape: next, sets: sets, elements: (deleted, added),
                        hops6: nil, then: hops6.batch)
            divertedHops6 = hops6.state
        }
        divertedSets = sets
        divertedShape = next
        encapsulationChanged = false
    }

    /// The commands that take the next-hop sets to `hops` (nftables path), the rules staying.
    private func hopChanges(to hops: [IPAddress: RouteLookup.Hop], shape: DiversionShape) -> (batch: [String], state: NextHopSets6) {
        guard let mobile = shape.addresses.mobile6, ipv6Path == .nftables else { return ([], divertedHops6) }
        return divertedHops6.changes(to: hops, table: Self.tableName(tun: tun.name), mobile: mobile)
    }

    /// Deletes `deleted` from and adds `added` to the peer sets of both tables, after which
    /// they hold `sets`, and runs `hops6`'s next-hop set changes in the same transaction; the
    /// rules stay. If that fails, the sets are not what this process thinks (someone edited
    /// them): both tables are written whole.
    private func changeElements(deleted: Set<IPAddress>, added: Set<IPAddress>, into sets: PeerMoASets,
                                shape: DiversionShape, hops6: (batch: [String], state: NextHopSets6)) throws(SystemError) {
        let table = Self.tableName(tun: tun.name)
        var batch: [String] = []
        for (tableFamily, quoted) in [("netdev", true), ("inet", false)] {
            batch += PeerMoASets.elements("delete", deleted, tableFamily: tableFamily, table: table, quoted: quoted)
            batch += PeerMoASets.elements("add", added, tableFamily: tableFamily, table: table, quoted: quoted)
        }
        batch += hops6.batch
        guard !batch.isEmpty else { return }
        do {
            try nftables.run(batch.joined(separator: "\n"))
            divertedHops6 = hops6.state
        } catch {
            log("matd: updating the peer sets failed (\(error)); writing the tables again")
            try rewrite(table: table, shape: shape, sets: sets, elements: nil, hops6: hops6.state.hops)
        }
    }

    /// What the rules of the tables depend on besides the peer sets.
    private struct DiversionShape: Equatable {
        var addresses: NodeAddresses
        var encapsulated: Set<IPAddress>
    }

    /// Whether the kernel fast path's IPv4 and IPv6 are wanted on the BPF datapath: its
    /// translated packets leave PeerMoATraffic's and the diversion's ingress chains at
    /// their first rules (``PeerMoATraffic/translatedPassRule(tableFamily:table:chain:)``).
    private var bpfDatapath: Bool {
        KernelFastPath.enabled(setting: config.kernelFastPath)
            && KernelFastPath.datapath(setting: config.kernelFastPathDatapath) == .bpf
    }

    /// Writes the rules of both tables for `shape`, and their sets: filled with `sets`
    /// afresh when `elements` is nil (the whole tables), else changed by its deletions and
    /// additions. `hops6` nil leaves the IPv6 next hops' chain and sets as they are; `then`
    /// goes at the end of the same transaction (changes of those sets).
    private func rewrite(table: String, shape: DiversionShape, sets: PeerMoASets,
                         elements: (deleted: Set<IPAddress>, added: Set<IPAddress>)?,
                         hops6: [IPAddress: RouteLookup.Hop]?, then: [String] = []) throws(SystemError) {
        let whole = elements == nil
        let previousHops6 = whole ? NextHopSets6() : divertedHops6
        divertedShape = nil
        divertedHops6 = NextHopSets6()
        let changes = { (tableFamily: String, quoted: Bool) -> [String] in
            guard let elements else { return sets.fill(tableFamily: tableFamily, table: table, quoted: quoted) }
            return PeerMoASets.elements("delete", elements.deleted, tableFamily: tableFamily, table: table, quoted: quoted)
                + PeerMoASets.elements("add", elements.added, tableFamily: tableFamily, table: table, quoted: quoted)
        }
        // Both tables in one transaction: a move writes them before its alerts go out.
        var batch = PeerMoATraffic.batch(table: table, tun: tun.name, uplinks: config.uplinks, addresses: shape.addresses,
                                         translated: bpfDatapath)
        batch += changes("inet", false)
        batch += (whole ? Nftables.deletingTable(family: "netdev", name: table) : []) + ["add table netdev \(table)"]
        batch += PeerMoASets.declarations(tableFamily: "netdev", table: table, quoted: true)
        batch += changes("netdev", true)
        for uplink in config.uplinks {
            let chain = "in_" + String(uplink.map { $0.isLetter || $0.isNumber ? $0 : "_" })
            batch.append("add chain netdev \(table) \(chain) { type filter hook ingress device \"\(uplink)\" priority -500; policy accept; }")
            batch.append("flush chain netdev \(table) \(chain)")
            batch.append(PeerMoATraffic.passRule(table: table, chain: chain))
            // After the pass, which alone clears its bit (PeerMoATraffic never marks a
            // packet to the HoA, so a translated one has it only if someone else set it).
            if bpfDatapath { batch.append(PeerMoATraffic.translatedPassRule(tableFamily: "netdev", table: table, chain: chain)) }
            batch += rules(table: table, chain: chain, family: .ipv4, addresses: shape.addresses, encapsulated: shape.encapsulated)
            batch += rules(table: table, chain: chain, family: .ipv6, addresses: shape.addresses, encapsulated: shape.encapsulated)
        }
        var hopSets6 = hops6 == nil ? previousHops6 : NextHopSets6()
        if ipv6Path == .nftables, let hops6 {
            let out6 = NextHopSets6.whole(hops6, replacing: previousHops6, table: table, tun: tun.name,
                                          mobile: shape.addresses.mobile6)
            batch += out6.batch
            hopSets6 = out6.state
        }
        batch += then
        try nftables.run(batch.joined(separator: "\n"))
        divertedHops6 = hopSets6
        if !watchingServices {
            watchingServices = true
            services.start()
        }
    }

    /// Writes the diversion again if a peer's IPv6 next hop changed (a new gateway, a
    /// route change without a new MoA); nothing to do on the sysctl path, where the
    /// kernel routes each packet itself. Called after netlink reports route changes.
    public func followRoutes() {
        guard ipv6Path == .nftables, let shape = divertedShape else { return }
        let peerMoAs = Array(divertedSets.addresses)
        let hops = nextHops6(addresses: shape.addresses, peerMoAs: peerMoAs)
        guard hops != divertedHops6.hops else { return }
        do {
            try divertInbound(addresses: shape.addresses, peerMoAs: peerMoAs)
            log("matd: IPv6 next hops changed: \(hops.map { "\($0.key) \($0.value)" }.sorted().joined(separator: ", "))")
        } catch {
            log("matd: pointing IPv6 at the new next hops failed: \(error)")
        }
    }

    /// Each IPv6 peer MoA's next hop, looked up as the kernel would forward a packet
    /// from the node's MoA arriving on the TUN device. A failed lookup is logged; that
    /// peer gets no rule until the next change.
    private func nextHops6(addresses: NodeAddresses, peerMoAs: [IPAddress]) -> [IPAddress: RouteLookup.Hop] {
        guard ipv6Path == .nftables, let mobile = addresses.mobile6 else { return [:] }
        var hops: [IPAddress: RouteLookup.Hop] = [:]
        for peer in Set(peerMoAs) where peer.family == .ipv6 {
            do {
                if let hop = try routes.forwardingHop(to: peer, from: .v6(mobile), inputInterface: tunIndex) {
                    hops[peer] = hop
                } else {
                    log("matd: no IPv6 route to peer MoA \(peer); its HoA traffic waits for one")
                }
            } catch {
                log("matd: \(error)")
            }
        }
        return hops
    }

    /// The rules for one family, in order: let signaling through to matd's socket, divert
    /// peers' packets to the TUN device, divert ICMP errors that quote a packet of ours to a
    /// peer (path MTU discovery needs them translated), and drop what a missing device would
    /// otherwise let fall through to the local stack (which would reset peers' sessions).
    /// The UDP ports of matd's own sockets that peers' MoAs send to: the signaling port,
    /// and the encapsulation's unless it is off.
    private var localPorts: String {
        config.udpEncapsulation == .off ? "\(config.signalingPort)" : "{ \(config.signalingPort), \(config.encapPort) }"
    }

    private func rules(table: String, chain: String, family: AddressFamily,
                       addresses: NodeAddresses, encapsulated: Set<IPAddress>) -> [String] {
        let mobile: String, home: String, errors: String
        let (ip, fwd) = family == .ipv4 ? ("ip", "fwd ip") : ("ip6", "fwd ip6")
        let quotedSource: String
        switch family {
        case .ipv4:
            guard let moa = addresses.mobile4, let hoa = addresses.home4 else { return [] }
            mobile = moa.description
            home = hoa.description
            quotedSource = "@th,160,32 \(PeerMoASets.hex(.v4(moa)))"
            errors = "icmp type { destination-unreachable, time-exceeded, parameter-problem }"
        case .ipv6:
            guard let moa = addresses.mobile6, let hoa = addresses.home6 else { return [] }
            mobile = moa.description
            home = hoa.description
            quotedSource = "@th,128,128 \(PeerMoASets.hex(.v6(moa)))"
            errors = "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem }"
        }
        let peers = "@" + PeerMoASets.name(family)
        let quoted = "\(quotedSource) \(PeerMoASets.quotedExpression(family)) @\(PeerMoASets.quotedName(family))"
        let prefix = "add rule netdev \(table) \(chain) \(ip) daddr \(mobile)"
        let device = "device \"\(tun.name)\""
        let encapsulatedHere = encapsulated.filter { $0.family == family }.map(\.description).sorted()
        // A datagram in UDP larger than the path MTU comes in fragments: the first has the
        // UDP header (the rule above), the later ones none, and they must reach the stack
        // to be put together. Only fragments: the peer's translated packets (it went back to
        // direct before this node noticed) are diverted as always, or the stack would reset
        // the peer's connections.
        let fragment = family == .ipv4 ? "ip frag-off & 0x1fff != 0" : "frag frag-off != 0"
        return [
            "\(prefix) \(ip) saddr \(peers) udp dport \(localPorts) accept",
        ] + (encapsulatedHere.isEmpty ? [] : [
            "\(prefix) \(ip) saddr { \(encapsulatedHere.joined(separator: ", ")) } \(fragment) accept",
        ]) + [
            "\(prefix) \(ip) saddr \(peers) \(fwd) to \(home) \(device)",
            "\(prefix) \(errors) \(quoted) \(fwd) to \(home) \(device)",
            "\(prefix) \(ip) saddr \(peers) drop",
        ]
    }

    /// Removes the policy rules, the nftables table and the TUN device with everything on it.
    public func teardown() {
        services.stop()
        for rule in Self.rules(config) { try? netlink.deleteRule(rule) }
        for (family, table) in Self.tables(tun: tun.name) {
            do {
                try nftables.deleteTable(family: family, name: table)
            } catch {
                log("matd: stop: \(error)")
            }
        }
        try? tun.setPersistent(false)
    }

    /// matd's nftables tables: the diversion, MoA-to-MoA traffic, the kernel fast path.
    static func tables(tun: String) -> [(family: String, name: String)] {
        [("netdev", tableName(tun: tun)), ("inet", tableName(tun: tun)), ("inet", KernelFastPath.tableName(tun: tun))]
    }

    /// Removes what a matd that died without `teardown` left: its policy rules, its
    /// nftables tables, its BPF programs' tc filters and its persistent TUN device.
    /// Returns what it removed.
    public static func cleanup(config: NodeConfig) throws(SystemError) -> [String] {
        var removed: [String] = []
        let netlink = try RouteNetlink()
        for (prefix, rule) in zip(config.domainPrefixes, rules(config)) where (try? netlink.deleteRule(rule)) != nil {
            removed.append("rule pref \(rule.priority) to \(prefix) iif lo lookup \(rule.table)")
        }
        let nftables = try Nftables()
        for (family, table) in tables(tun: config.tunName) where try nftables.deleteTable(family: family, name: table) {
            removed.append("nftables table \(family) \(table)")
        }
        // The BPF datapath's tc filters (kernels without tcx, or MATD_BPF_ATTACH=tc) outlive
        // their process and would go on translating with the dead matd's maps.
        removed += try BPFSystem.removeLeftFilters()
        if case .some(.some("tun")) = netlink.kind(of: config.tunName) {
            try netlink.deleteLink(config.tunName)
            removed.append("TUN device \(config.tunName)")
        }
        return removed
    }

    /// Per-device sysctls of the TUN device; they go with it, so nothing host-wide changes.
    /// The kernel must forward what the engine writes back (the input device's flag is
    /// what counts), accept the node's own MoA as a source arriving on it, and not drop it
    /// by strict reverse-path filtering (loose mode, since the effective value is the
    /// larger of `all` and the device's).
    private static func setDeviceSysctls(tun: String) throws(SystemError) {
        try writeSysctl("net/ipv4/conf/\(tun)/forwarding", "1")
        try writeSysctl("net/ipv4/conf/\(tun)/accept_local", "1")
        try writeSysctl("net/ipv4/conf/\(tun)/rp_filter", "2")
        // IPv6: force_forwarding or nftables, chosen by chooseIPv6Path.
    }

    static func writeSysctl(_ key: String, _ value: String) throws(SystemError) {
        let path = "/proc/sys/" + key
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("set sysctl \(key)", errno: errno) }
        defer { close(fd) }
        guard write(fd, value, value.utf8.count) == value.utf8.count else {
            throw SystemError("set sysctl \(key)", errno: errno)
        }
    }
}
