import Foundation
import MATLinux

/// A host firewall whose forward chain drops by default (ufw, Docker, firewalld's
/// defaults) also drops what the engine writes back into the TUN device, which the kernel
/// forwards: HoA traffic would vanish without a word. matd cannot override a drop in a
/// table of someone else's (an accept in its own table does not stop another table's
/// drop), and editing the admin's firewall is not its place, so it finds such chains
/// (``HostFirewallWatcher``: at start and every few seconds) and says exactly which rule to
/// add (docs/datapath.md).
enum ForwardFirewall {
    /// One forward chain that drops by default and has no accept for the TUN device.
    struct Finding: Equatable, Sendable {
        var family: String
        var table: String
        var chain: String
        /// The command that lets the engine's packets through, to copy as it is.
        var fix: String
        /// A chain of legacy iptables (x_tables), not of nftables.
        var legacy = false

        /// The chain as the log names it: `ip filter FORWARD`, `ip filter FORWARD (legacy iptables)`.
        var place: String { "\(family) \(table) \(chain)" + (legacy ? " (legacy iptables)" : "") }
    }

    /// The forward chains (nftables' families ip, ip6, inet, and legacy iptables' FORWARD
    /// in `legacy`) that drop by default and do not accept packets from `tun`. IPv6
    /// packets bypass the forward hook when they leave through nftables (`ipv6Path`
    /// `.nftables`), so an ip6-only chain then does not matter.
    static func findings(tun: String, ipv6Path: IPv6OutboundPath, nftables: Nftables,
                         legacy: LegacyFirewall.Reading) throws -> [Finding] {
        findings(tun: tun, ipv6Path: ipv6Path,
                 chains: try HostFirewall.droppingChains(hook: "forward", nftables: nftables) + legacy.droppingChains("FORWARD"))
    }

    /// The findings among forward chains that drop by default.
    static func findings(tun: String, ipv6Path: IPv6OutboundPath, chains: [HostFirewall.Chain]) -> [Finding] {
        chains.compactMap { chain in
            if chain.family == "ip6" && ipv6Path != .sysctl { return nil }
            if chain.rules.contains(where: { acceptsTun($0, tun: tun) }) { return nil }
            // Tables that iptables made (Docker, ufw) are edited with iptables, so the
            // rule survives their own reloads; anything else with nft.
            let fix = chain.madeByIptables
                ? "\(chain.iptables) -I FORWARD -i \(tun) -j ACCEPT"
                : "nft insert rule \(chain.family) \(chain.table) \(chain.name) iifname \"\(tun)\" accept"
            return Finding(family: chain.family, table: chain.table, chain: chain.name, fix: fix, legacy: chain.legacy)
        }
    }

    /// Whether the chain's text has a rule that accepts everything arriving on `tun`.
    static func acceptsTun(_ listing: String, tun: String) -> Bool {
        HostFirewall.rules(listing).contains { acceptsTun($0, tun: tun) }
    }

    static func acceptsTun(_ rule: [String], tun: String) -> Bool {
        rule == ["iifname", "\"\(tun)\"", "accept"] || rule == ["iif", "\"\(tun)\"", "accept"]
    }
}

/// What matd reads of the host's own nftables firewall: the base chains at a hook that
/// drop what no rule accepts, with their rules as words. One reader for the forward check
/// (``ForwardFirewall``) and the input check of the kernel fast path (``FastPathFirewall``).
/// It reads the text nft prints, the way an admin writes rules; rules it does not
/// recognise count as not accepting, so a check errs towards warning.
enum HostFirewall {
    /// A base chain and its rules.
    struct Chain: Sendable, Equatable {
        var family: String
        var table: String
        var name: String
        /// Each rule's words without counters and comments (`iifname "mat0" accept`).
        var rules: [[String]]
        /// What the chain does with a packet no rule decided on: `accept` or `drop`.
        var policy: String
        /// A chain of legacy iptables (``LegacyFirewall``), not of nftables.
        var legacy = false

        /// Whether it drops what it does not accept: policy drop, or a last rule that
        /// drops or rejects everything.
        var dropsByDefault: Bool { policy == "drop" || rules.last.map(HostFirewall.dropsEverything) == true }

        /// iptables-nft's tables (Docker, ufw) and legacy iptables': edited with iptables,
        /// so a rule survives their own reloads.
        var madeByIptables: Bool { legacy || (table == "filter" && name == name.uppercased() && family != "inet") }

        /// The iptables command for the chain's family and kind.
        var iptables: String { (family == "ip" ? "iptables" : "ip6tables") + (legacy ? "-legacy" : "") }
    }

    /// The base chains at `hook` (families ip, ip6, inet) that drop what they do not
    /// accept: policy drop, or a last rule that drops or rejects everything.
    static func droppingChains(hook: String, nftables: Nftables) throws -> [Chain] {
        let text = try nftables.runJSON("list chains")
        guard let root = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let items = root["nftables"] as? [[String: Any]] else { return [] }
        var result: [Chain] = []
        for item in items {
            guard let chain = item["chain"] as? [String: Any], chain["hook"] as? String == hook,
                  let family = chain["family"] as? String, let table = chain["table"] as? String,
                  let name = chain["name"] as? String, ["ip", "ip6", "inet"].contains(family) else { continue }
            let found = Chain(family: family, table: table, name: name,
                              rules: Self.rules(try nftables.run("list chain \(family) \(table) \(name)")),
                              policy: chain["policy"] as? String ?? "accept")
            if found.dropsByDefault { result.append(found) }
        }
        return result
    }

    /// The rules of one chain as nft lists it, each as its words without counters
    /// (`counter packets 12 bytes 3400`) and without a trailing comment.
    static func rules(_ listing: String) -> [[String]] {
        listing.split(separator: "\n").compactMap { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = words.first, words.last != "{", first != "}",
                  !["type", "policy", "comment", "devices", "flags"].contains(first) else { return nil }
            let rule = words.prefix { $0 != "comment" }
                .filter { !["counter", "packets", "bytes"].contains($0) && Int($0) == nil }
            return rule.isEmpty ? nil : rule
        }
    }

    /// Whether a rule drops or rejects every packet that reaches it (no match before the verdict).
    static func dropsEverything(_ rule: [String]) -> Bool {
        rule == ["drop"] || rule.first == "reject"
    }
}
