#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import MATPacket
import MATSignaling
import MATSystem

/// The vectors that send one packet's segments in one system call, allocated once: two
/// `iovec`s per segment (its headers in the segmenter's slot, its payload where the packet
/// was read), an `mmsghdr` per segment for `sendmmsg`, a `msghdr` with a `UDP_SEGMENT`
/// control message for `sendmsg`, and the destination.
final class SegmentVectors {
    let iovecs: UnsafeMutablePointer<iovec>
    let messages: UnsafeMutableRawPointer
    let control: UnsafeMutableRawPointer
    let target: UnsafeMutablePointer<sockaddr_storage>
    var targetLength: socklen_t = 0
    /// Where a read puts the sender's address and the `UDP_GRO` control message.
    let source: UnsafeMutablePointer<sockaddr_storage>
    let receiveControl: UnsafeMutableRawPointer
    static let receiveControlSpace = 64

    /// `SOL_UDP` and `UDP_SEGMENT` (linux/udp.h), which Glibc does not export.
    static let solUDP: Int32 = 17
    static let udpSegment: Int32 = 103
    static let udpGRO: Int32 = 104
    /// The kernel's limits for one `UDP_SEGMENT` send: 64 segments (`UDP_MAX_SEGMENTS`
    /// before Linux 6.9) and a UDP payload that fits an IP packet.
    static let maximumGSOSegments = 64
    static let maximumGSOBytes = 65_000
    /// `CMSG_SPACE(sizeof(uint16_t))` and `CMSG_LEN(sizeof(uint16_t))` on 64-bit Linux.
    static let controlSpace = 24
    static let controlLength = 18
    /// The most segments either segmenter cuts one packet into.
    static let maximumSegments = max(TCPSegmenter.maximumSegments, UDPSegmenter.maximumSegments)

    init() {
        iovecs = .allocate(capacity: 2 * Self.maximumSegments)
        messages = .allocate(byteCount: MultipleMessages.headerStride * Self.maximumSegments, alignment: 16)
        control = .allocate(byteCount: Self.controlSpace, alignment: 16)
        target = .allocate(capacity: 1)
        source = .allocate(capacity: 1)
        receiveControl = .allocate(byteCount: Self.receiveControlSpace, alignment: 16)
    }

    deinit {
        iovecs.deallocate()
        messages.deallocate()
        control.deallocate()
        target.deallocate()
        source.deallocate()
        receiveControl.deallocate()
    }

    /// Sets the destination, without allocating.
    func setTarget(_ moa: IPAddress, port: UInt16) {
        targetLength = SocketAddress.write(IPEndpoint(address: moa, port: port), to: target)
    }
}

extension EncapPath {
    /// The bytes of encapsulation header and virtio header in front of each carried packet.
    static let segmentPrefix = EncapWire.headerLength + VirtioNetHeader.size

    /// Whether `socket` takes `UDP_SEGMENT` (Linux 4.18; 0 leaves it off per socket, each
    /// send asks for it in a control message).
    static func takesUDPSegment(_ socket: DatagramSocket) -> Bool {
        var off: Int32 = 0
        return setsockopt(socket.fileDescriptor, SegmentVectors.solUDP, SegmentVectors.udpSegment, &off,
                          socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    /// `IP_MTU_DISCOVER`/`IPV6_MTU_DISCOVER` and their `_DO` and `_WANT` values
    /// (linux/in.h, linux/in6.h).
    private static let ipMTUDiscover: Int32 = 10, ipv6MTUDiscover: Int32 = 23
    private static let discoverDo: Int32 = 2, discoverWant: Int32 = 1

    /// Whether datagrams from `socket` may be fragmented. Not, normally: every datagram
    /// goes with DF, so a router whose link is smaller answers with an ICMP error the
    /// kernel learns the path MTU from, and a send larger than what it learned fails at
    /// once (the segments are cut again to the new MTU) instead of going in fragments. A
    /// UDP GSO send's segments would go without DF otherwise (the kernel decides DF on the
    /// whole buffer). Only a packet that cannot be cut goes with fragmentation allowed.
    static func setFragmentation(_ socket: DatagramSocket, allowed: Bool) throws(SystemError) {
        var value = allowed ? discoverWant : discoverDo
        let done = socket.family == .ipv4
            ? setsockopt(socket.fileDescriptor, Int32(IPPROTO_IP), ipMTUDiscover, &value, socklen_t(MemoryLayout<Int32>.size))
            : setsockopt(socket.fileDescriptor, Int32(IPPROTO_IPV6), ipv6MTUDiscover, &value,
                         socklen_t(MemoryLayout<Int32>.size))
        guard done == 0 else { throw SystemError("set path MTU discovery of UDP port", errno: errno) }
    }

    /// Sends a datagram too large for the path that cannot be cut (not TCP) with
    /// fragmentation allowed for it alone (two more system calls, only for such packets).
    func sendFragmentable(_ datagram: UnsafeRawPointer, length: Int, to moa: IPAddress, port: UInt16) -> Bool {
        guard segmentation != .off, let socket = moa.family == .ipv4 ? socket4 : socket6 else {
            return send(datagram, length: length, to: moa, port: port)
        }
        do {
            try Self.setFragmentation(socket, allowed: true)
            let sent = send(datagram, length: length, to: moa, port: port)
            try Self.setFragmentation(socket, allowed: false)
            return sent
        } catch {
            return false
        }
    }

    /// Asks the kernel to hand over a train of datagrams from one sender in one read
    /// (`UDP_GRO`, Linux 5.0): a peer's `UDP_SEGMENT` send arrives as it was sent. Where
    /// the kernel does not have it, each read is one datagram, as before.
    static func receiveTrains(_ socket: DatagramSocket) {
        var on: Int32 = 1
        if setsockopt(socket.fileDescriptor, SegmentVectors.solUDP, SegmentVectors.udpGRO, &on,
                      socklen_t(MemoryLayout<Int32>.size)) != 0 {
            log("matd: UDP_GRO refused (\(String(cString: strerror(errno)))): encapsulated datagrams are read one by one")
        }
    }

    /// Reads what waits on `socket` into the receive buffer: one datagram, or a train of
    /// datagrams of `segmentSize` bytes each (the last may be shorter); nil when nothing
    /// waits. A read the kernel cut short is counted as refused and skipped.
    func receiveTrain(_ socket: DatagramSocket) -> (length: Int, source: IPAddress, port: UInt16, segmentSize: Int)? {
        while true {
            var vector = iovec(iov_base: receiveBuffer, iov_len: Self.receiveSize)
            var message = msghdr()
            message.msg_name = UnsafeMutableRawPointer(vectors.source)
            message.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            message.msg_control = vectors.receiveControl
            message.msg_controllen = SegmentVectors.receiveControlSpace
            let count = withUnsafeMutablePointer(to: &vector) { vector in
                message.msg_iov = vector
                message.msg_iovlen = 1
                return recvmsg(socket.fileDescriptor, &message, Int32(MSG_DONTWAIT))
            }
            guard count >= 0 else {
                if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { counters.refused &+= 1 }
                return nil
            }
            guard message.msg_flags & Int32(MSG_TRUNC) == 0,
                  let endpoint = SocketAddress.endpoint(at: UnsafeRawPointer(vectors.source)) else {
                counters.refused &+= 1
                continue
            }
            var segmentSize = 0
            // cmsghdr: length (size_t), level, type (int each), then the data, 8-aligned.
            var offset = 0
            while offset + 16 <= message.msg_controllen {
                let length = vectors.receiveControl.load(fromByteOffset: offset, as: Int.self)
                let level = vectors.receiveControl.load(fromByteOffset: offset + 8, as: Int32.self)
                let type = vectors.receiveControl.load(fromByteOffset: offset + 12, as: Int32.self)
                guard length >= 16, offset + length <= message.msg_controllen else { break }
                if level == SegmentVectors.solUDP, type == SegmentVectors.udpGRO, length >= 20 {
                    segmentSize = Int(vectors.receiveControl.load(fromByteOffset: offset + 16, as: Int32.self))
                }
                offset += (length + 7) & ~7
            }
            return (count, endpoint.address, endpoint.port, segmentSize > 0 ? segmentSize : 0)
        }
    }

    /// The largest UDP payload that goes to `moa` unfragmented: the path MTU less the
    /// outer IP and UDP headers. The MTU is looked up once per MoA (a system call or three
    /// on the first packet) and then refreshed by `refreshPathMTUs`.
    @inline(__always)
    func datagramRoom(to moa: IPAddress) -> Int {
        let mtu = pathMTUs[moa] ?? lookUpPathMTU(moa)
        return mtu - (moa.family == .ipv4 ? 28 : 48)
    }

    /// The largest UDP payload that goes through the relay at `relay` unfragmented: as an
    /// IPv6 datagram of the relay's path MTU holds, whatever the family the relay is
    /// reached by, since the relay sends it on unchanged in the family the peer reaches it
    /// by (docs/signaling.md, "Relay"): an IPv6 outer header is 20 bytes more than IPv4's.
    @inline(__always)
    func relayedRoom(to relay: IPAddress) -> Int {
        (pathMTUs[relay] ?? lookUpPathMTU(relay)) - 48
    }

    /// Looks up the MTU towards `moa` again (1280, the least IPv6 allows, and 576 for IPv4,
    /// when the lookup fails: small segments rather than fragments).
    @discardableResult
    func lookUpPathMTU(_ moa: IPAddress) -> Int {
        let mtu: Int
        do {
            mtu = try RouteMTU.toward(moa)
        } catch {
            log(.warning, "matd: \(error); segments to \(moa) go at the minimum MTU")
            mtu = moa.family == .ipv4 ? 576 : 1280
        }
        pathMTUs[moa] = mtu
        mtuRefresh.lookedUp(moa, now: MonotonicClock.milliseconds())
        return mtu
    }

    /// Once a second: the MTUs of the MoAs in UDP looked up again (the kernel lowers one
    /// when a router on the path answers a datagram too large with an ICMP error), those
    /// that came due (``PathMTURefresh``: at most its limit, each at most once a second);
    /// a due MoA no longer in UDP is forgotten. The relay's too while traffic goes through it.
    func refreshPathMTUs(now: UInt64) {
        for moa in mtuRefresh.take(now: now) {
            let relayInUse = !relayedMoAs.isEmpty && relayServer?.address == moa
            if endpoints.port(for: moa) != nil || relayInUse {
                lookUpPathMTU(moa)
            } else {
                pathMTUs[moa] = nil
            }
        }
    }

    /// Sends the segments the TCP segmenter cut from `packet` (``sendSegments(_:of:to:port:kind:)``).
    func sendSegments(of packet: UnsafeRawPointer, to moa: IPAddress, port: UInt16,
                      kind: EncapWire.Kind = .packet) -> Int {
        sendSegments(segmenter, of: packet, to: moa, port: port, kind: kind)
    }

    /// Sends the segments `segments` cut from `packet` (a TCP packet's, or a UDP
    /// super-packet's datagrams) to `moa`:`port`, each behind an encapsulation header of
    /// `kind` (a packet, or a relayed packet to the relay) and the virtio header of a plain
    /// packet with a complete checksum (the receiving kernel checks it as it checks any
    /// packet's). One `sendmsg` with `UDP_SEGMENT` for up to 64 segments, else one
    /// `sendmmsg`. Returns the number of datagrams the kernel took.
    func sendSegments<Segments: PacketSegments & ~Copyable>(_ segments: borrowing Segments, of packet: UnsafeRawPointer,
                                                            to moa: IPAddress, port: UInt16,
                                                            kind: EncapWire.Kind = .packet) -> Int {
        let count = segments.count
        let header = VirtioNetHeader()
        for index in 0..<count {
            let slot = segments.header(index)
            EncapWire.writeHeader(kind, at: slot)
            header.store(to: slot + EncapWire.headerLength)
            let (offset, length) = segments.payload(index)
            vectors.iovecs[2 * index] = iovec(iov_base: slot, iov_len: segments.headerLength)
            vectors.iovecs[2 * index + 1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: packet + offset),
                                                  iov_len: length)
        }
        vectors.setTarget(moa, port: port)
        guard let fd = (moa.family == .ipv4 ? socket4 : socket6)?.fileDescriptor else { return 0 }
        return segmentation == .udpSegment
            ? sendWithUDPSegment(fd, count: count, size: segments.segmentSize)
            : sendWithMultipleMessages(fd, count: count)
    }

    /// Up to 64 segments (and 65,000 bytes) per `sendmsg`, which the kernel cuts at
    /// `segmentSize`: every segment but the packet's last has exactly that size.
    private func sendWithUDPSegment(_ fd: Int32, count: Int, size: Int) -> Int {
        let perSend = max(1, min(SegmentVectors.maximumGSOSegments, SegmentVectors.maximumGSOBytes / size))
        let control = vectors.control
        control.initializeMemory(as: UInt8.self, repeating: 0, count: SegmentVectors.controlSpace)
        control.storeBytes(of: SegmentVectors.controlLength, as: Int.self)
        control.storeBytes(of: SegmentVectors.solUDP, toByteOffset: 8, as: Int32.self)
        control.storeBytes(of: SegmentVectors.udpSegment, toByteOffset: 12, as: Int32.self)
        control.storeBytes(of: UInt16(size), toByteOffset: 16, as: UInt16.self)
        var message = msghdr()
        message.msg_name = UnsafeMutableRawPointer(vectors.target)
        message.msg_namelen = vectors.targetLength
        var sent = 0
        var start = 0
        while start < count {
            let segments = min(perSend, count - start)
            message.msg_iov = vectors.iovecs + 2 * start
            message.msg_iovlen = 2 * segments
            // One segment needs no cutting (and the kernel refuses a segment size larger
            // than the path's MTU even where it has nothing to cut).
            message.msg_control = segments > 1 ? control : nil
            message.msg_controllen = segments > 1 ? SegmentVectors.controlSpace : 0
            guard sendmsg(fd, &message, Int32(MSG_DONTWAIT)) > 0 else { break }
            sent += segments
            start += segments
        }
        return sent
    }

    /// One `mmsghdr` per segment, all in one `sendmmsg`.
    private func sendWithMultipleMessages(_ fd: Int32, count: Int) -> Int {
        for index in 0..<count {
            let header = (vectors.messages + index * MultipleMessages.headerStride)
                .assumingMemoryBound(to: MultipleMessages.Header.self)
            header.pointee = MultipleMessages.Header()
            header.pointee.message.msg_name = UnsafeMutableRawPointer(vectors.target)
            header.pointee.message.msg_namelen = vectors.targetLength
            header.pointee.message.msg_iov = vectors.iovecs + 2 * index
            header.pointee.message.msg_iovlen = 2
        }
        let sent = MultipleMessages.send(fd, vectors.messages, count: count, flags: Int32(MSG_DONTWAIT))
        return max(0, Int(sent))
    }
}
