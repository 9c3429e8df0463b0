#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket

/// How IPv6 packets the engine writes back into the TUN device leave by the uplink
/// (`ipv6-forwarding` in [node], docs/config.md).
public enum IPv6ForwardingSetting: String, Sendable, Equatable, CaseIterable {
    /// The per-device sysctl where the kernel has it (Linux 6.17+), nftables otherwise.
    case auto
    /// Only `net.ipv6.conf.<tun>.force_forwarding`; start fails without it.
    case sysctl
    /// Only an nftables `fwd ip6` on the TUN device's ingress, even where the sysctl exists
    /// (tests run this path on new kernels, so both stay working).
    case nftables
}

/// The IPv6 outbound path matd chose at start (docs/datapath.md).
public enum IPv6OutboundPath: String, Sendable, Equatable {
    /// The node has no IPv6 home address: nothing to forward.
    case none
    /// The kernel forwards: `force_forwarding` on the TUN device.
    case sysctl
    /// A netdev-ingress chain on the TUN device hands each translated packet to the next
    /// hop on the uplink (`fwd ip6 to <next hop> device <uplink>`), no sysctl needed.
    case nftables
}

extension HostSetup {
    /// Picks the IPv6 outbound path for `setting` by probing the kernel, and sets the
    /// sysctl when that is the path. Throws, naming what failed and what to change, when
    /// no allowed path works: IPv6 HoA traffic would otherwise be dropped without a word.
    static func chooseIPv6Path(setting: IPv6ForwardingSetting, tun: String, needed: Bool,
                               nftables: Nftables) throws(SystemError) -> IPv6OutboundPath {
        let key = "net/ipv6/conf/\(tun)/force_forwarding"
        guard needed else { return .none }
        var sysctlError: SystemError?
        if setting != .nftables {
            do {
                try writeSysctl(key, "1")
                return .sysctl
            } catch {
                sysctlError = error
            }
        } else {
            // A device a previous matd left may still have it: the forced path must be the
            // one that carries the traffic. A kernel without the key has nothing to undo.
            do {
                try writeSysctl(key, "0")
            } catch where error.errno == ENOENT {
            } catch {
                throw error
            }
        }
        let sysctlWhy = sysctlError.map { "net.ipv6.conf.\(tun).force_forwarding cannot be set (\($0)); it needs Linux 6.17 or later" }
        if setting == .sysctl {
            throw SystemError("IPv6 outbound (ipv6-forwarding = sysctl)",
                              detail: "\(sysctlWhy ?? "failed"). Set ipv6-forwarding = auto or nftables to forward "
                                  + "with nftables instead, or remove the IPv6 home-address")
        }
        do {
            try probeForward6(tun: tun, nftables: nftables)
        } catch {
            let nftWhy = "nftables cannot forward IPv6 from \(tun) (\(error)); it needs Linux 5.10 and nftables 0.9.7 or later"
            throw SystemError("IPv6 outbound (ipv6-forwarding = \(setting.rawValue))",
                              detail: [sysctlWhy, nftWhy].compactMap { $0 }.joined(separator: "; ")
                                  + ". IPv6 home-address traffic cannot leave this host: upgrade the kernel or "
                                  + "nftables, or remove the IPv6 home-address")
        }
        if let sysctlWhy { log("matd: IPv6 outbound through nftables: \(sysctlWhy)") }
        return .nftables
    }

    /// Asks the kernel to accept an `fwd ip6 to ... device` rule on the TUN device's
    /// ingress, in one transaction that also removes it: nothing stays behind, and a kernel
    /// without the expression (or the netdev family) refuses the whole batch.
    private static func probeForward6(tun: String, nftables: Nftables) throws(SystemError) {
        let table = "matd_probe_" + String(tun.map { $0.isLetter || $0.isNumber ? $0 : "_" })
        try nftables.run("""
            add table netdev \(table)
            add chain netdev \(table) probe { type filter hook ingress device "\(tun)" priority 0; policy accept; }
            add rule netdev \(table) probe ip6 daddr ::1 fwd ip6 to ::1 device "\(tun)"
            delete table netdev \(table)
            """)
    }
}
