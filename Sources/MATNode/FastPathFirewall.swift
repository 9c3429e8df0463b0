import Foundation
import MATLinux
import MATPacket

/// The kernel fast path delivers a peer's packets to the HoA from the uplink, not from the
/// TUN device, so a host firewall whose input chain drops by default and accepts HoA
/// traffic by `iifname "mat0"` (docs/deploy.md before the fast path) would drop a peer's
/// new connections: the fast path would black-hole what the engine carried. Every packet
/// the fast path translates inbound carries ``FastPathRuleset/translatedMark``; matd
/// looks for input chains that drop by default without accepting that mark (at start and
/// every few seconds, ``HostFirewallWatcher``), says which rule to add, and leaves those
/// families' inbound traffic to the engine (through the TUN device, which such a firewall
/// accepts) until it finds the rule.
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
        /// A chain of legacy iptables (x_tables), not of nftables.
        var legacy = false

        /// The chain as the log names it: `ip filter INPUT`, `ip filter INPUT (legacy iptables)`.
        var place: String { "\(family) \(table) \(chain)" + (legacy ? " (legacy iptables)" : "") }
    }

    /// The mark as nft prints it.
    static var mark: String { "0x" + String(format: "%08x", FastPathRuleset.translatedMark) }

    /// The rule a host firewall needs, in nft's words.
    static var acceptRule: String { "meta mark & \(mark) == \(mark) accept" }

    /// The input chains (nftables' families ip, ip6, inet, and legacy iptables' INPUT in
    /// `legacy`) that drop by default and accept neither the fast path's mark nor
    /// everything from an uplink.
    static func findings(uplinks: [String], nftables: Nftables, legacy: LegacyFirewall.Reading) throws -> [Finding] {
        findings(uplinks: uplinks,
                 chains: try HostFirewall.droppingChains(hook: "input", nftables: nftables) + legacy.droppingChains("INPUT"))
    }

    /// The findings among input chains that drop by default.
    static func findings(uplinks: [String], chains: [HostFirewall.Chain]) -> [Finding] {
        chains.compactMap { chain in
            if chain.rules.contains(where: { accepts($0, uplinks: uplinks) }) { return nil }
            let fix = chain.madeByIptables
                ? "\(chain.iptables) -I \(chain.name) -m mark --mark \(mark)/\(mark) -j ACCEPT"
                : "nft 'insert rule \(chain.family) \(chain.table) \(chain.name) \(acceptRule)'"
            let families: Set<AddressFamily> = chain.family == "ip" ? [.ipv4] : chain.family == "ip6" ? [.ipv6] : [.ipv4, .ipv6]
            return Finding(family: chain.family, table: chain.table, chain: chain.name, families: families, fix: fix,
                           legacy: chain.legacy)
        }
    }

    /// Whether a rule accepts every packet with the mark: the mark tested alone (as `==`
    /// the bit or `!=` zero), everything from an uplink, or everything.
    static func accepts(_ rule: [String], uplinks: [String]) -> Bool {
        if rule == ["accept"] || rule == ["meta", "mark", "&", mark, "==", mark, "accept"]
            || rule == ["meta", "mark", "&", mark, "!=", "0x00000000", "accept"] { return true }
        return uplinks.contains { rule == ["iifname", "\"\($0)\"", "accept"] || rule == ["iif", "\"\($0)\"", "accept"] }
    }
}
