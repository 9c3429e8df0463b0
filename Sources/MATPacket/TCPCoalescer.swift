/// Puts consecutive TCP segments of one flow back together into one GSO super-packet, as
/// the kernel's GRO does for a NIC: what ``TCPSegmenter`` cut for the path, joined again
/// before it goes into a TUN device, so the receiving kernel's TCP takes one packet
/// instead of dozens. A segment joins when it continues the packet being built: same
/// addresses, ports and header length, headers equal but for lengths, IPv4 identification,
/// checksums, sequence number and PSH/FIN, the next sequence number, and every earlier
/// segment as long as the first. The result (behind its virtio header: `gsoSize` the
/// first segment's payload, a partial checksum for the device to finish) is built in a
/// buffer allocated once; segments' checksums are not checked (the datagrams carrying
/// them were: the UDP checksum).
public struct TCPCoalescer: ~Copyable {
    /// Room for the virtio header and the largest IP packet.
    public static let capacity = VirtioNetHeader.size + 65_535

    /// The virtio header, then the packet being built.
    public let buffer: UnsafeMutableRawPointer
    /// Segments in the packet being built (0: none).
    public private(set) var segments = 0
    /// Bytes in `buffer` (the virtio header in).
    public private(set) var length = 0
    private var ipLength = 0
    private var headerLength = 0
    private var mss = 0
    private var nextSequence: UInt32 = 0
    private var finished = false

    public init() {
        buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.capacity, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// Adds the plain packet of `count` bytes at `packet` (its IP header first): true when
    /// it joined the packet being built or started one; false when it cannot (not a TCP
    /// segment with payload, or not the continuation), and the caller writes out what is
    /// built (``finish()``), then offers it again or sends it on its own.
    public mutating func add(_ packet: UnsafeRawPointer, count: Int) -> Bool {
        guard let (ip, tcp) = Self.headers(packet, count: count) else { return false }
        let headers = ip + tcp
        let payload = count - headers
        guard payload > 0 else { return false }
        let sequence = UInt32(bigEndian: packet.loadUnaligned(fromByteOffset: ip + 4, as: UInt32.self))
        let flags = packet.load(fromByteOffset: ip + 13, as: UInt8.self)
        let body = buffer + VirtioNetHeader.size
        if segments == 0 {
            body.copyMemory(from: packet, byteCount: count)
            (ipLength, headerLength, mss, segments) = (ip, headers, payload, 1)
            length = VirtioNetHeader.size + count
            nextSequence = sequence &+ UInt32(payload)
            // PSH or FIN ends what can be joined (the kernel's GRO flushes there too).
            finished = flags & 0x09 != 0
            return true
        }
        guard !finished, ip == ipLength, headers == headerLength, payload <= mss, sequence == nextSequence,
              length + payload <= Self.capacity, length - VirtioNetHeader.size == headerLength + mss * segments,
              Self.sameFlow(UnsafeRawPointer(body), packet, ip: ip, tcp: tcp) else { return false }
        (buffer + length).copyMemory(from: packet + headers, byteCount: payload)
        length += payload
        segments += 1
        nextSequence = sequence &+ UInt32(payload)
        // The last segment's PSH and FIN are the packet's.
        let merged = body.load(fromByteOffset: ip + 13, as: UInt8.self) | (flags & 0x09)
        body.storeBytes(of: merged, toByteOffset: ip + 13, as: UInt8.self)
        finished = flags & 0x09 != 0 || payload < mss
        return true
    }

    /// Finishes the packet built: lengths, IPv4 header checksum and, for more than one
    /// segment, the virtio header of a TCP super-packet (segment size, partial checksum).
    /// Returns the bytes at `buffer` to write (the virtio header in), and starts over.
    public mutating func finish() -> Int {
        defer { segments = 0; length = 0 }
        guard segments > 0 else { return 0 }
        let body = buffer + VirtioNetHeader.size
        let total = length - VirtioNetHeader.size
        let v4 = body.load(as: UInt8.self) >> 4 == 4
        var header = VirtioNetHeader()
        if segments > 1 {
            let tcpLength = total - ipLength
            let addresses = v4 ? InternetChecksum.sum(UnsafeRawPointer(body) + 12, count: 8)
                               : InternetChecksum.sum(UnsafeRawPointer(body) + 8, count: 32)
            if v4 {
                body.storeBytes(of: UInt16(total).bigEndian, toByteOffset: 2, as: UInt16.self)
                body.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
                let checksum = InternetChecksum.finish(UInt64(InternetChecksum.sum(UnsafeRawPointer(body), count: ipLength)))
                body.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
            } else {
                body.storeBytes(of: UInt16(tcpLength).bigEndian, toByteOffset: 4, as: UInt16.self)
            }
            // The pseudo-header's sum, folded, not complemented: what the device finishes.
            let partial = InternetChecksum.fold(UInt64(addresses) &+ 6 &+ UInt64(tcpLength))
            body.storeBytes(of: partial.bigEndian, toByteOffset: ipLength + 16, as: UInt16.self)
            header.flags = VirtioNetHeader.needsChecksum
            header.gsoTypeRaw = v4 ? VirtioNetHeader.GSOType.tcpv4.rawValue : VirtioNetHeader.GSOType.tcpv6.rawValue
            header.headerLength = UInt16(headerLength)
            header.gsoSize = UInt16(mss)
            header.checksumStart = UInt16(ipLength)
            header.checksumOffset = 16
        }
        header.store(to: buffer)
        return length
    }

    /// The IP and TCP header lengths of a plain TCP packet (IPv4 unfragmented, IPv6
    /// without extension headers) whose lengths agree with `count`; nil for anything else.
    static func headers(_ packet: UnsafeRawPointer, count: Int) -> (ip: Int, tcp: Int)? {
        guard count >= 40 else { return nil }
        let ip: Int
        switch packet.load(as: UInt8.self) >> 4 {
        case 4:
            ip = Int(packet.load(as: UInt8.self) & 0x0F) * 4
            let total = Int(UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            let fragment = UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3FFF
            guard ip >= 20, total == count, fragment == 0, packet.load(fromByteOffset: 9, as: UInt8.self) == 6 else {
                return nil
            }
        case 6:
            ip = 40
            guard count >= 60, Int(UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 4, as: UInt16.self))) + 40 == count,
                  packet.load(fromByteOffset: 6, as: UInt8.self) == 6 else { return nil }
        default:
            return nil
        }
        guard count >= ip + 20 else { return nil }
        let tcp = Int(packet.load(fromByteOffset: ip + 12, as: UInt8.self) >> 4) * 4
        guard tcp >= 20, ip + tcp <= count else { return nil }
        return (ip, tcp)
    }

    /// Whether two segments' headers agree but for what differs between segments of one
    /// packet (IPv4: total length, identification, checksum; IPv6: payload length; TCP:
    /// sequence number, PSH, FIN and CWR, checksum).
    static func sameFlow(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, ip: Int, tcp: Int) -> Bool {
        func equal(_ from: Int, _ to: Int) -> Bool {
            var offset = from
            while offset < to {
                guard a.load(fromByteOffset: offset, as: UInt8.self) == b.load(fromByteOffset: offset, as: UInt8.self) else {
                    return false
                }
                offset += 1
            }
            return true
        }
        let ipSame = ip == 40
            ? equal(0, 4) && equal(6, 40)
            : equal(0, 2) && equal(6, 10) && equal(12, ip)
        guard ipSame else { return false }
        let t = ip
        return equal(t, t + 4) && equal(t + 8, t + 13)
            // CWR is the first segment's alone.
            && a.load(fromByteOffset: t + 13, as: UInt8.self) & ~0x89 == b.load(fromByteOffset: t + 13, as: UInt8.self) & ~0x89
            && equal(t + 14, t + 16) && equal(t + 18, t + tcp)
    }
}
