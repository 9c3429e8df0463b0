#if canImport(Glibc)
import Glibc
#endif

/// An AF_PACKET/SOCK_RAW socket bound to one interface for every protocol (ETH_P_ALL),
/// with the interface in promiscuous mode for as long as the socket is open: it reads
/// whole Ethernet frames as they arrive and writes frames out of the interface as given.
struct PacketSocket {
    let fd: Int32
    let interface: String
    let index: Int32

    /// Opens and binds the socket. `receiveBuffer` bytes of kernel buffer absorb bursts
    /// while the forwarder is busy with the other direction; a flow faster than the
    /// forwarder keeps it full, so it is also the lab's standing queue.
    init(interface: String, receiveBuffer: Int32) throws {
        guard !interface.isEmpty, interface.utf8.count < Int(IF_NAMESIZE) else {
            throw DelayError("'\(interface)' is not an interface name")
        }
        let index = Int32(bitPattern: if_nametoindex(interface))
        guard index > 0 else {
            throw DelayError("no interface named '\(interface)' in this network namespace (see `ip link`)")
        }
        // Protocol 0 at socket(): the socket sees nothing until bind() names the
        // interface, so no frame of another interface slips in between.
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0)
        guard fd >= 0 else {
            throw DelayError("cannot open a packet socket: \(errorText()) (mat-delay needs CAP_NET_RAW, i.e. root)")
        }
        self.fd = fd
        self.interface = interface
        self.index = index
        do {
            try bind()
            try setPromiscuous()
            try setReceiveBuffer(receiveBuffer)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        } catch {
            close(fd)
            throw error
        }
    }

    private func bind() throws {
        var address = [UInt8](repeating: 0, count: Kernel.LinkAddress.size)
        address.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: UInt16(AF_PACKET), toByteOffset: Kernel.LinkAddress.familyOffset, as: UInt16.self)
            bytes.storeBytes(of: Kernel.ethernetProtocolAll.bigEndian, toByteOffset: Kernel.LinkAddress.protocolOffset, as: UInt16.self)
            bytes.storeBytes(of: index, toByteOffset: Kernel.LinkAddress.interfaceOffset, as: Int32.self)
        }
        let result = address.withUnsafeBytes { bytes in
            Glibc.bind(fd, bytes.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(bytes.count))
        }
        guard result == 0 else { throw DelayError("cannot bind a packet socket to \(interface): \(errorText())") }
    }

    private func setPromiscuous() throws {
        var request = [UInt8](repeating: 0, count: Kernel.Membership.size)
        request.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: index, toByteOffset: Kernel.Membership.interfaceOffset, as: Int32.self)
            bytes.storeBytes(of: Kernel.packetMembershipPromiscuous, toByteOffset: Kernel.Membership.typeOffset, as: UInt16.self)
        }
        let result = request.withUnsafeBytes { bytes in
            setsockopt(fd, Kernel.solPacket, Kernel.packetAddMembership, bytes.baseAddress, socklen_t(bytes.count))
        }
        guard result == 0 else { throw DelayError("cannot make \(interface) promiscuous: \(errorText())") }
    }

    /// SO_RCVBUFFORCE (root may pass rmem_max), else SO_RCVBUF; best effort.
    private func setReceiveBuffer(_ bytes: Int32) throws {
        var size = bytes
        let length = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, length) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, length)
        }
    }

    /// Frames the kernel had for this socket and frames it dropped for lack of buffer
    /// since the last call (PACKET_STATISTICS resets them).
    func kernelStatistics() -> (packets: UInt32, drops: UInt32) {
        var counters: (UInt32, UInt32) = (0, 0)
        var length = socklen_t(MemoryLayout<(UInt32, UInt32)>.size)
        guard getsockopt(fd, Kernel.solPacket, Kernel.packetStatistics, &counters, &length) == 0 else { return (0, 0) }
        return (counters.0, counters.1)
    }
}
