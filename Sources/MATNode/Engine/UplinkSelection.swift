#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket

/// Which interfaces are uplinks and which of their addresses become the MoAs
/// (docs/config.md, "Uplinks and the MoA"). Pure functions of the configured `uplink`
/// entries, the interfaces present and the kernel's address dump; only
/// `presentInterfaces()` asks the kernel.
public enum UplinkSelection {
    /// Whether `entry` is a pattern (fnmatch: `*`, `?`, `[...]`) rather than a name.
    public static func isPattern(_ entry: String) -> Bool {
        entry.contains { $0 == "*" || $0 == "?" || $0 == "[" }
    }

    /// Whether interface `name` is named by `entry` (a name, or a pattern it matches).
    public static func matches(_ entry: String, _ name: String) -> Bool {
        isPattern(entry) ? fnmatch(entry, name, 0) == 0 : entry == name
    }

    /// The uplinks now, in preference order: the entries in configuration order; a name
    /// stands for itself (present or not: an uplink between its removal and its return
    /// keeps its place), a pattern for the present interfaces it matches, in index order
    /// (the one plugged first first, so a NIC plugged later does not take the MoA from a
    /// working one). An interface named by two entries counts at the first. A pattern
    /// never matches `excluded` (matd's TUN device, whose global HoAs would otherwise
    /// become the MoAs under `uplink = *`, and `lo`); a name given outright is taken as is.
    public static func resolve(_ entries: [String], present: [(index: Int32, name: String)],
                               excluding excluded: Set<String> = []) -> [String] {
        var uplinks: [String] = []
        let byIndex = present.sorted { $0.index < $1.index }.filter { !excluded.contains($0.name) }
        for entry in entries {
            let names = isPattern(entry) ? byIndex.map(\.name).filter { matches(entry, $0) } : [entry]
            for name in names where !uplinks.contains(name) { uplinks.append(name) }
        }
        return uplinks
    }

    /// The MoA candidates, best first: uplink by uplink in `resolve`'s order, and within
    /// one uplink in `InterfaceAddress.ranked`'s order. The node's MoA of each family is
    /// the first candidate of that family (`NodeAddresses.withMobile(from:)`), so when the
    /// first uplink loses its address the MoA moves to the next one, and it moves back
    /// when the address returns. `HostSetup.uplinkAddresses()` yields the same list,
    /// built from the same two steps.
    public static func candidates(entries: [String], present: [(index: Int32, name: String)],
                                  excluding excluded: Set<String> = [], dump: [InterfaceAddress]) -> [IPAddress] {
        resolve(entries, present: present, excluding: excluded).flatMap { name -> [IPAddress] in
            guard let index = present.first(where: { $0.name == name })?.index else { return [] }
            return InterfaceAddress.ranked(dump.filter { $0.interface == index }).map(\.prefix.address)
        }
    }

    /// The interfaces of this network namespace, from `if_nameindex(3)`. Empty, and
    /// logged, if the call fails (no memory or socket): then only the uplinks named
    /// outright are used until it works again.
    public static func presentInterfaces() -> [(index: Int32, name: String)] {
        guard let list = if_nameindex() else {
            log("matd: listing interfaces failed (errno \(errno)); uplink patterns match nothing this time")
            return []
        }
        defer { if_freenameindex(list) }
        var found: [(index: Int32, name: String)] = []
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            found.append((Int32(bitPattern: entry.pointee.if_index), String(cString: name)))
            entry += 1
        }
        return found
    }
}
