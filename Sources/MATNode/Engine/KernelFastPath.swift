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

    /// The environment variable that overrides `kernel-fast-path` (`on` or `off`).
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
        case "on", "1", "yes", "true": true
        case "off", "0", "no", "false": false
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
    }

    /// The peers (HoAs) whose packets the kernel translated inbound since the last call,
    /// with when each last was at the latest (monotonic ms), as far as the reader has read.
    public func takeHeard() -> [IPAddress: UInt64] { heard.take() }

    /// `on` (with the number of peers), or why it is not carrying traffic.
    public var state: String { published.withLock { $0 } }

    /// Whether the kernel translates `hoa`'s packets now (engine thread only).
    func carries(_ hoa: IPAddress) -> Bool {
        guard let applied, applied.families.contains(hoa.family) else { return false }
        return elements.peers[hoa] != nil
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
    /// peer, or nil, for each HoA its last change touched); called on the engine thread
    /// after every change of its state, before it reads another packet. Writes only what
    /// differs, in one transaction. A write that fails removes the table, so every packet
    /// goes through the engine, and is logged; the next update writes it from scratch. The
    /// first failing write (the probe at start) turns the fast path off for good.
    func update(_ ruleset: FastPathRuleset, decisions: [IPAddress: FastPathRuleset.Peer?]) {
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
        let delta = elements.apply(decisions)
        if delta.refused > 0 && !refusedLogged {
            refusedLogged = true
            log(.warning, "matd: kernel fast path: \(delta.refused) peer(s) left to the engine: the maps hold "
                + "\(Self.peerLimit) peers at most (or a MoA was another peer's); logged once")
        }
        batch += FastPathRuleset.elements(delta, table: table)
        guard !batch.isEmpty else { return }
        do {
            try nftables.run(batch.joined(separator: "\n"))
            applied = ruleset
            appliedPlacement = placement
            writes.add(1, ordering: .relaxed)
            let fenced = engineInbound.isEmpty ? "" : "; inbound "
                + engineInbound.map { $0 == .ipv4 ? "IPv4" : "IPv6" }.sorted().joined(separator: " and ")
                + " through the engine (the host's input chain drops it)"
            let peers = ruleset.families.reduce(0) { $0 + elements.count($1) }
            published.withLock { $0 = "on, \(peers) peer(s)\(fenced)" }
            if fresh && failures == 0 {
                log("matd: kernel fast path on: nftables translates settled mappings (table inet \(table))")
            }
        } catch {
            failures += 1
            applied = nil
            appliedPlacement = nil
            elements.restart(backlog: [])
            wantsAllPeers = true
            remove()
            published.withLock { $0 = "failed, retried at the next change: \(error)" }
            log(.error, "matd: writing the kernel fast path failed (\(error)); the TUN engine carries all HoA traffic until the next change")
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
        let ruleset = FastPathRuleset(
            addresses: NodeAddresses(home4: IPv4Address("198.51.100.1"), mobile4: IPv4Address("192.0.2.1"),
                                     home6: IPv6Address("2001:db8:100::1"), mobile6: IPv6Address("2001:db8:a::1")),
            domainPrefixes: [])
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
        try nftables.run((batch + ["delete table inet \(probeTable)"]).joined(separator: "\n"))
    }

    /// Removes the table, from the engine thread's context (the table's owner) after the
    /// engine has stopped; the kernel would remove it with the context's socket anyway.
    public func close() {
        heard.close()
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
        let failures = readFailures.load(ordering: .relaxed)
        if failures > 0 { counted["read_failures"] = failures }
        return counted
    }

    /// Failed reads of the counters, and the last one's error (logged when it changes).
    private let readFailures = Atomic<UInt64>(0)
    private let lastReadError = Mutex<String?>(nil)
}
