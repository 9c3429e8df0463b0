import Foundation
import MATLinux
import MATSystem

/// The host's legacy iptables firewall (x_tables: `iptables-legacy`, older Docker and
/// ufw, kube-proxy in legacy mode), which nft cannot list: its `filter` table's INPUT and
/// FORWARD chains read from the kernel (``Xtables``) and turned into the words nft would
/// print for the rules matd looks for, so ``ForwardFirewall`` and ``FastPathFirewall``
/// judge them as they judge nftables chains. A rule with anything else in it (an address,
/// a protocol, another match, a negation) becomes words no check accepts: a check errs
/// towards warning.
enum LegacyFirewall {
    /// One reading of both families' `filter` tables.
    struct Reading: Sendable, Equatable {
        /// The INPUT and FORWARD chains (``HostFirewall/Chain/legacy``), whatever their policy.
        var chains: [HostFirewall.Chain] = []
        /// The families (`ip`, `ip6`) whose table is there but could not be read, with why.
        var unreadable: [String: String] = [:]

        /// The chains named `name` (`INPUT`, `FORWARD`) that drop what they do not accept.
        func droppingChains(_ name: String) -> [HostFirewall.Chain] {
            chains.filter { $0.name == name && $0.dropsByDefault }
        }
    }

    /// Reads both families' `filter` tables; a family without one (no legacy iptables
    /// loaded) has no chains.
    static func read() -> Reading {
        var reading = Reading()
        for ipv6 in [false, true] {
            let family = ipv6 ? "ip6" : "ip"
            do {
                guard let table = try Xtables.read("filter", ipv6: ipv6) else { continue }
                reading.chains += chains(of: table, family: family)
            } catch {
                reading.unreadable[family] = "\(error)"
            }
        }
        return reading
    }

    /// The INPUT and FORWARD chains of a `filter` table of `family` (`ip`, `ip6`). Bytes
    /// the kernel would not write (an entry past the table's end, a policy entry never
    /// met) end the chain's reading there: what was read stays, with a rule no check
    /// accepts in its place, and a policy of drop, since a chain read only in part is
    /// reported rather than taken to let everything through.
    static func chains(of table: Xtables.Table, family: String) -> [HostFirewall.Chain] {
        let layout = Layout(ipv6: family == "ip6")
        return [(1, "INPUT"), (2, "FORWARD")].compactMap { hook, name in
            guard hook < table.hookEntry.count, hook < table.underflow.count,
                  let first = table.hookEntry[hook], let last = table.underflow[hook] else { return nil }
            var rules: [[String]] = []
            var offset = Int(first)
            var policy: String?
            while let entry = Entry(table.entries, at: offset, layout: layout) {
                if offset == Int(last) {
                    policy = entry.verdict
                    break
                }
                rules.append(entry.words)
                offset += entry.next
                // Each entry's next one lies further on (``Entry`` checks), so this ends.
                if offset > Int(last) { break }
            }
            if policy == nil { rules.append(["unreadable"]) }
            return HostFirewall.Chain(family: family, table: "filter", name: name, rules: rules,
                                      policy: policy ?? "drop", legacy: true)
        }
    }

    /// Where the fields of `struct ipt_entry` / `ip6t_entry` are (linux/netfilter_ipv4/ip_tables.h).
    struct Layout {
        /// The addresses and their masks: all zero in a rule for any address.
        let addresses: Range<Int>
        let inInterface: Int
        let outInterface: Int
        let inMask: Int
        /// Protocol (2 bytes), then flags and negations (IPv6: tos, flags, invflags).
        let protocolAndFlags: Range<Int>
        let targetOffset: Int
        /// The size of the entry without its matches and target.
        let size: Int

        init(ipv6: Bool) {
            addresses = 0..<(ipv6 ? 64 : 16)
            inInterface = ipv6 ? 64 : 16
            outInterface = inInterface + 16
            inMask = outInterface + 16
            protocolAndFlags = ipv6 ? 128..<133 : 80..<84
            targetOffset = ipv6 ? 140 : 88
            size = ipv6 ? 168 : 112
        }
    }

    /// One rule (or policy) entry, read within bounds.
    struct Entry {
        /// The offset of the next entry from this one.
        let next: Int
        /// `accept`, `drop`, `reject`, `return`, `jump`, or the target's name in lower case.
        let verdict: String
        let words: [String]

        init?(_ bytes: [UInt8], at offset: Int, layout: Layout) {
            guard offset >= 0, offset + layout.size <= bytes.count else { return nil }
            func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
            func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
            let targetAt = u16(offset + layout.targetOffset), next = u16(offset + layout.targetOffset + 2)
            // struct xt_entry_target: size (2), name (29), revision (1), then its data.
            guard targetAt >= layout.size, next >= targetAt + 32, offset + next <= bytes.count else { return nil }
            self.next = next
            let target = offset + targetAt
            let targetName = Self.name(bytes, at: target + 2)
            if targetName.isEmpty, targetAt + 36 <= next {
                // The standard target: a verdict -verdict - 1 (NF_DROP 0, NF_ACCEPT 1,
                // XT_RETURN -NF_REPEAT - 1), or a jump's offset.
                let raw = Int32(bitPattern: u32(target + 32))
                verdict = raw == -1 ? "drop" : raw == -2 ? "accept" : raw == -5 ? "return" : raw >= 0 ? "jump" : "verdict\(raw)"
            } else {
                verdict = targetName.lowercased()
            }
            // Anything but an input interface in the rule's IP part makes it a rule no check accepts.
            let plain = bytes[(offset + layout.addresses.lowerBound)..<(offset + layout.addresses.upperBound)].allSatisfy { $0 == 0 }
                && bytes[offset + layout.outInterface] == 0
                && bytes[(offset + layout.protocolAndFlags.lowerBound)..<(offset + layout.protocolAndFlags.upperBound)]
                    .allSatisfy { $0 == 0 }
            let interface = Self.name(bytes, at: offset + layout.inInterface, length: 16)
            // iptables masks an exact name with its bytes and the NUL after it; `mat+` leaves the NUL out.
            let exact = interface.utf8.count < 16
                && bytes[(offset + layout.inMask)...(offset + layout.inMask + interface.utf8.count)].allSatisfy { $0 == 0xff }
            var matches: [(name: String, revision: UInt8, data: Int, size: Int)] = []
            var at = offset + layout.size
            while at + 32 <= offset + targetAt {
                let size = u16(at)
                guard size >= 32, at + size <= offset + targetAt else { break }
                matches.append((Self.name(bytes, at: at + 2), bytes[at + 31], at + 32, size - 32))
                at += size
            }
            let cleanlyParsed = at == offset + targetAt
            switch (plain && cleanlyParsed, interface.isEmpty, matches.count) {
            case (true, true, 0):
                words = [verdict]
            case (true, false, 0) where exact:
                words = ["iifname", "\"\(interface)\"", verdict]
            case (true, true, 1) where matches[0].name == "mark" && matches[0].revision == 1 && matches[0].size >= 9:
                // struct xt_mark_mtinfo1: mark, mask, invert.
                let data = matches[0].data
                let mark = u32(data), mask = u32(data + 4)
                words = bytes[data + 8] == 0
                    ? ["meta", "mark", "&", Self.hex(mask), "==", Self.hex(mark), verdict] : ["legacy-rule", verdict]
            default:
                words = ["legacy-rule", verdict]
            }
        }

        /// A NUL-terminated name of at most `length` bytes at `at`.
        static func name(_ bytes: [UInt8], at: Int, length: Int = 29) -> String {
            let field = bytes[at..<min(at + length, bytes.count)]
            return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
        }

        static func hex(_ value: UInt32) -> String { "0x" + String(format: "%08x", value) }
    }
}
