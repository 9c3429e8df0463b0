/// What a segmenter leaves for the sender: `count` segments, each its headers in slot
/// `header(index)` (`headerLength` bytes, the caller's prefix first) and its payload at
/// `payload(index)` of the packet it was cut from. Every segment but the last takes
/// `segmentSize` bytes with the prefix, so one `UDP_SEGMENT` send can carry them all.
public protocol PacketSegments: ~Copyable {
    var count: Int { get }
    var headerLength: Int { get }
    var segmentSize: Int { get }
    func header(_ index: Int) -> UnsafeMutableRawPointer
    func payload(_ index: Int) -> (offset: Int, length: Int)
}

extension TCPSegmenter: PacketSegments {}
extension UDPSegmenter: PacketSegments {}

/// Cuts a UDP GSO super-packet (what an application's `UDP_SEGMENT` send, QUIC's for one,
/// hands a TUN device with USO offload) into the datagrams its sender asked for, as a NIC's
/// USO would: every `gsoSize` bytes of payload a datagram of its own, the last one shorter,
/// each a valid IP packet (its IPv4 total length, identification and header checksum or
/// IPv6 payload length, its UDP length and complete UDP checksum). A super-packet whose
/// IPv4 UDP checksum is 0 (none) gives datagrams with none; IPv6 has no such choice (RFC
/// 8200 section 8.1), so its datagrams always get one.
///
/// As ``TCPSegmenter``: the payload is not copied, the headers of segment `i` are written
/// into slot `i` of preallocated storage behind `prefix` bytes the caller fills, and
/// nothing is allocated per packet.
public struct UDPSegmenter: ~Copyable {
    /// The most segments one super-packet is cut into (Linux sends at most 128 per
    /// `UDP_SEGMENT` call, `UDP_MAX_SEGMENTS`).
    public static let maximumSegments = 256
    /// Room per slot: a prefix of up to 64 bytes, an IP header (IPv4 with options: 60
    /// bytes) and the UDP header's 8, rounded up to 16.
    public static let slotSize = 144
    public static let maximumPrefix = 64

    /// The segments' header slots, `slotSize` bytes apart.
    public let headers: UnsafeMutableRawPointer
    /// Segments the last `segment` call made.
    public private(set) var count = 0
    /// Bytes in each slot: the prefix, the IP header and the UDP header.
    public private(set) var headerLength = 0
    /// Bytes of every segment but the last (the prefix in), which may be shorter.
    public var segmentSize: Int { headerLength + gsoSize }
    private var payloadStart = 0
    private var payloadLength = 0
    private var gsoSize = 0

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
        let offset = index * gsoSize
        return (payloadStart + offset, min(gsoSize, payloadLength - offset))
    }

    /// Cuts the UDP super-packet of `length` bytes at `packet` (its IP header first) into
    /// datagrams of `gsoSize` bytes of UDP payload (its virtio header's `gso_size`), the
    /// last one shorter. False, with nothing cut, for anything else: not UDP, an IPv4
    /// fragment, an IPv6 packet with extension headers, IP or UDP lengths that are not the
    /// packet's, no payload, a `gsoSize` of 0, headers too large for a slot, or more than
    /// `maximumSegments` segments. Whether a segment fits the path is the caller's test
    /// (``segmentSize``): the sender chose the size, and cutting smaller would change the
    /// datagrams it sends.
    public mutating func segment(_ packet: UnsafeRawPointer, length: Int, gsoSize: Int, prefix: Int) -> Bool {
        count = 0
        guard prefix >= 0, prefix <= Self.maximumPrefix, gsoSize > 0, length >= 20 else { return false }
        let ipLength: Int
        let version = packet.load(as: UInt8.self) >> 4
        switch version {
        case 4:
            ipLength = Int(packet.load(as: UInt8.self) & 0x0F) * 4
            let total = Int(UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            let fragment = UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3FFF
            guard ipLength >= 20, total == length, fragment == 0,
                  packet.load(fromByteOffset: 9, as: UInt8.self) == IPProtocolNumber.udp else { return false }
        case 6:
            ipLength = 40
            guard length >= 40,
                  Int(UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 4, as: UInt16.self))) + 40 == length,
                  packet.load(fromByteOffset: 6, as: UInt8.self) == IPProtocolNumber.udp else { return false }
        default:
            return false
        }
        let headers = ipLength + 8
        guard length > headers, prefix + headers <= Self.slotSize,
              Int(UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: ipLength + 4, as: UInt16.self)))
                == length - ipLength else { return false }
        let payloadLength = length - headers
        let segments = (payloadLength + gsoSize - 1) / gsoSize
        guard segments <= Self.maximumSegments else { return false }
        self.payloadStart = headers
        self.payloadLength = payloadLength
        self.gsoSize = gsoSize
        headerLength = prefix + headers

        // The pseudo-header's addresses and protocol are the same for every segment.
        let addresses = UInt64(version == 4
            ? InternetChecksum.sum(packet + 12, count: 8)
            : InternetChecksum.sum(packet + 8, count: 32)) &+ UInt64(IPProtocolNumber.udp)
        let noChecksum = version == 4 && packet.loadUnaligned(fromByteOffset: ipLength + 6, as: UInt16.self) == 0
        // The ports, summed once; the length and checksum words are each segment's.
        let ports = UInt64(InternetChecksum.sum(packet + ipLength, count: 4))
        let identification = UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        for index in 0..<segments {
            let ip = header(index) + prefix
            ip.copyMemory(from: packet, byteCount: headers)
            let udp = ip + ipLength
            let (offset, bytes) = payload(index)
            let udpLength = 8 + bytes
            if version == 4 {
                ip.storeBytes(of: UInt16(ipLength + udpLength).bigEndian, toByteOffset: 2, as: UInt16.self)
                ip.storeBytes(of: (identification &+ UInt16(truncatingIfNeeded: index)).bigEndian, toByteOffset: 4,
                              as: UInt16.self)
                ip.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
                let checksum = InternetChecksum.finish(UInt64(InternetChecksum.sum(UnsafeRawPointer(ip), count: ipLength)))
                ip.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
            } else {
                ip.storeBytes(of: UInt16(udpLength).bigEndian, toByteOffset: 4, as: UInt16.self)
            }
            udp.storeBytes(of: UInt16(udpLength).bigEndian, toByteOffset: 4, as: UInt16.self)
            guard !noChecksum else { continue }
            // The UDP length counts twice: in the pseudo-header and in the header.
            let sum = addresses &+ ports &+ 2 &* UInt64(udpLength)
                &+ UInt64(InternetChecksum.sum(packet + offset, count: bytes))
            // A computed 0 goes as 0xFFFF: 0 means "no checksum" (RFC 768).
            let checksum = InternetChecksum.finish(sum)
            udp.storeBytes(of: (checksum == 0 ? 0xFFFF : checksum).bigEndian, toByteOffset: 6, as: UInt16.self)
        }
        count = segments
        return true
    }
}
