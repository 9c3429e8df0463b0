#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket
import MATSystem
import MATWire
import Synchronization

/// Traffic between this node's MoA and a peer's MoA that is not HoA traffic (ssh to the
/// MoA, monitoring, a service bound to the MoA) is left alone (docs/datapath.md). The
/// uplinks' diversion sends everything from a peer's MoA to the engine, so packets that
/// belong to such traffic carry a mark bit when they reach it, and it lets them pass:
///
/// - Flows this host itself sends from a local address to a peer's MoA (not through the
///   TUN device, so not HoA traffic): the `output` chain of table `inet matd_<tun>` puts
///   (peer MoA, protocol, peer port, local port) into a timed set on every packet, and
///   (peer MoA, echo id) for pings, whose replies are let through. A third set holds the
///   same flows as an ICMP error quotes them (raw header offsets), so "fragmentation
///   needed" and "packet too big" about them reach the socket, not the engine: without
///   them path MTU discovery of such a flow stalls.
/// - Services bound to the MoA itself (not to the HoA, not to the wildcard address): a
///   watcher reads the kernel's socket tables every second and keeps (MoA, protocol,
///   port) in a second set. A wildcard listener stays reachable too, through the engine
///   (it sees the peer's HoA), since a packet cannot tell which the peer meant.
///
/// An `ingress` chain per uplink in that table (priority -510, before the diversion at
/// -500) looks packets up in both sets and sets the bit; the diversion's first rule takes
/// it off again and accepts the packet. The sets are in a table of their own because the
/// diversion's table is replaced on every change and would forget them.
enum PeerMoATraffic {
    /// The mark bit that tells the diversion to let a packet pass; cleared before the
    /// packet goes on, so policy routing and other firewalls never see it.
    static let markBit: UInt32 = 0x2000_0000

    /// How long a flow is remembered after its last packet from this host, seconds.
    static let flowTimeout = 3_600

    /// The diversion's first rule: marked packets pass, without the mark.
    static func passRule(table: String, chain: String) -> String {
        let cleared = String(~markBit, radix: 16)
        return "add rule netdev \(table) \(chain) meta mark and 0x\(String(markBit, radix: 16)) == 0x\(String(markBit, radix: 16)) "
            + "meta mark set meta mark and 0x\(cleared) accept"
    }

    /// On the BPF datapath (`kernel-fast-path = bpf`) the inbound program runs at the
    /// uplink's tc hook, before every nftables ingress chain, and sets
    /// ``FastPathRuleset/translatedMark`` only on a packet it rewrote to this node's HoA.
    /// The ingress chain here and the diversion's match nothing but packets to this node's
    /// MoA, so such a packet leaves them at this rule instead of walking theirs
    /// (docs/benchmarks.md, "Where the BPF datapath's time goes"). Only on that datapath:
    /// without the fast path nothing of matd's sets the bit, and nftables' rewrite sets it
    /// after PeerMoATraffic's chain (the diversion, after both, is left as it was there).
    static func translatedPassRule(tableFamily: String, table: String, chain: String) -> String {
        let bit = "0x" + String(FastPathRuleset.translatedMark, radix: 16)
        return "add rule \(tableFamily) \(table) \(chain) meta mark & \(bit) == \(bit) accept"
    }

    /// Chains of the inet table, emptied before each rewrite.
    static func chains(uplinks: [String]) -> [String] {
        ["out"] + uplinks.map { "in_" + String($0.map { $0.isLetter || $0.isNumber ? $0 : "_" }) }
    }

    /// The batch that (re)writes the inet table's chains for the current MoAs: each chain
    /// is added (nothing happens if it is there) and emptied before its rules, so nothing
    /// needs asking first; the sets (and the flows in them) survive it. The peers' MoAs are the elements of its
    /// `PeerMoASets`, filled by the caller. `translated`: each ingress chain starts with
    /// ``translatedPassRule(tableFamily:table:chain:)`` (the BPF datapath).
    static func batch(table: String, tun: String, uplinks: [String], addresses: NodeAddresses,
                      translated: Bool = false) -> [String] {
        var batch = [
            "add table inet \(table)",
            "add set inet \(table) flows4 { type ipv4_addr . inet_proto . inet_service . inet_service; flags dynamic, timeout; timeout \(flowTimeout)s; size 1048576; }",
            "add set inet \(table) flows6 { type ipv6_addr . inet_proto . inet_service . inet_service; flags dynamic, timeout; timeout \(flowTimeout)s; size 1048576; }",
            "add set inet \(table) listen4 { type ipv4_addr . inet_proto . inet_service; }",
            "add set inet \(table) listen6 { type ipv6_addr . inet_proto . inet_service; }",
            "add set inet \(table) echo4 { typeof ip daddr . icmp id; flags dynamic, timeout; timeout 60s; size 65536; }",
            "add set inet \(table) echo6 { typeof ip6 daddr . icmpv6 id; flags dynamic, timeout; timeout 60s; size 65536; }",
            // Keyed as an ICMP error quotes the packet: peer, protocol, then the local and
            // the peer's port as one 32-bit word (raw offsets: nft cannot swap them).
            "add set inet \(table) quoted4 { typeof @nh,128,32 . @nh,72,8 . @th,0,32; flags dynamic, timeout; timeout \(flowTimeout)s; size 1048576; }",
            "add set inet \(table) quoted6 { typeof @nh,192,128 . @nh,48,8 . @th,0,32; flags dynamic, timeout; timeout \(flowTimeout)s; size 1048576; }",
            "add chain inet \(table) out { type filter hook output priority 0; policy accept; }",
            "flush chain inet \(table) out",
            // HoA traffic (routed into the TUN device; the kernel fast path rewrites it after
            // this chain) leaves the chain on one compare instead of the rules' set lookups:
            // about 4 us less per round trip on the fast path (docs/benchmarks.md).
            "add rule inet \(table) out oifname \"\(tun)\" accept",
        ] + PeerMoASets.declarations(tableFamily: "inet", table: table, quoted: false)
        let mark = "meta mark set meta mark or 0x\(String(markBit, radix: 16))"
        for (family, ip, suffix) in [(AddressFamily.ipv4, "ip", "4"), (.ipv6, "ip6", "6")] {
            guard addresses.mobileAddresses.contains(where: { $0.family == family }) else { continue }
            let set = "@" + PeerMoASets.name(family)
            // Locally generated, not routed into the TUN device: not HoA traffic.
            batch.append("add rule inet \(table) out meta l4proto { tcp, udp } \(ip) daddr \(set) oifname != \"\(tun)\" "
                         + "update @flows\(suffix) { \(ip) daddr . meta l4proto . th dport . th sport }")
            let quotedKey = family == .ipv4 ? "@nh,128,32 . @nh,72,8 . @th,0,32" : "@nh,192,128 . @nh,48,8 . @th,0,32"
            batch.append("add rule inet \(table) out meta l4proto { tcp, udp } \(ip) daddr \(set) oifname != \"\(tun)\" "
                         + "update @quoted\(suffix) { \(quotedKey) }")
            let icmp = family == .ipv4 ? "icmp" : "icmpv6"
            batch.append("add rule inet \(table) out \(icmp) type echo-request \(ip) daddr \(set) oifname != \"\(tun)\" "
                         + "update @echo\(suffix) { \(ip) daddr . \(icmp) id }")
        }
        for (uplink, chain) in zip(uplinks, chains(uplinks: uplinks).dropFirst()) {
            batch.append("add chain inet \(table) \(chain) { type filter hook ingress device \"\(uplink)\" priority -510; policy accept; }")
            batch.append("flush chain inet \(table) \(chain)")
            if translated { batch.append(translatedPassRule(tableFamily: "inet", table: table, chain: chain)) }
            for (family, ip, suffix) in [(AddressFamily.ipv4, "ip", "4"), (.ipv6, "ip6", "6")] {
                guard let moa = addresses.mobileAddresses.first(where: { $0.family == family }) else { continue }
                let prefix = "add rule inet \(table) \(chain) \(ip) daddr \(moa) meta l4proto { tcp, udp }"
                // A packet from the peer keeps the flow too, not only ours.
                let key = "\(ip) saddr . meta l4proto . th sport . th dport"
                batch.append("\(prefix) \(key) @flows\(suffix) update @flows\(suffix) { \(key) } \(mark)")
                batch.append("\(prefix) \(ip) daddr . meta l4proto . th dport @listen\(suffix) \(mark)")
                let icmp = family == .ipv4 ? "icmp" : "icmpv6"
                batch.append("add rule inet \(table) \(chain) \(ip) daddr \(moa) \(icmp) type echo-reply "
                             + "\(ip) saddr . \(icmp) id @echo\(suffix) \(mark)")
                // The quoted header starts 8 bytes into the ICMP message (an IPv4 one
                // without options).
                let (errors, quoted) = family == .ipv4
                    ? ("icmp type { destination-unreachable, time-exceeded, parameter-problem }",
                       "@th,192,32 . @th,136,8 . @th,224,32")
                    : ("icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem }",
                       "@th,256,128 . @th,112,8 . @th,384,32")
                batch.append("add rule inet \(table) \(chain) \(ip) daddr \(moa) \(errors) \(quoted) @quoted\(suffix) \(mark)")
            }
        }
        return batch
    }

    /// A TCP listener or UDP socket bound to one of the node's MoAs.
    struct BoundService: Hashable, Sendable {
        var address: IPAddress
        /// 6 (TCP) or 17 (UDP).
        var proto: UInt8
        var port: UInt16

        /// Its element of `listen4`/`listen6`.
        var element: String { "\(address) . \(proto == 6 ? "tcp" : "udp") . \(port)" }
    }

    /// The TCP listeners and UDP sockets bound to one of `mobile` exactly, whose port no
    /// socket on another local address (the HoA, the wildcard) shares: those are the ones
    /// only MoA traffic can mean.
    static func servicesBound(to mobile: [IPAddress]) -> Set<BoundService> {
        var result = Set<BoundService>()
        for (file, proto, listenOnly) in [("tcp", UInt8(6), true), ("tcp6", 6, true), ("udp", 17, false), ("udp6", 17, false)] {
            guard let text = try? String(contentsOfFile: "/proc/net/\(file)", encoding: .utf8) else { continue }
            var onMoA: [UInt16: IPAddress] = [:]
            var elsewhere = Set<UInt16>()
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 3 else { continue }
                if listenOnly && fields[3] != "0A" { continue }
                let local = fields[1].split(separator: ":")
                guard local.count == 2, let port = UInt16(local[1], radix: 16),
                      let address = procAddress(local[0]) else { continue }
                if mobile.contains(address) { onMoA[port] = address } else { elsewhere.insert(port) }
            }
            for (port, address) in onMoA where !elsewhere.contains(port) {
                result.insert(BoundService(address: address, proto: proto, port: port))
            }
        }
        return result
    }

    /// An address as /proc/net/{tcp,udp}{,6} shows it: 32-bit words in host order.
    private static func procAddress(_ hex: Substring) -> IPAddress? {
        guard hex.count == 8 || hex.count == 32 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 8)
            guard let word = UInt32(hex[index..<next], radix: 16) else { return nil }
            // The kernel printed the word as loaded from the address's bytes in host
            // order: its bytes in memory are the address's, in network order.
            withUnsafeBytes(of: word) { bytes += $0 }
            index = next
        }
        return bytes.count == 4 ? .v4(IPv4Address(BigEndian.u32(bytes, at: 0)))
            : .v6(IPv6Address(high: BigEndian.u64(bytes, at: 0), low: BigEndian.u64(bytes, at: 8)))
    }
}

/// Keeps the `listen4`/`listen6` sets of table `inet matd_<tun>` equal to the services
/// bound to the node's MoAs, checking once a second on a thread of its own (with its own
/// nftables context: libnftables contexts are not shared between threads), and tells
/// the observer (the BPF datapath's MoA-to-MoA guard, whose service map the nftables sets
/// do not reach) each time they change.
final class MoAServiceWatch: @unchecked Sendable {
    private let table: String
    private let mobile = Mutex<[IPAddress]>([])
    private let thread = WatcherThread()
    /// Who is told the services, and the services as found last (both behind the lock, so
    /// an observer set late starts from the current ones).
    private let observed = Mutex<(observer: (@Sendable (Set<PeerMoATraffic.BoundService>) -> Void)?,
                                  services: Set<PeerMoATraffic.BoundService>)>((nil, []))

    init(table: String) { self.table = table }

    /// Starts watching; the table must exist. Without a thread to be had, the services
    /// are not watched (logged): peers reach them through the engine only.
    func start() {
        if !thread.start(name: "matd-moa-svc", { [self] in run() }) { log("matd: services bound to the MoA cannot be watched: no thread; peers reach them through the engine only") }
    }

    /// The MoAs to watch from now on; checked at once.
    func watch(_ addresses: [IPAddress]) {
        mobile.withLock { $0 = addresses }
        thread.wake()
    }

    /// Stops the thread and waits for it.
    func stop() { thread.stop() }

    /// Calls `observer` with the services found now and again (on the watch's thread)
    /// whenever they change.
    func observe(_ observer: @escaping @Sendable (Set<PeerMoATraffic.BoundService>) -> Void) {
        observed.withLock { state in
            state.observer = observer
            observer(state.services)
        }
    }

    private func run() {
        let nftables: Nftables
        do {
            nftables = try Nftables()
        } catch {
            log("matd: services bound to the MoA cannot be watched: \(error); peers reach them through the engine only")
            return
        }
        var current = Set<PeerMoATraffic.BoundService>()
        var failing = false
        repeat {
            let next = PeerMoATraffic.servicesBound(to: mobile.withLock { $0 })
            observed.withLock { state in
                guard next != state.services else { return }
                state.services = next
                state.observer?(next)
            }
            if next != current {
                var batch = ["flush set inet \(table) listen4", "flush set inet \(table) listen6"]
                for service in next.sorted(by: { $0.element < $1.element }) {
                    batch.append("add element inet \(table) listen\(service.address.family == .ipv6 ? "6" : "4") { \(service.element) }")
                }
                do {
                    try nftables.run(batch.joined(separator: "\n"))
                    current = next
                    failing = false
                } catch {
                    // Logged once per failure spell; tried again next second.
                    if !failing { log("matd: updating the services bound to the MoA failed: \(error)") }
                    failing = true
                }
            }
        } while thread.sleep(milliseconds: 1_000)
    }
}
