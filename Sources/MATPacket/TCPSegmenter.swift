/// Cuts a TCP packet (a GSO super-packet, or one packet too large for a path) into
/// segments that fit a path, as a NIC's TSO would: each segment is a valid
/// IP packet of its own (its lengths, IPv4 identification and header checksum, sequence
/// number, flags and a complete TCP checksum). The payload is not copied: the headers of
/// segment `i` are written into slot `i` of preallocated storage, behind `prefix` bytes the
/// caller fills (an encapsulation header, say), and its payload is `payload(i)` of the
/// packet it was cut from. Nothing is allocated per packet.
public struct TCPSegmenter: ~Copyable {
    /// The most segments one packet is cut into (65,535 bytes at an `mss` of 256 or more).
    public static let maximumSegments = 256
    /// Room per slot: a prefix of up to 64 bytes, an IP header (IPv4 with options: 60
    /// bytes) and a TCP header (60 bytes with options).
    public static let slotSize = 192
    public static let maximumPrefix = 64

    /// The segments' header slots, `slotSize` bytes apart.
    public let headers: UnsafeMutableRawPointer
    /// Segments the last `segment` call made.
    public private(set) var count = 0
    /// Bytes in each slot: the prefix, the IP header and the TCP header.
    public private(set) var headerLength = 0
    /// Bytes of every segment but the last (the prefix in), which may be shorter.
    public var segmentSize: Int { headerLength + mss }
    private var payloadStart = 0
    private var payloadLength = 0
    private var mss = 0

    public init() {
        headers = UnsafeMutableRawPointer.allocate(byteCount: Self.maximumSegments * Self.slotSize, alignment: 16)
    }

    deinit { headers.deallocate() }

    /// Slot `index`'s headers (the prefix first).
    @inline(__always)
    public func header(_ index: Int) -> UnsafeMutableRawPointer { headers + index * Self.slotSize }

    /// Where segment `index`'s payload starts in the packet, and its length.
    @inline(__always)
    public func payload(_ index: Int) -> (offset: Int, length: Int) {
        let offset = index * mss
        return (payloadStart + offset, min(mss, payloadLength - offset))
    }

    /// Cuts the TCP packet of `length` bytes at `packet` (its IP header first) into
    /// segments that take at most `limit` bytes each with their `prefix` (so at most
    /// `limit` minus the prefix and the headers of payload), and no more than `gsoSize`
    /// bytes of payload when that is not 0 (a super-packet's segment size: its sender's
    /// MSS). False, with nothing cut, for anything else: not TCP, an IPv4 fragment, an IPv6
    /// packet with extension headers, lengths that disagree, no payload, headers too large
    /// for a slot or for `limit`, or more than `maximumSegments` segments.
    public mutating func segment(_ packet: UnsafeRawPointer, length: Int, limit: Int, gsoSize: Int = 0,
                                 prefix: Int) -> Bool {
        count = 0
        guard prefix >= 0, prefix <= Self.maximumPrefix, length >= 20 else { return false }
        let ipLength: Int
        let version = packet.load(as: UInt8.self) >> 4
        switch version {
        case 4:
            ipLength = Int(packet.load(as: UInt8.self) & 0x0F) * 4
            let total = Int(UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            let fragment = UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3FFF
            guard ipLength >= 20, total == length, fragment == 0,
                  packet.load(fromByteOffset: 9, as: UInt8.self) == 6 else { return false }
        case 6:
            ipLength = 40
            guard length >= 40,
                  Int(UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 4, as: UInt16.self))) + 40 == length,
                  packet.load(fromByteOffset: 6, as: UInt8.self) == 6 else { return false }
        default:
            return false
        }
        guard length >= ipLength + 20 else { return false }
        let tcpLength = Int(packet.load(fromByteOffset: ipLength + 12, as: UInt8.self) >> 4) * 4
        let headers = ipLength + tcpLength
        guard tcpLength >= 20, length > headers, prefix + headers <= Self.slotSize else { return false }
        let payloadLength = length - headers
        var mss = limit - prefix - headers
        if gsoSize > 0 { mss = min(mss, gsoSize) }
        guard mss > 0 else { return false }
        let segments = (payloadLength + mss - 1) / mss
        guard segments <= Self.maximumSegments else { return false }
        self.payloadStart = headers
        self.payloadLength = payloadLength
        self.mss = mss
        headerLength = prefix + headers

        // The pseudo-header's addresses are the same for every segment.
        let addresses = version == 4
            ? InternetChecksum.sum(packet + 12, count: 8)
            : InternetChecksum.sum(packet + 8, count: 32)
        let sequence = UInt32(bigEndian: packet.loadUnaligned(fromByteOffset: ipLength + 4, as: UInt32.self))
        let flags = packet.load(fromByteOffset: ipLength + 13, as: UInt8.self)
        let identification = UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        for index in 0..<segments {
            let ip = header(index) + prefix
            ip.copyMemory(from: packet, byteCount: headers)
            let tcp = ip + ipLength
            let (offset, bytes) = payload(index)
            let segmentTCPLength = tcpLength + bytes
            if version == 4 {
                ip.storeBytes(of: UInt16(ipLength + segmentTCPLength).bigEndian, toByteOffset: 2, as: UInt16.self)
                ip.storeBytes(of: (identification &+ UInt16(truncatingIfNeeded: index)).bigEndian, toByteOffset: 4,
                              as: UInt16.self)
                ip.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
                let checksum = InternetChecksum.finish(UInt64(InternetChecksum.sum(UnsafeRawPointer(ip), count: ipLength)))
                ip.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
            } else {
                ip.storeBytes(of: UInt16(segmentTCPLength).bigEndian, toByteOffset: 4, as: UInt16.self)
            }
            tcp.storeBytes(of: (sequence &+ UInt32(truncatingIfNeeded: offset - headers)).bigEndian, toByteOffset: 4,
                           as: UInt32.self)
            // FIN and PSH belong to the last segment, CWR to the first (RFC 3168 6.1.2).
            var segmentFlags = flags
            if index != segments - 1 { segmentFlags &= ~0x09 }
            if index != 0 { segmentFlags &= ~0x80 }
            tcp.storeBytes(of: segmentFlags, toByteOffset: 13, as: UInt8.self)
            tcp.storeBytes(of: UInt16(0), toByteOffset: 16, as: UInt16.self)
            let sum = UInt64(addresses) &+ 6 &+ UInt64(segmentTCPLength)
                &+ UInt64(InternetChecksum.sum(UnsafeRawPointer(tcp), count: tcpLength))
                &+ UInt64(InternetChecksum.sum(packet + offset, count: bytes))
            tcp.storeBytes(of: InternetChecksum.finish(sum).bigEndian, toByteOffset: 16, as: UInt16.self)
        }
        count = segments
        return true
    }
}
