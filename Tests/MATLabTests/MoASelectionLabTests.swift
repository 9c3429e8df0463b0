#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing

/// Which uplink address matd takes as its MoA (docs/config.md, "Uplinks and the MoA"),
/// against the kernel's real address dump: privacy and deprecated addresses are never
/// taken, a second uplink takes over when the first loses its addresses and gives the MoA
/// back, and a NIC plugged in later whose name matches an `uplink` pattern is taken.
/// Only the VM node runs matd; its peer need not answer for the choice to be seen.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct MoASelectionLabTests {
    static let siteA = ["192.0.2.10", "2001:db8:a::10"]
    static let siteB = ["203.0.113.10", "2001:db8:b::10"]

    @Test func privacyAndDeprecatedAddressesAreNeverTheMoA() throws {
        let lab = try Lab()
        defer { lab.close() }
        // IPv6: ::10 manages temporary addresses, so the kernel makes a privacy address from
        // it and lists it first; a deprecated ::5 added after comes before both.
        try lab.exec("vm", "sysctl", "-qw", "net.ipv6.conf.eth0.use_tempaddr=2")
        try lab.exec("vm", "ip", "-6", "addr", "del", "2001:db8:a::10/64", "dev", "eth0")
        try lab.exec("vm", "ip", "-6", "addr", "add", "2001:db8:a::10/64", "dev", "eth0", "mngtmpaddr", "nodad")
        try waitUntil("a temporary address past DAD", seconds: 10, every: 0.1) {
            let shown = try lab.exec("vm", "ip", "-6", "-o", "addr", "show", "dev", "eth0", "temporary")
            return shown.contains("2001:db8:a:") && !shown.contains("tentative")
        }
        try lab.exec("vm", "ip", "-6", "addr", "add", "2001:db8:a::5/64", "dev", "eth0", "preferred_lft", "0", "nodad")
        // IPv4: a deprecated primary, the good address its secondary.
        try lab.exec("vm", "ip", "addr", "del", "192.0.2.10/25", "dev", "eth0")
        try lab.exec("vm", "ip", "addr", "add", "192.0.2.12/25", "dev", "eth0", "preferred_lft", "0")
        try lab.exec("vm", "ip", "addr", "add", "192.0.2.10/25", "dev", "eth0")
        try lab.exec("vm", "ip", "route", "replace", "default", "via", "192.0.2.1", "dev", "eth0")
        let dump = try lab.exec("vm", "ip", "-o", "addr", "show", "dev", "eth0", "scope", "global")
        let firstV6 = dump.split(separator: "\n").first { $0.contains("inet6") } ?? ""
        #expect(firstV6.contains("2001:db8:a::5/64") && firstV6.contains("deprecated"), "\(dump)")
        #expect(dump.contains("temporary"), "\(dump)")

        try lab.startMatd("vm")
        try waitForMoAs(lab, Self.siteA)

        // At run time: a newer permanent address is taken (the kernel lists it first), and
        // left again once deprecated.
        try lab.exec("vm", "ip", "-6", "addr", "add", "2001:db8:a::20/64", "dev", "eth0", "nodad")
        try waitForMoAs(lab, ["192.0.2.10", "2001:db8:a::20"])
        try lab.exec("vm", "ip", "-6", "addr", "change", "2001:db8:a::20/64", "dev", "eth0", "preferred_lft", "0")
        try waitForMoAs(lab, Self.siteA)
    }

    @Test func secondUplinkTakesOverAndGivesTheMoABack() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.plugVMInterface("eth1", site: "b", addresses: Self.siteB)
        try lab.startMatd("vm", config: lab.writeConfig("vm", uplinks: ["eth0", "eth1"]))
        try waitForMoAs(lab, Self.siteA)
        #expect(try status(lab)["uplinks"] as? [String] == ["eth0", "eth1"])

        try lab.exec("vm", "ip", "addr", "del", "192.0.2.10/25", "dev", "eth0")
        try lab.exec("vm", "ip", "-6", "addr", "del", "2001:db8:a::10/64", "dev", "eth0")
        try waitForMoAs(lab, Self.siteB)

        // The first uplink's addresses return: it is preferred, so the MoA moves back.
        try lab.exec("vm", "ip", "addr", "add", "192.0.2.10/25", "dev", "eth0")
        try lab.exec("vm", "ip", "-6", "addr", "add", "2001:db8:a::10/64", "dev", "eth0", "nodad")
        try waitForMoAs(lab, Self.siteA)

        // Each family fails over on its own: eth0's IPv6 address deprecated, IPv4 stays.
        try lab.exec("vm", "ip", "-6", "addr", "change", "2001:db8:a::10/64", "dev", "eth0", "preferred_lft", "0")
        try waitForMoAs(lab, [Self.siteA[0], Self.siteB[1]])
    }

    @Test func hotPluggedInterfaceMatchingAPatternIsTaken() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.startMatd("vm", config: lab.writeConfig("vm", uplinks: ["hp*", "eth0"]))
        try waitForMoAs(lab, Self.siteA)
        #expect(try status(lab)["uplinks"] as? [String] == ["eth0"])

        try lab.plugVMInterface("hp1", site: "b", addresses: Self.siteB)
        try waitForMoAs(lab, Self.siteB)
        #expect(try status(lab)["uplinks"] as? [String] == ["hp1", "eth0"])
        // The inbound diversion follows: it has a chain on the new uplink.
        let diversion = try lab.exec("vm", "nft", "list", "table", "netdev", "matd_mat0")
        #expect(diversion.contains("device \"hp1\""), "\(diversion)")

        // Unplugged: back to eth0.
        try lab.exec("vm", "ip", "link", "del", "hp1")
        try waitForMoAs(lab, Self.siteA)
    }

    // MARK: helpers

    func status(_ lab: Lab) throws -> [String: Any] {
        let text = try lab.matctl("vm", "status", "--json")
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw LabError("matctl status --json is not an object: \(text)")
        }
        return object
    }

    /// Waits up to 10 s for the VM's matd to report exactly `expected` as its MoAs.
    func waitForMoAs(_ lab: Lab, _ expected: [String]) throws {
        var last: Any = "none"
        do {
            try waitUntil("MoAs \(expected)", seconds: 10, every: 0.1) {
                last = try status(lab)["mobileAddresses"] ?? "none"
                return last as? [String] == expected
            }
        } catch {
            throw LabError("\(error); matd reports \(last)\nmatd log:\n\(lab.matdLog("vm"))")
        }
    }
}

extension Lab {
    /// A configuration for the VM (as `writeConfig`) with these `uplink` entries instead of eth0.
    func writeConfig(_ node: String, uplinks: [String]) throws -> String {
        let file = try writeConfig(node, file: "\(node)-uplinks.conf")
        let text = try String(contentsOfFile: file, encoding: .utf8)
            .replacingOccurrences(of: "uplink = eth0\n", with: uplinks.map { "uplink = \($0)\n" }.joined())
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// Plugs a new NIC `name` into the VM node: a veth to the router's bridge of `site`,
    /// up, with `addresses` (an IPv4 /24 and an IPv6 /64, no DAD).
    func plugVMInterface(_ name: String, site: String, addresses: [String]) throws {
        let outside = String("\(self.name)-\(name)".prefix(15))
        try check(["ip", "link", "add", name, "netns", namespace("vm"), "type", "veth",
                   "peer", "name", outside, "netns", namespace("router")])
        try exec("router", "ip", "link", "set", outside, "master", "br-\(site)", "up")
        try exec("vm", "ip", "link", "set", name, "up")
        try exec("vm", "ip", "addr", "add", "\(addresses[0])/24", "dev", name)
        try exec("vm", "ip", "-6", "addr", "add", "\(addresses[1])/64", "dev", name, "nodad")
    }
}
