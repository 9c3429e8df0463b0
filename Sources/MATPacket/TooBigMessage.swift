/// The answer a tunnel gives a packet too large for it (RFC 2473 section 7.2, RFC 4459):
/// ICMP "fragmentation needed" (type 3 code 4, RFC 792) with the next-hop MTU (RFC 1191)
/// for an IPv4 packet with DF, ICMPv6 Packet Too Big (RFC 4443 section 3.2) for an IPv6
/// packet. The UDP encapsulation has less room per packet than the TUN device's MTU
/// promises; this answer, written into the TUN device as if from the packet's
/// destination, makes the sender's kernel learn the smaller MTU for that destination (its
/// path MTU discovery, RFC 1191 and RFC 8201), as a real tunnel's does.
///
/// Raw memory only: the answer goes into a buffer the caller owns (``capacity`` bytes),
/// nothing is allocated, and the packet is read only within `length`.
public enum TooBigMessage {
    /// The buffer an answer needs: an IPv6 answer fills at most the minimum IPv6 MTU, an
    /// IPv4 one at most 576 bytes (RFC 1812 section 4.3.2.3).
    public static let capacity = 1280
    /// The largest IPv4 answer (RFC 1812 section 4.3.2.3) and the IPv4 MTU no link has less
    /// of (RFC 791): below it the packet is left to fragmentation.
    public static let maximumAnswer4 = 576
    public static let minimumMTU4 = 68
    /// The IPv6 minimum MTU (RFC 8200 section 5): a path smaller than this must fragment
    /// below IPv6 (RFC 2473 section 7.1), so no Packet Too Big says less.
    public static let minimumMTU6 = 1280

    /// Writes into `answer` (``capacity`` bytes) the ICMP error that tells the sender of
    /// `packet` (`length` bytes, the IP header first) that at most `mtu` bytes go, and
    /// returns its length; 0 when the packet is not answered but fragmented below IP, as
    /// before: an IPv4 packet without DF, a non-first IPv4 fragment, an ICMP or ICMPv6
    /// error (never an error about an error, RFC 1122 section 3.2.2, RFC 4443 section
    /// 2.4), a source that is unspecified or multicast, an IPv6 `mtu` under 1280, an IPv4
    /// one under 68, or a header this cannot read. Whether the packet is larger than `mtu`
    /// is the caller's test.
    ///
    /// The answer comes from the packet's destination (the tunnel stands for the path to
    /// it) to its source, quotes as much of the packet as fits 576 bytes (IPv4) or 1280
    /// (IPv6), and has complete checksums.
    @inlinable
    public static func write(answering packet: UnsafeRawPointer, length: Int, mtu: Int,
                             into answer: UnsafeMutableRawPointer) -> Int {
        guard length >= 1 else { return 0 }
        switch packet.load(as: UInt8.self) >> 4 {
        case 4: return write4(answering: packet, length: length, mtu: mtu, into: answer)
        case 6: return write6(answering: packet, length: length, mtu: mtu, into: answer)
        default: return 0
        }
    }

    @inlinable
    static func write4(answering packet: UnsafeRawPointer, length: Int, mtu: Int,
                       into answer: UnsafeMutableRawPointer) -> Int {
        guard length >= 20, mtu >= minimumMTU4 else { return 0 }
        let headerLength = Int(packet.load(as: UInt8.self) & 0x0F) * 4
        let fragment = UInt16(bigEndian: packet.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        // DF set, offset 0 (a first fragment or none).
        guard headerLength >= 20, headerLength <= length, fragment & 0x4000 != 0, fragment & 0x1FFF == 0 else {
            return 0
        }
        let source = UInt32(bigEndian: packet.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        // Unspecified, multicast, or the limited broadcast: nobody to answer.
        guard source != 0, source >> 28 != 0xE, source != 0xFFFF_FFFF else { return 0 }
        if packet.load(fromByteOffset: 9, as: UInt8.self) == IPProtocolNumber.icmp {
            guard headerLength < length else { return 0 }
            switch packet.load(fromByteOffset: headerLength, as: UInt8.self) {
            case 3, 4, 5, 11, 12: return 0
            default: break
            }
        }
        let quoted = min(length, maximumAnswer4 - 28)
        let total = 28 + quoted
        answer.storeBytes(of: UInt8(0x45), as: UInt8.self)
        // Precedence "internetwork control", as for any ICMP error (RFC 1812 4.3.2.5).
        answer.storeBytes(of: UInt8(0xC0), toByteOffset: 1, as: UInt8.self)
        answer.storeBytes(of: UInt16(total).bigEndian, toByteOffset: 2, as: UInt16.self)
        // Identification 0, no flags: the answer is never fragmented (576 bytes at most).
        answer.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        answer.storeBytes(of: UInt8(64), toByteOffset: 8, as: UInt8.self)
        answer.storeBytes(of: IPProtocolNumber.icmp, toByteOffset: 9, as: UInt8.self)
        answer.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        // From the packet's destination, to its source.
        (answer + 12).copyMemory(from: packet + 16, byteCount: 4)
        (answer + 16).copyMemory(from: packet + 12, byteCount: 4)
        answer.storeBytes(of: InternetChecksum.finish(UInt64(InternetChecksum.sum(answer, count: 20))).bigEndian,
                          toByteOffset: 10, as: UInt16.self)
        let icmp = answer + 20
        icmp.storeBytes(of: UInt8(3), as: UInt8.self)
        icmp.storeBytes(of: UInt8(4), toByteOffset: 1, as: UInt8.self)
        icmp.storeBytes(of: UInt32(0), toByteOffset: 2, as: UInt32.self)
        icmp.storeBytes(of: UInt16(min(mtu, 0xFFFF)).bigEndian, toByteOffset: 6, as: UInt16.self)
        (icmp + 8).copyMemory(from: packet, byteCount: quoted)
        icmp.storeBytes(of: InternetChecksum.finish(UInt64(InternetChecksum.sum(icmp, count: 8 + quoted))).bigEndian,
                        toByteOffset: 2, as: UInt16.self)
        return total
    }

    @inlinable
    static func write6(answering packet: UnsafeRawPointer, length: Int, mtu: Int,
                       into answer: UnsafeMutableRawPointer) -> Int {
        guard length >= 40, mtu >= minimumMTU6 else { return 0 }
        // Unspecified or multicast: nobody to answer.
        let sourceHigh = UInt64(bigEndian: packet.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let sourceLow = UInt64(bigEndian: packet.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        guard sourceHigh | sourceLow != 0, sourceHigh >> 56 != 0xFF else { return 0 }
        let firstHeader = packet.load(fromByteOffset: 6, as: UInt8.self)
        let chain: IPv6ChainEnd
        do {
            chain = try PacketLayout.walkIPv6Chain(packet, headerStart: 0, end: length, firstHeader: firstHeader)
        } catch {
            // A chain that cannot be read may hide an ICMPv6 error: not answered.
            return 0
        }
        if chain.nextHeader == IPProtocolNumber.icmpv6, !chain.isLaterFragment {
            // Types below 128 are errors (RFC 4443 section 2.1).
            guard chain.offset < length, packet.load(fromByteOffset: chain.offset, as: UInt8.self) >= 128 else {
                return 0
            }
        }
        let quoted = min(length, minimumMTU6 - 48)
        let payload = 8 + quoted
        answer.storeBytes(of: UInt32(0x6000_0000).bigEndian, as: UInt32.self)
        answer.storeBytes(of: UInt16(payload).bigEndian, toByteOffset: 4, as: UInt16.self)
        answer.storeBytes(of: IPProtocolNumber.icmpv6, toByteOffset: 6, as: UInt8.self)
        answer.storeBytes(of: UInt8(64), toByteOffset: 7, as: UInt8.self)
        // From the packet's destination, to its source.
        (answer + 8).copyMemory(from: packet + 24, byteCount: 16)
        (answer + 24).copyMemory(from: packet + 8, byteCount: 16)
        let icmp = answer + 40
        icmp.storeBytes(of: UInt8(2), as: UInt8.self)
        icmp.storeBytes(of: UInt8(0), toByteOffset: 1, as: UInt8.self)
        icmp.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        icmp.storeBytes(of: UInt32(mtu).bigEndian, toByteOffset: 4, as: UInt32.self)
        (icmp + 8).copyMemory(from: packet, byteCount: quoted)
        // The pseudo-header (RFC 8200 section 8.1): both addresses, the length, 58.
        let sum = UInt64(InternetChecksum.sum(answer + 8, count: 32)) &+ UInt64(payload) &+ UInt64(IPProtocolNumber.icmpv6)
            &+ UInt64(InternetChecksum.sum(icmp, count: payload))
        icmp.storeBytes(of: InternetChecksum.finish(sum).bigEndian, toByteOffset: 2, as: UInt16.self)
        return 40 + payload
    }
}
