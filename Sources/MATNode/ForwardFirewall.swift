import Foundation
import MATLinux

/// A host firewall whose forward chain drops by default (ufw, Docker, firewalld's
/// defaults) also drops what the engine writes back into the TUN device, which the kernel
/// forwards: HoA traffic would vanish without a word. matd cannot override a drop in a
/// table of someone else's (an accept in its own table does not stop another table's
/// drop), and editing the admin's firewall is not its place, so it finds such chains at
/// start and says exactly which rule to add (docs/datapath.md).
enum ForwardFirewall {
    /// One forward chain that drops by default and has no accept for the TUN device.
    struct Finding: Equatable, Sendable {
        var family: String
        var table: String
        var chain: String
        /// The command that lets the engine's packets through, to copy as it is.
        var fix: String
    }

    /// The forward chains (families ip, ip6, inet) with policy drop that do not accept
    /// packets from `tun`. IPv6 packets bypass the forward hook when they leave through
    /// nftables (`ipv6Path` `.nftables`), so an ip6-only chain then does not matter.
    static func findings(tun: String, ipv6Path: IPv6OutboundPath, nftables: Nftables) throws -> [Finding] {
        let text = try nftables.runJSON("list chains")
        guard let root = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let items = root["nftables"] as? [[String: Any]] else { return [] }
        var result: [Finding] = []
        for item in items {
            guard let chain = item["chain"] as? [String: Any], chain["hook"] as? String == "forward",
                  chain["policy"] as? String == "drop", let family = chain["family"] as? String,
                  let table = chain["table"] as? String, let name = chain["name"] as? String,
                  ["ip", "ip6", "inet"].contains(family) else { continue }
            if family == "ip6" && ipv6Path != .sysctl { continue }
            let rules = try nftables.run("list chain \(family) \(table) \(name)")
            if acceptsTun(rules, tun: tun) { continue }
            // Tables that iptables-nft made (Docker, ufw) are edited with iptables, so the
            // rule survives their own reloads; anything else with nft.
            let fix: String
            if table == "filter" && name == "FORWARD" && family != "inet" {
                fix = "\(family == "ip" ? "iptables" : "ip6tables") -I FORWARD -i \(tun) -j ACCEPT"
            } else {
                fix = "nft insert rule \(family) \(table) \(name) iifname \"\(tun)\" accept"
            }
            result.append(Finding(family: family, table: table, chain: name, fix: fix))
        }
        return result
    }

    /// Whether the chain's text has a rule that accepts everything arriving on `tun`.
    static func acceptsTun(_ listing: String, tun: String) -> Bool {
        listing.split(separator: "\n").contains { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).filter { !["counter", "packets", "bytes"].contains($0) && Int($0) == nil }
            return words == ["iifname", "\"\(tun)\"", "accept"] || words == ["iif", "\"\(tun)\"", "accept"]
        }
    }

    /// Logs each finding with its fix; returns how many there were.
    @discardableResult
    static func warn(tun: String, ipv6Path: IPv6OutboundPath, nftables: Nftables) -> Int {
        let found: [Finding]
        do {
            found = try findings(tun: tun, ipv6Path: ipv6Path, nftables: nftables)
        } catch {
            log("matd: could not read the host firewall's forward chains (\(error)); if one drops by default, "
                + "add a rule that accepts packets from \(tun) to it")
            return 0
        }
        for finding in found {
            log("matd: warning: the host firewall's forward chain \(finding.family) \(finding.table) \(finding.chain) "
                + "drops by default, so HoA traffic the engine sends out of \(tun) is dropped. Allow it with: \(finding.fix)")
        }
        return found.count
    }
}
