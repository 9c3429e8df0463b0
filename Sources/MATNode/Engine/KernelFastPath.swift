#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket
import Synchronization

/// The kernel fast path (docs/datapath.md, "Kernel fast path"): nftables rewrites the
/// packets of settled mappings statelessly, so they never cross the TUN device and the
/// engine's wakeups. The engine thread computes a ``FastPathRuleset`` from its table
/// after every change and hands it here; this writes it in one transaction, so the rules
/// for a peer are gone before the engine starts holding its packets.
///
/// Table `inet matd_<tun>_fast`, matd's alone: removed on stop with the others.
public final class KernelFastPath: @unchecked Sendable {
    // @unchecked: `nftables`, `applied` and `placement` are touched only by the engine
    // thread; other threads read `published` and the counters (own context).

    /// The environment variable that overrides `kernel-fast-path` (`on` or `off`).
    public static let environmentVariable = "MATD_KERNEL_FAST_PATH"
    /// Whether the fast path is on when neither `kernel-fast-path` nor the environment says.
    public static let defaultSetting = true
    /// With more mappings than this in the engine's table the kernel translates none
    /// (the engine all): every change walks the table and rewrites the maps whole.
    public static let peerLimit = 4_096

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
    private let tun: String
    private let nftables: Nftables
    /// Families whose inbound the engine keeps: the host's input chain would drop the
    /// fast path's packets (``FastPathFirewall``, checked once at start).
    private var engineInbound: Set<AddressFamily> = []
    /// What the kernel has now (nil: nothing yet, or the last write failed and the table
    /// was removed), and where it was put.
    private var applied: FastPathRuleset?
    private var appliedUplinks: [String] = []
    private var failures = 0
    /// Transactions written (each a change of the peers on the fast path or of the node's
    /// addresses), for `matctl stats`.
    private let writes = Atomic<UInt64>(0)
    /// Set when the first write failed: the kernel or nft lacks what the rules need.
    private(set) var unavailable: String?
    private let published = Mutex<(hoas: Set<IPAddress>, state: String)>(([], "starting"))

    /// Prepares the fast path for a node; nothing is written before the first `update`.
    public init(config: NodeConfig) throws(SystemError) {
        table = Self.tableName(tun: config.tunName)
        domainPrefixes = config.domainPrefixes
        uplinks = config.uplinks
        tun = config.tunName
        localPorts = config.udpEncapsulation == .off ? [config.signalingPort] : [config.signalingPort, config.encapPort]
        nftables = try Nftables()
    }

    /// The HoAs the kernel translates for now, for `matctl peers`.
    public var hoas: Set<IPAddress> { published.withLock { $0.hoas } }

    /// `on` (with the number of peers), or why it is not carrying traffic.
    public var state: String { published.withLock { $0.state } }

    /// Makes the kernel's rules say `ruleset`; called on the engine thread after every
    /// change of its state. Does nothing when they already do. A write that fails removes
    /// the table, so every packet goes through the engine, and is logged; the first
    /// failing write (the probe at start) turns the fast path off for good.
    func update(_ ruleset: FastPathRuleset) {
        guard unavailable == nil else { return }
        if applied == nil && failures == 0 && published.withLock({ $0.state }) == "starting" {
            do {
                try probe()
            } catch {
                unavailable = "\(error)"
                published.withLock { $0 = ([], "unavailable: \(error)") }
                log(.warning, "matd: kernel fast path unavailable (\(error)); the TUN engine carries all HoA traffic "
                    + "(needs Linux 5.10 and nftables 1.0; kernel-fast-path = off silences this)")
                return
            }
            engineInbound = FastPathFirewall.check(uplinks: uplinks, tun: tun, nftables: nftables)
        }
        let present = uplinks.filter { if_nametoindex($0) != 0 }
        guard ruleset != applied || present != appliedUplinks else { return }
        var batch: [String] = []
        // A table from before the owner flag (an older matd) cannot become owned: replaced.
        if writes.load(ordering: .relaxed) == 0, (try? nftables.run("list table inet \(table)")) != nil {
            batch.append("delete table inet \(table)")
        }
        // Chains of uplinks that went away: the kernel may keep them, without a device.
        for uplink in appliedUplinks where !present.contains(uplink) {
            let chain = FastPathRuleset.ingressChain(uplink)
            if (try? nftables.run("list chain inet \(table) \(chain)")) != nil { batch.append("delete chain inet \(table) \(chain)") }
        }
        batch += ruleset.batch(FastPathRuleset.Placement(
            table: table, uplinks: present, strictReversePath: Set(present.filter(Self.strictReversePath)),
            localPorts: localPorts, markBit: PeerMoATraffic.markBit, engineInbound: engineInbound))
        do {
            try nftables.run(batch.joined(separator: "\n"))
            let first = applied == nil && failures == 0
            applied = ruleset
            appliedUplinks = present
            writes.add(1, ordering: .relaxed)
            let fenced = engineInbound.isEmpty ? "" : "; inbound "
                + engineInbound.map { $0 == .ipv4 ? "IPv4" : "IPv6" }.sorted().joined(separator: " and ")
                + " through the engine (the host's input chain drops it)"
            published.withLock { $0 = (ruleset.hoas, "on, \(ruleset.peers.count) peer(s)\(fenced)") }
            if first {
                log("matd: kernel fast path on: nftables translates settled mappings (table inet \(table))")
            }
        } catch {
            failures += 1
            applied = nil
            appliedUplinks = []
            remove()
            published.withLock { $0 = ([], "failed, retried at the next change: \(error)") }
            log(.error, "matd: writing the kernel fast path failed (\(error)); the TUN engine carries all HoA traffic until the next change")
        }
    }

    /// Loads every form of rule the fast path uses, for one IPv4 and one IPv6 peer, into a
    /// table that the same transaction deletes again: nothing stays, and a kernel or nft
    /// that lacks a feature (the `inet` ingress hook, a `route` chain, a map lookup as a
    /// value) refuses it here rather than at the first peer.
    private func probe() throws(SystemError) {
        let probeTable = table + "_probe"
        let ruleset = FastPathRuleset(
            addresses: NodeAddresses(home4: IPv4Address("198.51.100.1"), mobile4: IPv4Address("192.0.2.1"),
                                     home6: IPv6Address("2001:db8:100::1"), mobile6: IPv6Address("2001:db8:a::1")),
            peers: [FastPathRuleset.Peer(hoa: .v4(IPv4Address("198.51.100.2")!), preferred: .v4(IPv4Address("192.0.2.2")!),
                                         moas: [.v4(IPv4Address("192.0.2.2")!)]),
                    FastPathRuleset.Peer(hoa: .v6(IPv6Address("2001:db8:100::2")!), preferred: .v6(IPv6Address("2001:db8:a::2")!),
                                         moas: [.v6(IPv6Address("2001:db8:a::2")!)])])
        let batch = ruleset.batch(FastPathRuleset.Placement(table: probeTable, uplinks: ["lo"], localPorts: localPorts,
                                                            markBit: PeerMoATraffic.markBit))
        try nftables.run((batch + ["delete table inet \(probeTable)"]).joined(separator: "\n"))
    }

    /// Removes the table, from the engine thread's context (the table's owner) after the
    /// engine has stopped; the kernel would remove it with the context's socket anyway.
    public func close() {
        remove()
        published.withLock { $0 = ([], "off (stopped)") }
    }

    /// Removes the table (nothing translated by the kernel any more).
    private func remove() {
        guard (try? nftables.run("list table inet \(table)")) != nil else { return }
        do {
            try nftables.run("delete table inet \(table)")
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
    /// with a context of the caller's own; nil when the table is not there. A read that
    /// fails otherwise is counted (`read_failures`, returned with `rule_writes` in place of
    /// the kernel's counters) and logged, the first time and whenever its error changes.
    public func counters() -> [String: UInt64]? {
        let result: [String: UInt64]
        do {
            let nftables = try Nftables()
            do {
                result = try Self.parseCounters(try nftables.runJSON("list counters table inet \(table)"))
            } catch {
                if try !Self.tableExists(table, nftables: nftables) { return nil }
                throw error
            }
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
        guard !result.isEmpty else { return nil }
        var counted = result
        counted["rule_writes"] = writes.load(ordering: .relaxed)
        let failures = readFailures.load(ordering: .relaxed)
        if failures > 0 { counted["read_failures"] = failures }
        return counted
    }

    /// Failed reads of the counters, and the last one's error (logged when it changes).
    private let readFailures = Atomic<UInt64>(0)
    private let lastReadError = Mutex<String?>(nil)

    /// The named counters in nft's JSON (`list counters`): `name_packets`, `name_bytes`.
    /// Throws on text that is not nft's JSON; counters without numbers count as 0.
    static func parseCounters(_ text: String) throws -> [String: UInt64] {
        guard let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let items = json["nftables"] as? [[String: Any]] else {
            throw SystemError("nftables: list counters", detail: "not nft's JSON: \(text.prefix(80))")
        }
        var result: [String: UInt64] = [:]
        for item in items {
            guard let counter = item["counter"] as? [String: Any], let name = counter["name"] as? String else { continue }
            result["\(name)_packets"] = (counter["packets"] as? NSNumber)?.uint64Value ?? 0
            result["\(name)_bytes"] = (counter["bytes"] as? NSNumber)?.uint64Value ?? 0
        }
        return result
    }

    /// Whether the `inet` table exists (listing the tables fails only if nftables does).
    static func tableExists(_ table: String, nftables: Nftables) throws -> Bool {
        let text = try nftables.runJSON("list tables inet")
        guard let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let items = json["nftables"] as? [[String: Any]] else {
            throw SystemError("nftables: list tables", detail: "not nft's JSON: \(text.prefix(80))")
        }
        return items.contains { ($0["table"] as? [String: Any])?["name"] as? String == table }
    }
}
