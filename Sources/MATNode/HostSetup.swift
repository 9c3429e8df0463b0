#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket

/// Everything matd changes on the host, and how it undoes it (docs/datapath.md).
///
/// - On the TUN device (gone with the device when matd stops or dies): the HoAs, routes for
///   the domain prefixes, and per-device sysctls that let the kernel forward what the
///   engine writes back (forwarding, accept_local, rp_filter; IPv6 force_forwarding).
/// - One nftables table, `netdev matd_<tun>`, with an ingress chain per uplink that hands
///   packets from known peers' MoAs to this node's MoA to the TUN device. It is the only
///   thing a crash leaves behind; the next start or `matd cleanup` deletes it.
public final class HostSetup {
    private let config: NodeConfig
    private let netlink: RouteNetlink
    private let nftables: Nftables
    private let tunIndex: Int32

    /// The nftables table matd owns for TUN device `tun`.
    public static func tableName(tun: String) -> String {
        "matd_" + String(tun.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// Configures the host around an open TUN device. Removes a table a dead matd left.
    public init(config: NodeConfig, tun: TunDevice) throws(SystemError) {
        self.config = config
        netlink = try RouteNetlink()
        nftables = try Nftables()
        _ = try? nftables.run("delete table netdev \(Self.tableName(tun: tun.name))")
        // No IPv6 link-local address on the TUN device: nothing but HoA traffic should
        // enter it, and router solicitations from it would only be counted as drops.
        try? Self.writeSysctl("net/ipv6/conf/\(tun.name)/addr_gen_mode", "1")
        try netlink.setUp(tun.name, mtu: 1500)
        tunIndex = try netlink.interfaceIndex(tun.name)
        for home in config.homeAddresses {
            try netlink.addAddress(IPPrefix(home, length: home.family == .ipv4 ? 32 : 128)!, interface: tunIndex)
        }
        for prefix in config.domainPrefixes {
            try netlink.addRoute(prefix, interface: tunIndex, table: RouteNetlink.mainTable)
        }
        try Self.setDeviceSysctls(tun: tun.name)
    }

    /// The uplinks' current addresses, the candidates for the node's MoAs.
    public func uplinkAddresses() throws(SystemError) -> [IPAddress] {
        var found: [IPAddress] = []
        for uplink in config.uplinks {
            let index = try netlink.interfaceIndex(uplink)
            found += try netlink.addresses(interface: index).map(\.address)
        }
        return found
    }

    /// Points the inbound diversion at the node's current MoAs and the peers' MoAs. One
    /// nftables transaction: the old rules stay in force until the new ones replace them.
    public func divertInbound(addresses: NodeAddresses, peerMoAs: [IPAddress]) throws(SystemError) {
        let table = Self.tableName(tun: tunName)
        var batch = ["add table netdev \(table)", "delete table netdev \(table)", "add table netdev \(table)"]
        let peers4 = peerMoAs.compactMap { if case .v4(let a) = $0 { a } else { nil } }
        let peers6 = peerMoAs.compactMap { if case .v6(let a) = $0 { a } else { nil } }
        for uplink in config.uplinks {
            let chain = "in_" + String(uplink.map { $0.isLetter || $0.isNumber ? $0 : "_" })
            batch.append("add chain netdev \(table) \(chain) { type filter hook ingress device \"\(uplink)\" priority -500; policy accept; }")
            if let mobile = addresses.mobile4, let home = addresses.home4, !peers4.isEmpty {
                let set = peers4.map(\.description).joined(separator: ", ")
                batch.append("add rule netdev \(table) \(chain) ip daddr \(mobile) ip saddr { \(set) } fwd ip to \(home) device \"\(tunName)\"")
            }
            if let mobile = addresses.mobile6, let home = addresses.home6, !peers6.isEmpty {
                let set = peers6.map(\.description).joined(separator: ", ")
                batch.append("add rule netdev \(table) \(chain) ip6 daddr \(mobile) ip6 saddr { \(set) } fwd ip6 to \(home) device \"\(tunName)\"")
            }
        }
        try nftables.run(batch.joined(separator: "\n"))
    }

    private var tunName: String { config.tunName }

    /// Removes the nftables table. The TUN device takes its addresses, routes and sysctls
    /// with it when its descriptor closes.
    public func teardown() {
        _ = try? nftables.run("delete table netdev \(Self.tableName(tun: tunName))")
    }

    /// Removes what a matd that died without `teardown` left: its nftables table.
    public static func cleanup(config: NodeConfig) throws(SystemError) -> [String] {
        let table = tableName(tun: config.tunName)
        let nftables = try Nftables()
        guard (try? nftables.run("list table netdev \(table)")) != nil else { return [] }
        try nftables.run("delete table netdev \(table)")
        return ["nftables table netdev \(table)"]
    }

    /// Per-device sysctls of the TUN device: they vanish with it, so nothing host-wide
    /// changes. The kernel must forward what the engine writes back (outbound packets to
    /// peers' MoAs), accept the node's own MoA as a source on it, and not drop it by
    /// reverse-path filtering.
    private static func setDeviceSysctls(tun: String) throws(SystemError) {
        try writeSysctl("net/ipv4/conf/\(tun)/forwarding", "1")
        try writeSysctl("net/ipv4/conf/\(tun)/accept_local", "1")
        try writeSysctl("net/ipv4/conf/\(tun)/rp_filter", "0")
        // Per-device IPv6 forwarding without the host-wide switch (Linux 6.17 and later).
        try? writeSysctl("net/ipv6/conf/\(tun)/force_forwarding", "1")
    }

    private static func writeSysctl(_ key: String, _ value: String) throws(SystemError) {
        let path = "/proc/sys/" + key
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("set sysctl \(key)", errno: errno) }
        defer { close(fd) }
        guard write(fd, value, value.utf8.count) == value.utf8.count else {
            throw SystemError("set sysctl \(key)", errno: errno)
        }
    }
}
