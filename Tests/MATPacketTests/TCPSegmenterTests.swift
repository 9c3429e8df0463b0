import MATPacket
import Testing

/// ``TCPSegmenter`` against packets built independently (PacketBuilder.swift): every
/// segment is checked as a receiver would check it, from its own bytes.
@Suite struct TCPSegmenterTests {
    static let source4: [UInt8] = [198, 51, 100, 10], destination4: [UInt8] = [198, 51, 100, 20]
    static let source6 = Array(repeating: UInt8(0x20), count: 15) + [1]
    static let destination6 = Array(repeating: UInt8(0x20), count: 15) + [2]

    /// A TCP packet with `payload`, sequence number 0xFFFF_F000 (it wraps while cut),
    /// `flags`, a 12-byte option block (timestamps' size) and a partial checksum in its
    /// checksum field, as a GSO super-packet from a TUN device has.
    static func packet(v6: Bool, payload: [UInt8], flags: UInt8) -> [UInt8] {
        var tcp = Build.tcpHeader(options: [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
        tcp[4...7] = [0xFF, 0xFF, 0xF0, 0x00]
        tcp[13] = flags
        tcp[16] = 0x12
        tcp[17] = 0x34
        return v6
            ? Build.ipv6(source6, destination6, proto: 6, payload: tcp + payload)
            : Build.ipv4(source4, destination4, proto: 6, payload: tcp + payload)
    }

    struct Segment {
        var prefix: [UInt8]
        var bytes: [UInt8]
    }

    /// Cuts `packet`; the segments as bytes, prefix apart.
    static func cut(_ packet: [UInt8], limit: Int, gsoSize: Int = 0, prefix: Int = 18) -> [Segment]? {
        var segmenter = TCPSegmenter()
        let cut = packet.withUnsafeBytes {
            segmenter.segment($0.baseAddress!, length: packet.count, limit: limit, gsoSize: gsoSize, prefix: prefix)
        }
        guard cut else { return nil }
        return (0..<segmenter.count).map { index in
            let slot = segmenter.header(index)
            for byte in 0..<prefix { slot.storeBytes(of: 0xEE, toByteOffset: byte, as: UInt8.self) }
            let headers = Array(UnsafeRawBufferPointer(start: slot, count: segmenter.headerLength))
            let (offset, length) = segmenter.payload(index)
            return Segment(prefix: Array(headers[..<prefix]),
                           bytes: Array(headers[prefix...]) + packet[offset..<offset + length])
        }
    }

    /// Checks each segment on its own and the payloads against the original's.
    static func verify(_ segments: [Segment], of packet: [UInt8], v6: Bool, payload: [UInt8], flags: UInt8,
                       limit: Int, mss: Int) {
        let ip = v6 ? 40 : 20
        var carried: [UInt8] = []
        for (index, segment) in segments.enumerated() {
            let bytes = segment.bytes
            #expect(segment.prefix.count + bytes.count <= limit)
            let tcp = Array(bytes[ip...])
            let body = Array(tcp[32...])
            if index < segments.count - 1 { #expect(body.count == mss) }
            carried += body
            if v6 {
                #expect(Int(bytes[4]) << 8 | Int(bytes[5]) == tcp.count)
            } else {
                #expect(Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count)
                #expect(Int(bytes[4]) << 8 | Int(bytes[5]) == 0xABCD + index)
                #expect(Build.foldedSum(Array(bytes[..<20])) == 0xFFFF, "IPv4 header checksum of segment \(index)")
            }
            let pseudo = v6
                ? Build.pseudoHeader(source: source6, destination: destination6, proto: 6, length: tcp.count)
                : Build.pseudoHeader(source: source4, destination: destination4, proto: 6, length: tcp.count)
            #expect(Build.foldedSum(pseudo + tcp) == 0xFFFF, "TCP checksum of segment \(index)")
            let sequence = UInt32(tcp[4]) << 24 | UInt32(tcp[5]) << 16 | UInt32(tcp[6]) << 8 | UInt32(tcp[7])
            #expect(sequence == 0xFFFF_F000 &+ UInt32(index * mss))
            let last = index == segments.count - 1
            #expect(tcp[13] == flags & ~(last ? 0 : 0x09) & ~(index == 0 ? 0 : 0x80))
            // Options and ports as the original's.
            #expect(tcp[0..<4] == packet[ip..<ip + 4] && tcp[20..<32] == packet[ip + 20..<ip + 32])
        }
        #expect(carried == payload)
    }

    @Test(arguments: [false, true])
    func aSuperPacketIsCutAtItsSegmentSizeIntoValidPackets(v6: Bool) throws {
        let payload = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let flags: UInt8 = 0x80 | 0x10 | 0x08 | 0x01  // CWR, ACK, PSH, FIN
        let packet = Self.packet(v6: v6, payload: payload, flags: flags)
        // The path has room for more than the sender's MSS: segments of the MSS.
        let segments = try #require(Self.cut(packet, limit: 1472, gsoSize: 1001))
        #expect(segments.count == 10)
        Self.verify(segments, of: packet, v6: v6, payload: payload, flags: flags, limit: 1472, mss: 1001)
    }

    @Test(arguments: [false, true])
    func aPacketTooLargeForThePathIsCutToFitIt(v6: Bool) throws {
        let payload = (0..<1448).map { UInt8(truncatingIfNeeded: $0) }
        let packet = Self.packet(v6: v6, payload: payload, flags: 0x18)
        // A 1400-byte path less outer IPv4 and UDP headers, as the encapsulation has.
        let limit = 1372
        let mss = limit - 18 - (v6 ? 40 : 20) - 32
        let segments = try #require(Self.cut(packet, limit: limit))
        #expect(segments.count == 2 && segments.allSatisfy { $0.prefix == Array(repeating: 0xEE, count: 18) })
        Self.verify(segments, of: packet, v6: v6, payload: payload, flags: 0x18, limit: limit, mss: mss)
    }

    @Test func whatCannotBeCutIsLeftWhole() {
        let tcp = Build.tcp(Self.source4, Self.destination4, payload: Array(repeating: 1, count: 3000))
        let udp = Build.udp(Self.source4, Self.destination4, payload: Array(repeating: 1, count: 3000))
        // Not TCP.
        #expect(Self.cut(Build.ipv4(Self.source4, Self.destination4, proto: 17, payload: udp), limit: 1400) == nil)
        // A fragment.
        #expect(Self.cut(Build.ipv4(Self.source4, Self.destination4, proto: 6, payload: tcp, moreFragments: true),
                         limit: 1400) == nil)
        // An IPv6 extension header before the TCP header.
        let withExtension = Build.ipv6(Self.source6, Self.destination6, proto: 6, payload: tcp,
                                       extensions: [(0, [0, 0, 1, 4, 0, 0, 0, 0])])
        #expect(Self.cut(withExtension, limit: 1400) == nil)
        // A total length that is not the packet's.
        #expect(Self.cut(Build.ipv4(Self.source4, Self.destination4, proto: 6, payload: tcp, totalLength: 2000),
                         limit: 1400) == nil)
        // No room for any payload, or more than 256 segments.
        let packet = Build.ipv4(Self.source4, Self.destination4, proto: 6, payload: tcp)
        #expect(Self.cut(packet, limit: 18 + 40) == nil)
        #expect(Self.cut(packet, limit: 18 + 40 + 11) == nil)
        #expect(Self.cut(packet, limit: 18 + 40 + 12)?.count == 250)
        // Headers only: nothing to cut.
        #expect(Self.cut(Build.ipv4(Self.source4, Self.destination4, proto: 6, payload: Build.tcp(Self.source4,
                         Self.destination4, payload: [])), limit: 1400) == nil)
        // Truncated.
        #expect(Self.cut(Array(packet[..<30]), limit: 1400) == nil)
    }
}
