import MATLinux
@testable import MATNode
import Testing

/// The reading of legacy iptables' chains from the kernel's bytes (``LegacyFirewall``):
/// rules in the kernel's layout, built here as iptables-legacy writes them; the lab test
/// `KernelFastPathFirewallLabTests.aLegacyIptablesFirewallIsReadAndItsPrintedFixesWork`
/// reads tables iptables-legacy made.
struct LegacyFirewallTests {
    /// One entry (`struct ipt_entry` / `ip6t_entry`): an input interface, a `mark` match,
    /// a protocol, and a standard verdict (NF_DROP 0, NF_ACCEPT 1) or a named target.
    static func entry(ipv6: Bool, interface: String? = nil, mark: UInt32? = nil, proto: UInt8 = 0,
                      accept: Bool = true, target: String? = nil) -> [UInt8] {
        let layout = LegacyFirewall.Layout(ipv6: ipv6)
        var bytes = [UInt8](repeating: 0, count: layout.size)
        if let interface {
            bytes.replaceSubrange(layout.inInterface..<(layout.inInterface + interface.utf8.count), with: Array(interface.utf8))
            for index in 0...interface.utf8.count { bytes[layout.inMask + index] = 0xff }
        }
        bytes[layout.protocolAndFlags.lowerBound] = proto
        if let mark {
            var match = [UInt8](repeating: 0, count: 48)
            match[0] = 48
            match.replaceSubrange(2..<6, with: Array("mark".utf8))
            match[31] = 1
            withUnsafeBytes(of: mark.littleEndian) { match.replaceSubrange(32..<36, with: $0) }
            withUnsafeBytes(of: mark.littleEndian) { match.replaceSubrange(36..<40, with: $0) }
            bytes += match
        }
        let targetAt = bytes.count
        var targetBytes = [UInt8](repeating: 0, count: target == nil ? 40 : 32)
        targetBytes[0] = UInt8(targetBytes.count)
        if let target {
            targetBytes.replaceSubrange(2..<(2 + target.utf8.count), with: Array(target.utf8))
        } else {
            withUnsafeBytes(of: Int32(accept ? -2 : -1).littleEndian) { targetBytes.replaceSubrange(32..<36, with: $0) }
        }
        bytes += targetBytes
        bytes[layout.targetOffset] = UInt8(targetAt & 0xff)
        bytes[layout.targetOffset + 1] = UInt8(targetAt >> 8)
        bytes[layout.targetOffset + 2] = UInt8(bytes.count & 0xff)
        bytes[layout.targetOffset + 3] = UInt8(bytes.count >> 8)
        return bytes
    }

    /// A filter table: INPUT (policy drop) with an accept for mat0, one for the fast path's
    /// mark and one for TCP; FORWARD (policy accept) ending in a REJECT of everything.
    static func table(ipv6: Bool) -> Xtables.Table {
        var entries: [UInt8] = []
        var hookEntry: [UInt32?] = [nil, nil, nil, nil, nil], underflow: [UInt32?] = [nil, nil, nil, nil, nil]
        func add(_ entry: [UInt8]) -> UInt32 {
            defer { entries += entry }
            return UInt32(entries.count)
        }
        hookEntry[1] = add(entry(ipv6: ipv6, interface: "mat0"))
        _ = add(entry(ipv6: ipv6, mark: 0x1000_0000))
        _ = add(entry(ipv6: ipv6, proto: 6))
        underflow[1] = add(entry(ipv6: ipv6, accept: false))
        hookEntry[2] = add(entry(ipv6: ipv6, target: "REJECT"))
        underflow[2] = add(entry(ipv6: ipv6))
        hookEntry[3] = add(entry(ipv6: ipv6))
        underflow[3] = hookEntry[3]
        _ = add(entry(ipv6: ipv6, target: "ERROR"))
        return Xtables.Table(hookEntry: hookEntry, underflow: underflow, entries: entries)
    }

    @Test(arguments: [false, true])
    func chainsReadAsNftWouldPrintTheRulesMatdLooksFor(ipv6: Bool) throws {
        let family = ipv6 ? "ip6" : "ip"
        let chains = LegacyFirewall.chains(of: Self.table(ipv6: ipv6), family: family)
        #expect(chains.map(\.name) == ["INPUT", "FORWARD"])
        let input = try #require(chains.first)
        #expect(input.rules == [["iifname", "\"mat0\"", "accept"],
                                ["meta", "mark", "&", "0x10000000", "==", "0x10000000", "accept"],
                                ["legacy-rule", "accept"]], "\(input.rules)")
        #expect(input.policy == "drop" && input.dropsByDefault && input.legacy && input.family == family)
        let forward = chains[1]
        #expect(forward.rules == [["reject"]] && forward.policy == "accept" && forward.dropsByDefault, "\(forward)")

        // What the checks make of them: the input chain accepts the mark, the forward chain drops mat0's packets.
        let reading = LegacyFirewall.Reading(chains: chains)
        #expect(FastPathFirewall.findings(uplinks: ["eth0"], chains: reading.droppingChains("INPUT")).isEmpty)
        let forwardFindings = ForwardFirewall.findings(tun: "mat0", ipv6Path: .sysctl, chains: reading.droppingChains("FORWARD"))
        #expect(forwardFindings == [ForwardFirewall.Finding(family: family, table: "filter", chain: "FORWARD",
                                                            fix: "\(ipv6 ? "ip6tables" : "iptables")-legacy -I FORWARD -i mat0 -j ACCEPT",
                                                            legacy: true)])
    }

    /// Bytes the kernel would not write (cut short, bits flipped, offsets past the end)
    /// never crash the reading; a chain read only in part ends in a rule no check accepts.
    @Test(arguments: [false, true])
    func damagedBytesAreReadWithinBounds(ipv6: Bool) {
        let whole = Self.table(ipv6: ipv6)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<2_000 {
            var table = whole
            if round % 2 == 0 {
                table.entries = Array(table.entries.prefix(Int.random(in: 0..<whole.entries.count, using: &generator)))
            } else {
                for _ in 0..<8 { table.entries[Int.random(in: 0..<table.entries.count, using: &generator)] = .random(in: 0...255) }
            }
            if round % 7 == 0 { table.underflow[1] = .random(in: 0...UInt32.max, using: &generator) }
            _ = LegacyFirewall.chains(of: table, family: ipv6 ? "ip6" : "ip")
        }
        var cut = whole
        cut.entries = Array(cut.entries.prefix(Int(whole.underflow[1]!)))
        let family = ipv6 ? "ip6" : "ip"
        let input = LegacyFirewall.chains(of: cut, family: family).first
        #expect(input?.rules.last == ["unreadable"] && input?.policy == "drop" && input?.dropsByDefault == true,
                "a chain read only in part counts as dropping: \(String(describing: input))")
    }
}
