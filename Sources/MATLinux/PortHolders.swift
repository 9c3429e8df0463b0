#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATPacket

/// A socket bound to a local UDP port, as the kernel lists it in `/proc/net/udp` or
/// `udp6`, with the process that has it open when one in sight does.
public struct PortHolder: Equatable, Sendable, CustomStringConvertible {
    /// The local address it is bound to (the wildcard address for all of them).
    public var address: IPAddress
    public var port: UInt16
    /// The owner's user ID, from the kernel's table (so known even when no process is found).
    public var uid: UInt32
    /// The socket's inode: what `/proc/<pid>/fd/*` links name as `socket:[inode]`.
    public var inode: UInt64
    /// The process holding it (the first found), when one is.
    public var pid: Int32?
    /// Its `comm` name.
    public var command: String?

    public init(address: IPAddress, port: UInt16, uid: UInt32, inode: UInt64, pid: Int32? = nil, command: String? = nil) {
        self.address = address
        self.port = port
        self.uid = uid
        self.inode = inode
        self.pid = pid
        self.command = command
    }

    public var description: String {
        let place = address.family == .ipv6 ? "[\(address)]:\(port)" : "\(address):\(port)"
        guard let pid else { return "a socket of uid \(uid) at \(place) (inode \(inode), no process in sight)" }
        return "pid \(pid) (\(command ?? "?")) of uid \(uid) at \(place)"
    }
}

/// Who holds a local UDP port, for the error when matd cannot bind one of its ports
/// (docs/security.md, the local user: a local user may bind `signaling-port` or
/// `encap-port`, which are unprivileged, before matd starts). Read from procfs, which
/// shows the caller's network namespace.
public enum PortHolders {
    /// The holders of UDP `port` in this network namespace, IPv4 and IPv6 (an IPv6 socket
    /// that is not IPv6-only holds the IPv4 port too), with their processes.
    public static func udp(port: UInt16) -> [PortHolder] {
        var holders: [PortHolder] = []
        for (file, family) in [("/proc/net/udp", AddressFamily.ipv4), ("/proc/net/udp6", .ipv6)] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            holders += parse(text, family: family, port: port)
        }
        guard !holders.isEmpty else { return [] }
        let owners = socketOwners(inodes: Set(holders.map(\.inode)))
        return holders.map { holder in
            var found = holder
            if let owner = owners[holder.inode] { (found.pid, found.command) = (owner.pid, owner.command) }
            return found
        }
    }

    /// The entries of a `/proc/net/udp` (`family` .ipv4) or `udp6` (.ipv6) listing bound
    /// to `port`. Pure; lines it cannot read are skipped, whatever the text.
    public static func parse(_ text: String, family: AddressFamily, port: UInt16) -> [PortHolder] {
        text.split(separator: "\n").dropFirst().compactMap { line in
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10 else { return nil }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, let localPort = UInt16(local[1], radix: 16), localPort == port,
                  let address = address(hex: local[0], family: family),
                  let uid = UInt32(fields[7]), let inode = UInt64(fields[9]) else { return nil }
            return PortHolder(address: address, port: port, uid: uid, inode: inode)
        }
    }

    /// The kernel prints each 32-bit word of the address as a number in the host's byte
    /// order (little-endian here): "0100007F" is 127.0.0.1.
    static func address(hex: Substring, family: AddressFamily) -> IPAddress? {
        let words = family == .ipv4 ? 1 : 4
        guard hex.count == 8 * words, hex.allSatisfy(\.isHexDigit) else { return nil }
        var bytes: [UInt8] = []
        let characters = Array(hex)
        for word in 0..<words {
            guard let value = UInt32(String(characters[(word * 8)..<(word * 8 + 8)]), radix: 16) else { return nil }
            withUnsafeBytes(of: value) { bytes += $0 }
        }
        return bytes.withUnsafeBytes { raw in
            family == .ipv4 ? .v4(IPv4Address(loadingFrom: raw.baseAddress!, offset: 0))
                : .v6(IPv6Address(loadingFrom: raw.baseAddress!, offset: 0))
        }
    }

    /// The processes with a descriptor on each socket of `inodes` (the first found each).
    static func socketOwners(inodes: Set<UInt64>) -> [UInt64: (pid: Int32, command: String)] {
        var owners: [UInt64: (pid: Int32, command: String)] = [:]
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return owners }
        for entry in entries {
            guard let pid = Int32(entry),
                  let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for fd in fds {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                      target.hasPrefix("socket:["), let inode = UInt64(target.dropFirst(8).dropLast()),
                      inodes.contains(inode), owners[inode] == nil else { continue }
                let command = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                owners[inode] = (pid, printable(command))
            }
            if owners.count == inodes.count { break }
        }
        return owners
    }

    /// `comm` as its process set it (prctl PR_SET_NAME takes any bytes): control
    /// characters become `?`, so a holder cannot write lines of its own into matd's log.
    static func printable(_ command: String) -> String {
        String(String.UnicodeScalarView(command.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
    }
}
