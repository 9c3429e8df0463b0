#if canImport(Glibc)
import Glibc
#endif
import CShim

/// Offloads a TUN device can be asked to accept (TUNSETOFFLOAD).
public struct TunOffloads: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Packets may carry a partial checksum for the reader to finish (or pass on).
    public static let checksum = TunOffloads(rawValue: UInt32(MAT_TUN_F_CSUM))
    /// IPv4 TCP super-packets (TSO/GSO) up to 64 KiB.
    public static let tcp4 = TunOffloads(rawValue: UInt32(MAT_TUN_F_TSO4))
    /// IPv6 TCP super-packets.
    public static let tcp6 = TunOffloads(rawValue: UInt32(MAT_TUN_F_TSO6))
    /// IPv4 UDP segmentation offload (kernel 6.2 and later).
    public static let udp4 = TunOffloads(rawValue: UInt32(MAT_TUN_F_USO4))
    /// IPv6 UDP segmentation offload (kernel 6.2 and later).
    public static let udp6 = TunOffloads(rawValue: UInt32(MAT_TUN_F_USO6))

    /// Everything the engine can use.
    public static let all: TunOffloads = [.checksum, .tcp4, .tcp6, .udp4, .udp6]

    public var description: String {
        let names: [(TunOffloads, String)] = [(.checksum, "csum"), (.tcp4, "tso4"), (.tcp6, "tso6"),
                                              (.udp4, "uso4"), (.udp6, "uso6")]
        return names.filter { contains($0.0) }.map(\.1).joined(separator: ",")
    }
}

/// A TUN device opened with `IFF_TUN | IFF_NO_PI | IFF_VNET_HDR`, so every read and write
/// carries a virtio net header in front of the IP packet, and offloads let one read hand
/// over a GSO super-packet of up to 64 KiB.
///
/// The device can be made persistent: it then outlives a crash of its owner, so routes into
/// it keep swallowing traffic instead of letting it leak out of the default route, and a
/// restart re-attaches to the same interface index. `setPersistent(false)` before the
/// descriptor closes removes the device and everything on it.
public final class TunDevice {
    /// The interface name the kernel gave the device.
    public let name: String
    /// The open descriptor. Owned by this object; closed on deinit.
    public let fileDescriptor: Int32
    /// The offloads the kernel accepted.
    public let offloads: TunOffloads
    /// Bytes of virtio net header in front of every packet read or written.
    public let virtioHeaderSize: Int

    /// Creates (or attaches to) the TUN device `name` and enables as many of `offloads`
    /// as the kernel accepts: UDP segmentation needs kernel 6.2, so a refusal of the full
    /// set is retried without it.
    public init(name: String, offloads wanted: TunOffloads = .all) throws(SystemError) {
        guard !name.isEmpty, name.utf8.count < 16 else {
            throw SystemError("open TUN device \(name)", detail: "interface names are 1-15 bytes")
        }
        var kernelName = [CChar](repeating: 0, count: 16)
        let fd = mat_tun_open(name, 1, &kernelName, kernelName.count)
        guard fd >= 0 else { throw SystemError("open TUN device \(name)", errno: -fd) }
        let headerSize = Int(mat_virtio_net_hdr_size())
        let sizeResult = mat_tun_set_vnet_header_size(fd, Int32(headerSize))
        guard sizeResult == 0 else {
            close(fd)
            throw SystemError("set virtio header size on \(name)", errno: -sizeResult)
        }
        // Non-blocking, so the engine can drain what is queued and return to poll.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var accepted = wanted
        var result = mat_tun_set_offload(fd, accepted.rawValue)
        if result != 0 {
            accepted.subtract([.udp4, .udp6])
            result = mat_tun_set_offload(fd, accepted.rawValue)
        }
        guard result == 0 else {
            close(fd)
            throw SystemError("enable offloads \(wanted) on \(name)", errno: -result)
        }
        self.name = String(decoding: kernelName.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        fileDescriptor = fd
        offloads = accepted
        virtioHeaderSize = headerSize
    }

    deinit { close(fileDescriptor) }

    /// Makes the device outlive this descriptor, or (with false) go away when it closes.
    public func setPersistent(_ persistent: Bool) throws(SystemError) {
        let result = mat_tun_set_persistent(fileDescriptor, persistent ? 1 : 0)
        guard result == 0 else { throw SystemError("set persistence of \(name)", errno: -result) }
    }

    /// Reads one packet (virtio header first) into `buffer`; returns its length, or nil
    /// when nothing is waiting (the descriptor is non-blocking).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        while true {
            let count = Glibc.read(fileDescriptor, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN: return nil
            default: throw SystemError("read from \(name)", errno: errno)
            }
        }
    }

    /// Writes one packet (virtio header first).
    public func write(_ packet: UnsafeRawBufferPointer) throws(SystemError) {
        while true {
            let count = Glibc.write(fileDescriptor, packet.baseAddress, packet.count)
            if count >= 0 { return }
            if errno == EINTR { continue }
            throw SystemError("write to \(name)", errno: errno)
        }
    }
}
