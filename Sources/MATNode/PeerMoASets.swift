import MATPacket

/// The peers' MoAs as elements of named nftables sets, which the rules of both of matd's
/// tables (the diversion, `netdev matd_<tun>`, and MoA-to-MoA traffic, `inet matd_<tun>`)
/// match on: a peer that comes or goes costs one element, not a rewrite of every rule.
/// With the MoAs written into each rule, every change rewrote them all: at 100,000 peers
/// that took seconds per change, during which matd's service thread did nothing else.
///
/// `peers4` / `peers6` hold the addresses; the diversion's `quoted4` / `quoted6` hold the
/// same as integers, for the rule that matches the destination quoted in an ICMP error
/// (a raw payload expression, which only an integer set can match).
struct PeerMoASets: Equatable {
    var addresses: Set<IPAddress> = []

    /// The set of `family`'s addresses.
    static func name(_ family: AddressFamily) -> String { family == .ipv4 ? "peers4" : "peers6" }

    /// The set of `family`'s addresses as integers (the diversion's ICMP error rule).
    static func quotedName(_ family: AddressFamily) -> String { family == .ipv4 ? "quoted_peers4" : "quoted_peers6" }

    /// What an ICMP error's quoted destination is read as, per family.
    static func quotedExpression(_ family: AddressFamily) -> String { family == .ipv4 ? "@th,192,32" : "@th,256,128" }

    /// Elements per `add element` command: one transaction still, in lines nft parses
    /// without trouble.
    static let elementsPerCommand = 4_096

    /// The commands that declare the sets in `table` (`netdev` or `inet`); `quoted`: the
    /// integer sets too. Declaring an existing set changes nothing.
    static func declarations(tableFamily: String, table: String, quoted: Bool) -> [String] {
        var batch = [
            "add set \(tableFamily) \(table) \(name(.ipv4)) { type ipv4_addr; }",
            "add set \(tableFamily) \(table) \(name(.ipv6)) { type ipv6_addr; }",
        ]
        if quoted {
            for family in [AddressFamily.ipv4, .ipv6] {
                batch.append("add set \(tableFamily) \(table) \(quotedName(family)) { typeof \(quotedExpression(family)); }")
            }
        }
        return batch
    }

    /// The commands that fill the declared sets with every address, after a flush.
    func fill(tableFamily: String, table: String, quoted: Bool) -> [String] {
        var batch: [String] = []
        for family in [AddressFamily.ipv4, .ipv6] {
            batch.append("flush set \(tableFamily) \(table) \(Self.name(family))")
            if quoted { batch.append("flush set \(tableFamily) \(table) \(Self.quotedName(family))") }
        }
        return batch + Self.elements("add", addresses, tableFamily: tableFamily, table: table, quoted: quoted)
    }

    /// The commands that turn this content into `next`'s: only what changed.
    func changes(to next: PeerMoASets, tableFamily: String, table: String, quoted: Bool) -> [String] {
        Self.elements("delete", addresses.subtracting(next.addresses), tableFamily: tableFamily, table: table, quoted: quoted)
            + Self.elements("add", next.addresses.subtracting(addresses), tableFamily: tableFamily, table: table, quoted: quoted)
    }

    /// The commands that add or delete (`verb`) `addresses` in the sets of `table`.
    static func elements(_ verb: String, _ addresses: Set<IPAddress>, tableFamily: String, table: String,
                                 quoted: Bool) -> [String] {
        var batch: [String] = []
        for family in [AddressFamily.ipv4, .ipv6] {
            let members = Array(addresses.filter { $0.family == family })
            var start = 0
            while start < members.count {
                let chunk = members[start..<min(start + elementsPerCommand, members.count)]
                batch.append("\(verb) element \(tableFamily) \(table) \(name(family)) { "
                             + chunk.map(\.description).joined(separator: ", ") + " }")
                if quoted {
                    batch.append("\(verb) element \(tableFamily) \(table) \(quotedName(family)) { "
                                 + chunk.map(hex).joined(separator: ", ") + " }")
                }
                start += elementsPerCommand
            }
        }
        return batch
    }

    /// The address as the integer a raw payload expression reads.
    static func hex(_ address: IPAddress) -> String {
        let bytes: [UInt8]
        switch address {
        case .v4(let a): bytes = a.bytes
        case .v6(let a): bytes = a.bytes
        }
        return "0x" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
