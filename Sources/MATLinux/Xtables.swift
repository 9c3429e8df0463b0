#if canImport(Glibc)
import Glibc
#endif
// SOCK_RAW and SOCK_CLOEXEC: see DatagramSocket.swift for why CMnl is imported for them.
import CMnl
import Foundation
import MATSystem

/// Legacy iptables (x_tables, `iptables-legacy`): its tables are invisible to nftables, so
/// matd reads them the way `iptables-legacy-save` does, with `getsockopt` on a raw socket
/// (`IPT_SO_GET_INFO`, `IPT_SO_GET_ENTRIES`), and needs no iptables binary on the host.
public enum Xtables {
    /// One table as the kernel hands it out: the hooks' first entries and policy entries
    /// (offsets into `entries`), and the entries themselves, in the kernel's layout.
    public struct Table: Sendable, Equatable {
        /// Per hook (prerouting, input, forward, output, postrouting): a valid hook's
        /// offset of its first rule and of its policy entry; nil for a hook the table has not.
        public var hookEntry: [UInt32?]
        public var underflow: [UInt32?]
        public var entries: [UInt8]

        public init(hookEntry: [UInt32?], underflow: [UInt32?], entries: [UInt8]) {
            self.hookEntry = hookEntry
            self.underflow = underflow
            self.entries = entries
        }
    }

    /// Whether legacy iptables has a table `name` in this network namespace
    /// (`/proc/net/ip_tables_names`, `ip6_tables_names`). Checked before reading it: a
    /// `getsockopt` on a table that is not there would load its module and make it.
    public static func hasTable(_ name: String, ipv6: Bool) -> Bool {
        guard let text = try? String(contentsOfFile: ipv6 ? "/proc/net/ip6_tables_names" : "/proc/net/ip_tables_names",
                                     encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { $0 == name }
    }

    /// Reads table `name` (`filter`) of IPv4 or IPv6 legacy iptables; nil when it is not
    /// there (``hasTable(_:ipv6:)``). Needs CAP_NET_ADMIN.
    public static func read(_ name: String, ipv6: Bool) throws(SystemError) -> Table? {
        guard hasTable(name, ipv6: ipv6) else { return nil }
        let what = "read legacy \(ipv6 ? "ip6tables" : "iptables") table \(name)"
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
        guard fd >= 0 else { throw SystemError(what, errno: errno) }
        defer { close(fd) }
        let level = ipv6 ? Int32(IPPROTO_IPV6) : Int32(IPPROTO_IP)
        let nameBytes = Array(name.utf8.prefix(31))
        // The table can change between the two calls (its size with it): the kernel then
        // answers EAGAIN, and the pair is read again.
        for _ in 0..<5 {
            // struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size.
            var info = [UInt8](repeating: 0, count: 84)
            info.replaceSubrange(0..<nameBytes.count, with: nameBytes)
            var length = socklen_t(info.count)
            guard getsockopt(fd, level, getInfo, &info, &length) == 0 else {
                if errno == ENOENT { return nil }
                throw SystemError(what, errno: errno)
            }
            let word = { (offset: Int) in info.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) } }
            let valid = word(32)
            let size = Int(word(80))
            guard size <= 64 << 20 else { throw SystemError(what, detail: "table of \(size) bytes") }
            // struct ipt_get_entries: name[32], size, then the entries.
            var request = [UInt8](repeating: 0, count: 40 + size)
            request.replaceSubrange(0..<nameBytes.count, with: nameBytes)
            request.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(size), toByteOffset: 32, as: UInt32.self) }
            length = socklen_t(request.count)
            guard getsockopt(fd, level, getEntries, &request, &length) == 0 else {
                if errno == EAGAIN { continue }
                if errno == ENOENT { return nil }
                throw SystemError(what, errno: errno)
            }
            let hooks = (0..<5).map { valid & (1 << $0) != 0 }
            return Table(hookEntry: (0..<5).map { hooks[$0] ? word(36 + 4 * $0) : nil },
                         underflow: (0..<5).map { hooks[$0] ? word(56 + 4 * $0) : nil },
                         entries: Array(request[40...]))
        }
        throw SystemError(what, detail: "the table kept changing while it was read")
    }

    /// `IPT_SO_GET_INFO` and `IPT_SO_GET_ENTRIES` (the same numbers for IPv6).
    private static let getInfo: Int32 = 64
    private static let getEntries: Int32 = 65
}
