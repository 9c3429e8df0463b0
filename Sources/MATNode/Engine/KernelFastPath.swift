#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket
import Synchronization

/// The kernel fast path (docs/datapath.md, "Kernel fast path"): nftables rewrites the
/// packets of settled mappings statelessly, so they never cross the TUN device and the
/// engine's wakeups. After every change the engine thread hands here the rules
/// (``FastPathRuleset``) and its decisions for the HoAs the change touched; this writes
/// what differs in one transaction (the peers' elements as deltas, ``FastPathElements``;
/// the rules only when they changed), so the elements of a peer are gone before the
/// engine starts holding its packets. Nothing here walks the engine's table, except the
/// backlog of a write from scratch, taken ``backlogPerTurn`` HoAs per turn.
///
/// Table `inet matd_<tun>_fast`, matd's alone: removed on stop with the others.
public final class KernelFastPath: @unchecked Sendable {
    // @unchecked: `nftables`, `applied`, `elements` and the rest of the write state are
    // touched only by the engine thread; other threads read `published` and the counters
    // (own context).

    /// The environment variable that overrides `kernel-fast-path` (`on`, `off` or `bpf`).
    public static let environmentVariable = "MATD_KERNEL_FAST_PATH"
    /// Whether the fast path is on when neither `kernel-fast-path` nor the environment says.
    public static let defaultSetting = true
    /// At most this many peers are in the kernel's maps; the engine carries the others.
    /// A change costs the same with the maps full (about 0.4 ms per transaction at 0 and at
    /// 100,000 peers); each peer costs the kernel about 280 bytes (IPv6), so the limit
    /// caps that at about 70 MB (docs/benchmarks.md, "Kernel fast path at scale").
    public static let peerLimit = 262_144
    /// HoAs of the backlog (peers joining, a write from scratch) decided on per write:
    /// about 20 ms of nft work, between which packets keep flowing.
    static let backlogPerTurn = 1_024
    /// How long a joining peer waits at most for the next write of the backlog (the
    /// engine carries it meanwhile).
    static let backlogIntervalMilliseconds: Int32 = 20

    /// Whether the fast path is wanted: the environment variable if set, else `setting`.
    public static func enabled(setting: Bool, environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        switch environment[environmentVariable]?.lowercased() {
        case "on", "1", "yes", "true", "bpf": true
        case "off", "0", "no", "false": false
        default: setting
        }
    }

    /// What translates IPv4 when the fast path is on: the environment variable if it says
    /// `bpf` or `on` (nftables), else `setting`.
    public static func datapath(setting: FastPathDatapath,
                                environment: [String: String] = ProcessInfo.processInfo.environment) -> FastPathDatapath {
        switch environment[environmentVariable]?.lowercased() {
        case "bpf": .bpf
        case "on", "1", "yes", "true": .nftables
        default: setting
        }
    }

    /// The table for TUN device `tun`.
    public static func tableName(tun: String) -> String { HostSetup.tableName(tun: tun) + "_fast" }

    let table: String
    let domainPrefixes: [IPPrefix]
    private let uplinks: [String]
    private let localPorts: [UInt16]
    private let nftables: Nftables
    /// The families whose inbound the engine keeps: the host's input chain would drop the
    /// fast path's packets (``HostFirewallWatcher``: read at start, before the first write,
    /// and again every few seconds; a change makes the engine write the rules again). Set
    /// before the engine starts.
    var inboundFence: @Sendable () -> Set<AddressFamily> = { [] }
    /// The rules the kernel has now (nil: nothing yet, or the last write failed and the
    /// table was removed), where they were put, and the peers in its maps.
    private var applied: FastPathRuleset?
    private var appliedPlacement: FastPathRuleset.Placement?
    private var elements = FastPathElements(limit: KernelFastPath.peerLimit)
    /// The peers released from a move's hold of their family, in the gated rules' sets.
    private var gates = FastPathGates()
    /// Whether the maps are to be filled from scratch: the engine hands every HoA of its
    /// table to ``restart(with:)`` (at start, and after a failed write removed the table).
    private(set) var wantsAllPeers = true
    private var failures = 0
    /// Transactions written (each a change of the peers on the fast path or of the node's
    /// addresses), for `matctl stats`.
    private let writes = Atomic<UInt64>(0)
    /// Set when the first write failed: the kernel or nft lacks what the rules need.
    private(set) var unavailable: String?
    private let published = Mutex("starting")
    /// The timeout of the sets that note the peers heard on the fast path (an idle
    /// period), and their reader (``FastPathHeard``).
    private let heardTimeout: UInt32
    private let heard: FastPathHeardReader
    /// IPv4 on the BPF datapath (`kernel-fast-path = bpf`; nil: nftables carries IPv4),
    /// whether its programs translate now, and why nftables carries IPv4 instead when
    /// the BPF datapath was wanted but the kernel refused it (engine thread).
    private let wantedBPF: FastPathBPF?
    private var bpfCarries4 = false
    private var bpfRefused: String?
    /// The BPF datapath unless the kernel refused it.
    private var bpf: FastPathBPF? { bpfRefused == nil ? wantedBPF : nil }
    /// IPv6 on the BPF datapath, wanted and refused with IPv4's.
    private let wantedBPF6: FastPathBPF6?
    private var bpfCarries6 = false
    private var bpf6: FastPathBPF6? { bpfRefused == nil ? wantedBPF6 : nil }

    /// Prepares the fast path for a node; nothing is written before the first `update`.
    public init(config: NodeConfig) throws(SystemError) {
        table = Self.tableName(tun: config.tunName)
        domainPrefixes = config.domainPrefixes
        uplinks = config.uplinks
        localPorts = config.udpEncapsulation == .off ? [config.signalingPort] : [config.signalingPort, config.encapPort]
        nftables = try Nftables()
        let idleAfter = MappingService.idleProbeAfter(config)
        heardTimeout = FastPathHeard.timeoutSeconds(idleAfter: idleAfter)
        heard = FastPathHeardReader(table: table, idleAfter: idleAfter)
        var wanted: FastPathBPF?, wanted6: FastPathBPF6?, refused: SystemError?
        if Self.datapath(setting: config.kernelFastPathDatapath) == .bpf {
            do {
                wanted = try FastPathBPF(tun: config.tunName, localPorts: localPorts)
                wanted6 = try FastPathBPF6(tun: config.tunName, localPorts: localPorts)
            } catch {
                refused = error
            }
        }
        wantedBPF = wanted
        wantedBPF6 = wanted6
        if let refused { refuseBPF(refused) }
    }

    /// The kernel refused the BPF datapath: logged once, and nftables carries both families.
    private func refuseBPF(_ error: SystemError) {
        resetBPF()
        bpfRefused = "\(error)"
        log(.warning, "matd: BPF datapath unavailable (\(error)); nftables translates IPv4 and IPv6 on the kernel fast path "
            + "(the kernel refused to load or attach its programs, with a tcx link or a tc filter; kernel-fast-path = on silences this)")
    }

    /// The routes changed (any thread): the BPF datapath looks its peers' next hops up
    /// again at the next update.
    public func routesChanged() {
        wantedBPF?.routesChanged()
        wantedBPF6?.routesChanged()
    }

    /// Detaches both families' programs and forgets their elements.
    private func resetBPF() {
        wantedBPF?.reset()
        wantedBPF6?.reset()
        bpfCarries4 = false
        bpfCarries6 = false
    }

    /// The sockets bound to the node's MoAs (any thread, ``MoAServiceWatch``): the BPF
    /// datapath's MoA-to-MoA guard leaves peers' traffic to them alone.
    func moaServicesChanged(_ services: Set<PeerMoATraffic.BoundService>) { wantedBPF?.servicesChanged(services) }

    /// The peers (HoAs) whose packets the kernel translated inbound since the last call,
    /// with when each last was at the latest (monotonic ms), as far as the reader has read.
    public func takeHeard() -> [IPAddress: UInt64] {
        var taken = heard.take()
        // IPv4 on the BPF datapath: its programs note the peers in a map of their own.
        if let wantedBPF {
            do {
                taken.merge(try wantedBPF.takeHeard()) { max($0, $1) }
                taken.merge(try wantedBPF6?.takeHeard() ?? [:]) { max($0, $1) }
            } catch {
                let failures = readFailures.add(1, ordering: .relaxed).newValue
                log(.error, "matd: reading the BPF datapath's heard peers failed (\(error)); \(failures) read failure(s) so far")
            }
        }
        return taken
    }

    /// `on` (with the number of peers), or why it is not carrying traffic.
    public var state: String { published.withLock { $0 } }

    /// Whether the kernel translates `hoa`'s packets now (engine thread only).
    func carries(_ hoa: IPAddress) -> Bool {
        guard let applied, applied.families.contains(hoa.family) || (hoa.family == .ipv4 ? bpfCarries4 : bpfCarries6) else { return false }
        return elements.peers[hoa] != nil && gates.admits(hoa, applied)
    }

    /// The HoA whose MoA `moa` is in the kernel's maps (engine thread only).
    func owner(ofMoA moa: IPAddress) -> IPAddress? { elements.owner(ofMoA: moa) }

    /// Starts a write from scratch: `hoas` (every HoA of the engine's table) wait in the
    /// backlog, and the next ``update(_:decisions:)`` writes the table whole.
    func restart(with hoas: [IPAddress]) {
        elements.restart(backlog: hoas)
        wantsAllPeers = false
    }

    /// Whether HoAs wait in the backlog.
    var hasBacklog: Bool { elements.hasBacklog }

    /// Whether the kernel's maps hold `hoa` (a change to it is written at once).
    func holds(_ hoa: IPAddress) -> Bool { elements.peers[hoa] != nil }

    /// Puts a HoA not in the maps in the backlog: decided on at the next write of it.
    func enqueue(_ hoa: IPAddress) { elements.enqueue(hoa) }

    /// Whether the backlog is to be written now (monotonic milliseconds): it holds a full
    /// part, or its oldest HoA waited ``backlogIntervalMilliseconds``.
    func backlogDue(at now: UInt64) -> Bool {
        elements.backlogCount >= Self.backlogPerTurn
            || (elements.hasBacklog && now >= lastBacklogWrite + UInt64(Self.backlogIntervalMilliseconds))
    }

    /// Whether a full part waits (the engine comes back for it at once).
    var backlogFull: Bool { elements.backlogCount >= Self.backlogPerTurn }

    /// The next HoAs of the backlog, for the engine to decide on.
    func takeBacklog(at now: UInt64) -> ArraySlice<IPAddress> {
        lastBacklogWrite = now
        return elements.takeBacklog(Self.backlogPerTurn)
    }
    private var lastBacklogWrite: UInt64 = 0

    /// Makes the kernel's rules say `ruleset` and its maps hold `decisions` (the engine's
    /// peer, or nil, for each HoA its last change touched), and the sets of the families it
    /// gates the peers released from their hold (`gated`, what the change did to them,
    /// ``FastPathGates``); called on the engine thread
    /// after every change of its state, before it reads another packet. Writes only what
    /// differs, in one transaction. A write that fails removes the table, so every packet
    /// goes through the engine, and is logged; the next update writes it from scratch. The
    /// first failing write (the probe at start) turns the fast path off for good.
    func update(_ ruleset: FastPathRuleset, decisions: [IPAddress: FastPathRuleset.Peer?],
                gated: FastPathGates.Changes = FastPathGates.Changes()) {
        guard unavailable == nil else { return }
        if applied == nil && failures == 0 && writes.load(ordering: .relaxed) == 0 && published.withLock({ $0 }) == "starting" {
            do {
                try probe()
            } catch {
                unavailable = "\(error)"
                published.withLock { $0 = "unavailable: \(error)" }
                log(.warning, "matd: kernel fast path unavailable (\(error)); the TUN engine carries all HoA traffic "
                    + "(needs Linux 5.10 and nftables 1.0; kernel-fast-path = off silences this)")
                return
            }
        }
        let engineInbound = inboundFence()
        let present = uplinks.filter { if_nametoindex($0) != 0 }
        let placement = FastPathRuleset.Placement(
            table: table, uplinks: present, strictReversePath: Set(present.filter(Self.strictReversePath)),
            localPorts: localPorts, markBit: PeerMoATraffic.markBit, engineInbound: engineInbound,
            heardTimeout: heardTimeout)
        var delta = elements.apply(decisions)
        gates.apply(gated)
        if delta.refused > 0 && !refusedLogged {
            refusedLogged = true
            log(.warning, "matd: kernel fast path: \(delta.refused) peer(s) left to the engine: the maps hold "
                + "\(Self.peerLimit) peers at most (or a MoA was another peer's); logged once")
        }
        // The BPF maps lose the peers the engine now holds first, before programs built
        // for new addresses (a move) are attached and filled.
        do {
            try bpf?.apply(delta, gated: ruleset.gated.contains(.ipv4), gates: gates, changes: gated)
            try bpf6?.apply(delta, gated: ruleset.gated.contains(.ipv6), gates: gates, changes: gated)
        } catch {
            failed(error)
            return
        }
        var ruleset = ruleset
        if !prepareBPF(&ruleset, present: present, strictReversePath: placement.strictReversePath, engineInbound: engineInbound) {
            // nftables takes IPv4 over: every peer is written again, from scratch.
            elements.restart(backlog: Array(elements.peers.keys))
            delta = elements.apply(decisions)
            applied = nil
        }
        let fresh = applied == nil
        var batch: [String] = []
        if fresh {
            // A table from before the owner flag (an older matd) cannot become owned: replaced.
            if writes.load(ordering: .relaxed) == 0 {
                batch += Nftables.deletingTable(family: "inet", name: table)
            }
            batch += ruleset.batch(placement) + FastPathRuleset.flushMaps(table: table)
        } else if ruleset != applied || placement != appliedPlacement {
            // Chains of uplinks that went away: the kernel may keep them, without a device.
            let gone = (appliedPlacement?.uplinks ?? []).filter { !present.contains($0) }.map(FastPathRuleset.ingressChain)
            if !gone.isEmpty {
                do {
                    let chains = try nftables.chainNames(family: "inet", table: table)
                    for chain in gone where chains.contains(chain) { batch.append("delete chain inet \(table) \(chain)") }
                } catch {
                    log(.error, "matd: kernel fast path: listing its chains failed (\(error)); chains of removed uplinks stay")
                }
            }
            batch += ruleset.batch(placement)
        }
        // The families the BPF datapath is for never have elements in nftables' maps.
        batch += FastPathRuleset.elements(bpf == nil ? delta : delta.excluding([.ipv4, .ipv6]), table: table)
        batch += gates.commands(gated, table: table, whole: fresh)
        do {
            if !batch.isEmpty {
                try nftables.run(batch.joined(separator: "\n"))
                applied = ruleset
                appliedPlacement = placement
                writes.add(1, ordering: .relaxed)
                if fresh && failures == 0 {
                    log("matd: kernel fast path on: nftables translates settled mappings (table inet \(table))"
                        + FastPathBPF6.status(carries4: bpfCarries4, carries6: bpfCarries6, refused: nil, detail: true))
                }
            }
            let fenced = engineInbound.isEmpty ? "" : "; inbound "
                + engineInbound.map { $0 == .ipv4 ? "IPv4" : "IPv6" }.sorted().joined(separator: " and ")
                + " through the engine (the host's input chain drops it)"
            let peers = ruleset.families.reduce(0) { $0 + elements.count($1) } + (bpfCarries4 ? elements.count(.ipv4) : 0)
                + (bpfCarries6 ? elements.count(.ipv6) : 0)
            let datapath = FastPathBPF6.status(carries4: bpfCarries4, carries6: bpfCarries6, refused: bpfRefused, detail: false)
            published.withLock { $0 = "on, \(peers) peer(s)\(datapath)\(fenced)" }
        } catch {
            failed(error)
        }
    }

    /// A write failed: the table goes and the programs' maps are emptied, so the engine
    /// carries every packet, and the next update writes everything from scratch.
    private func failed(_ error: any Error) {
        failures += 1
        applied = nil
        appliedPlacement = nil
        elements.restart(backlog: [])
        wantsAllPeers = true
        resetBPF()
        remove()
        published.withLock { $0 = "failed, retried at the next change: \(error)" }
        log(.error, "matd: writing the kernel fast path failed (\(error)); the TUN engine carries all HoA traffic until the next change")
    }

    /// Attaches (or keeps, or detaches) the BPF datapath for the node's addresses and takes
    /// IPv4 and IPv6 out of `ruleset`, which nftables writes, while the programs carry them.
    /// False when the kernel refused the programs just now: nftables carries both families
    /// from here on, and the caller has the peers written again.
    private func prepareBPF(_ ruleset: inout FastPathRuleset, present: [String], strictReversePath: Set<String>,
                            engineInbound: Set<AddressFamily>) -> Bool {
        guard let bpf else { return true }
        var shape: FastPathBPF.Shape?
        // A family a move holds keeps its programs: their outbound map then has only the
        // peers released from the hold (``FastPathBPF/apply(_:gated:gates:changes:)``).
        if ruleset.families.contains(.ipv4), let home = ruleset.addresses.home4, let mobile = ruleset.addresses.mobile4 {
            // A packet rewritten to come from a peer's HoA fails a strict reverse-path check
            // (the HoA is routed into the TUN device): such uplinks get no inbound program.
            shape = FastPathBPF.Shape(home: home, mobile: mobile, inboundUplinks: present.filter { !strictReversePath.contains($0) })
        }
        var shape6: FastPathBPF6.Shape?
        if ruleset.families.contains(.ipv6), let home = ruleset.addresses.home6, let mobile = ruleset.addresses.mobile6 {
            shape6 = FastPathBPF6.Shape(home: home, mobile: mobile, inboundUplinks: present)
        }
        do {
            try bpf.prepare(shape, inbound: !engineInbound.contains(.ipv4), gates: gates)
            bpfCarries4 = shape != nil
            ruleset.families.remove(.ipv4)
            try bpf6?.prepare(shape6, inbound: !engineInbound.contains(.ipv6), gates: gates)
            bpfCarries6 = shape6 != nil
            ruleset.families.remove(.ipv6)
            return true
        } catch {
            refuseBPF(error)
            return false
        }
    }

    /// Whether a peer the maps had no room for (``peerLimit``) was logged.
    private var refusedLogged = false

    /// Loads every form of rule the fast path uses, for one IPv4 and one IPv6 peer, into a
    /// table that the same transaction deletes again: nothing stays, and a kernel or nft
    /// that lacks a feature (the `inet` ingress hook, a `route` chain, a map lookup as a
    /// value) refuses it here rather than at the first peer.
    private func probe() throws(SystemError) {
        let probeTable = table + "_probe"
        var ruleset = FastPathRuleset(
            addresses: NodeAddresses(home4: IPv4Address("198.51.100.1"), mobile4: IPv4Address("192.0.2.1"),
                                     home6: IPv6Address("2001:db8:100::1"), mobile6: IPv6Address("2001:db8:a::1")),
            domainPrefixes: [])
        // A move's rules: the outbound ones look the released set up first (a superset of
        // the features the rules without a hold use).
        ruleset.gated = [.ipv4, .ipv6]
        var elements = FastPathElements(limit: 2)
        let delta = elements.apply([
            .v4(IPv4Address("198.51.100.2")!): FastPathRuleset.Peer(hoa: .v4(IPv4Address("198.51.100.2")!), preferred: .v4(IPv4Address("192.0.2.2")!),
                                                                    moas: [.v4(IPv4Address("192.0.2.2")!)]),
            .v6(IPv6Address("2001:db8:100::2")!): FastPathRuleset.Peer(hoa: .v6(IPv6Address("2001:db8:100::2")!),
                                                                       preferred: .v6(IPv6Address("2001:db8:a::2")!),
                                                                       moas: [.v6(IPv6Address("2001:db8:a::2")!)]),
        ])
        let batch = ruleset.batch(FastPathRuleset.Placement(table: probeTable, uplinks: ["lo"], localPorts: localPorts,
                                                            markBit: PeerMoATraffic.markBit, heardTimeout: heardTimeout))
            + FastPathRuleset.elements(delta, table: probeTable)
            + FastPathGates().commands(FastPathGates.Changes(released: [.v4(IPv4Address("198.51.100.2")!), .v6(IPv6Address("2001:db8:100::2")!)]),
                                       table: probeTable, whole: false)
        try nftables.run((batch + ["delete table inet \(probeTable)"]).joined(separator: "\n"))
    }

    /// Removes the table, from the engine thread's context (the table's owner) after the
    /// engine has stopped; the kernel would remove it with the context's socket anyway.
    public func close() {
        heard.close()
        resetBPF()
        remove()
        published.withLock { $0 = "off (stopped)" }
    }

    /// Removes the table (nothing translated by the kernel any more).
    private func remove() {
        do {
            try nftables.deleteTable(family: "inet", name: table)
        } catch {
            log(.error, "matd: removing the kernel fast path table failed: \(error)")
        }
    }

    /// Whether IPv4 reverse-path filtering on `uplink` is strict (the larger of `all` and
    /// the device's value is 1).
    static func strictReversePath(_ uplink: String) -> Bool {
        func value(_ device: String) -> Int {
            (try? String(contentsOfFile: "/proc/sys/net/ipv4/conf/\(device)/rp_filter", encoding: .utf8))
                .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        }
        return max(value("all"), value(uplink)) == 1
    }

    /// What the kernel counted on the fast path (`out4_packets`, `in6_bytes`, ...), read
    /// over nfnetlink by the calling thread (``NftablesCounters``: nft would read every
    /// element of the maps first, seconds at 100,000 peers); nil when the table is not
    /// there. A read that fails is counted (`read_failures`, returned with `rule_writes` in
    /// place of the kernel's counters) and logged, the first time and whenever its error
    /// changes.
    public func counters() -> [String: UInt64]? {
        let read: [String: NftablesCounters.Value]
        do {
            read = try NftablesCounters.read(family: "inet", table: table)
        } catch {
            let failures = readFailures.add(1, ordering: .relaxed).newValue
            let text = "\(error)"
            let changed = lastReadError.withLock { last in
                defer { last = text }
                return last != text
            }
            if changed {
                log(.error, "matd: reading the kernel fast path's counters failed (\(error)); \(failures) failure(s) so far")
            }
            return ["rule_writes": writes.load(ordering: .relaxed), "read_failures": failures]
        }
        guard !read.isEmpty else { return nil }
        var counted: [String: UInt64] = [:]
        for (name, value) in read {
            counted["\(name)_packets"] = value.packets
            counted["\(name)_bytes"] = value.bytes
        }
        counted["rule_writes"] = writes.load(ordering: .relaxed)
        if let bpf {
            do {
                // The programs' counts are their families' (nftables has no rules for them
                // then), so `out4_packets` and the rest read the same on either datapath;
                // `bpf_*` say which one counted.
                let translated = try bpf.counted()
                let translated6 = try bpf6?.counted() ?? (outbound: BPFSystem.Count(), inbound: BPFSystem.Count())
                for (name, count) in [("out4", translated.outbound), ("in4", translated.inbound),
                                      ("out6", translated6.outbound), ("in6", translated6.inbound)] {
                    counted["\(name)_packets", default: 0] += count.packets
                    counted["\(name)_bytes", default: 0] += count.bytes
                    counted["bpf_\(name)_packets"] = count.packets
                    counted["bpf_\(name)_bytes"] = count.bytes
                }
            } catch {
                readFailures.add(1, ordering: .relaxed)
                log(.error, "matd: reading the BPF datapath's counters failed (\(error))")
            }
        }
        let failures = readFailures.load(ordering: .relaxed)
        if failures > 0 { counted["read_failures"] = failures }
        return counted
    }

    /// Failed reads of the counters, and the last one's error (logged when it changes).
    private let readFailures = Atomic<UInt64>(0)
    private let lastReadError = Mutex<String?>(nil)
}
