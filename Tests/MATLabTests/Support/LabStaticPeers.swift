#if canImport(Glibc)
import Glibc
#endif
import Foundation

extension Lab {
    /// Both nodes' configurations, `<node>-<name>.conf`: static peers that know each
    /// other's keys and no IMS (so nothing looks learned peers up). `extra(node)` adds
    /// lines to that node's `[node]` section; `ipv6Peer` adds the peer's IPv6 HoA as a
    /// second `[peer]`.
    func writeStaticPeerConfigurations(_ name: String, ipv6Peer: Bool = false,
                                       extra: (String) -> [String] = { _ in [] }) throws {
        let keys = ["vm": try writeSigningKey("vm"), "cn": try writeSigningKey("cn")]
        for node in keys.keys {
            let me = Addr.node(node)
            let peer = Addr.node(node == "vm" ? "cn" : "vm")
            let peerKey = keys[node == "vm" ? "cn" : "vm"]!.publicKey.base64
            var lines = ["[node]", "home-address = \(me.home4)", "home-address = \(me.home6)", "uplink = eth0",
                         "domain-prefix = 198.51.100.0/24", "domain-prefix = 2001:db8:100::/64",
                         "control-socket = \(socket(node))", "state-directory = \(path("\(node)-state"))"]
            lines += extra(node)
            for (home, mobile) in [(peer.home4, peer.mobile4)] + (ipv6Peer ? [(peer.home6, peer.mobile6)] : []) {
                lines += ["", "[peer]", "home-address = \(home)", "mobile-address = \(mobile)", "public-key = \(peerKey)"]
            }
            try (lines.joined(separator: "\n") + "\n").write(toFile: path("\(node)-\(name).conf"), atomically: true,
                                                             encoding: .utf8)
        }
    }

    /// `count` learned IPv6 peers in `directory`'s state file, as a busy node's after a
    /// restart: HoAs in 2001:db8:4000::/96, MoAs in 2001:db8:4001::/96, where nothing answers.
    func writeLearnedIPv6Peers(_ directory: String, count: Int) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        var text = "{\"version\": 1, \"keys\": {}, \"replay\": {}, \"peers\": [\n"
        for index in 0..<count {
            let suffix = String(index >> 16, radix: 16) + ":" + String(index & 0xffff, radix: 16)
            text += "{\"hoa\": \"2001:db8:4000::\(suffix)\", \"moas\": [\"2001:db8:4001::\(suffix)\"], \"sequence\": 1}"
            text += index + 1 < count ? ",\n" : "\n"
        }
        text += "]}\n"
        let file = directory + "/peers.json"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)
    }
}
