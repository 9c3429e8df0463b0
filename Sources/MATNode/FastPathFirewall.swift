import Foundation
import MATLinux
import MATPacket

/// The kernel fast path delivers a peer's packets to the HoA from the uplink, not from the
/// TUN device, so a host firewall whose input chain drops by default and accepts HoA
/// traffic by `iifname "mat0"` (docs/deploy.md before the fast path) would drop a peer's
/// new connections: the fast path would black-hole what the engine carried. Every packet
/// the fast path translates inbound carries ``FastPathRuleset/translatedMark``; matd
/// looks at start for input chains that drop by default without accepting that mark, says
/// which rule to add, and leaves those families' inbound traffic to the engine (through
/// the TUN device, which such a firewall accepts) until a restart finds the rule.
enum FastPathFirewall {
    /// One input chain that would drop the fast path's inbound packets.
    struct Finding: Equatable, Sendable {
        var family: String
        var table: String
        var chain: String
        /// The address families whose packets the chain sees.
        var families: Set<AddressFamily>
        /// The command that accepts the fast path's packets, to copy as it is (quoted for a
        /// shell: the rule has a `&`).
        var fix: String
    }

    /// The mark as nft prints it.
    static var mark: String { "0x" + String(format: "%08x", FastPathRuleset.translatedMark) }

    /// The rule a host firewall needs, in nft's words.
    static var acceptRule: String { "meta mark & \(mark) == \(mark) accept" }

    /// The input chains (families ip, ip6, inet) that drop by default and accept neither
    /// the fast path's mark nor everything from an uplink.
    static func findings(uplinks: [String], nftables: Nftables) throws -> [Finding] {
        try HostFirewall.droppingChains(hook: "input", nftables: nftables).compactMap { chain in
            if chain.rules.contains(where: { accepts($0, uplinks: uplinks) }) { return nil }
            let fix = chain.madeByIptables
                ? "\(chain.family == "ip" ? "iptables" : "ip6tables") -I \(chain.name) -m mark --mark \(mark)/\(mark) -j ACCEPT"
                : "nft 'insert rule \(chain.family) \(chain.table) \(chain.name) \(acceptRule)'"
            let families: Set<AddressFamily> = chain.family == "ip" ? [.ipv4] : chain.family == "ip6" ? [.ipv6] : [.ipv4, .ipv6]
            return Finding(family: chain.family, table: chain.table, chain: chain.name, families: families, fix: fix)
        }
    }

    /// Whether a rule accepts every packet with the mark: the mark tested alone (as `==`
    /// the bit or `!=` zero), everything from an uplink, or everything.
    static func accepts(_ rule: [String], uplinks: [String]) -> Bool {
        if rule == ["accept"] || rule == ["meta", "mark", "&", mark, "==", mark, "accept"]
            || rule == ["meta", "mark", "&", mark, "!=", "0x00000000", "accept"] { return true }
        return uplinks.contains { rule == ["iifname", "\"\($0)\"", "accept"] || rule == ["iif", "\"\($0)\"", "accept"] }
    }

    /// Logs each finding with its fix and what matd does instead; returns the families
    /// whose inbound the engine keeps. A firewall matd cannot read is assumed to let the
    /// packets through (as without the fast path's check), and said so.
    static func check(uplinks: [String], tun: String, nftables: Nftables) -> Set<AddressFamily> {
        let found: [Finding]
        do {
            found = try findings(uplinks: uplinks, nftables: nftables)
        } catch {
            log(.warning, "matd: could not read the host firewall's input chains (\(error)); if one drops by default, "
                + "add a rule that accepts the kernel fast path's packets to it: \(acceptRule)")
            return []
        }
        for finding in found {
            log(.warning, "matd: warning: the host firewall's input chain \(finding.family) \(finding.table) \(finding.chain) "
                + "drops by default and does not accept the kernel fast path's packets (mark \(mark)), so inbound HoA "
                + "traffic stays with the engine (through \(tun)) and the fast path carries only outbound. "
                + "Allow it with: \(finding.fix) (then restart matd)")
        }
        return found.reduce(into: Set<AddressFamily>()) { $0.formUnion($1.families) }
    }
}
