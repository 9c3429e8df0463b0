import MATPacket
import Testing

/// ``TCPCoalescer``: what ``TCPSegmenter`` cut comes back as the super-packet it was, with
/// the virtio header a TUN device takes for it; segments that do not continue it do not join.
@Suite struct TCPCoalescerTests {
    typealias S = TCPSegmenterTests

    /// The segments `packet` is cut into at `limit` (prefix 0), as separate byte arrays.
    static func segments(of packet: [UInt8], limit: Int) throws -> [[UInt8]] {
        try #require(S.cut(packet, limit: limit, prefix: 0)).map(\.bytes)
    }

    /// Feeds `segments` to a coalescer; the packets it writes out (virtio header first).
    static func coalesce(_ segments: [[UInt8]]) -> [[UInt8]] {
        var coalescer = TCPCoalescer()
        var out: [[UInt8]] = []
        func flush() {
            let length = coalescer.finish()
            if length > 0 { out.append(Array(UnsafeRawBufferPointer(start: coalescer.buffer, count: length))) }
        }
        for segment in segments {
            let joined = segment.withUnsafeBytes { coalescer.add($0.baseAddress!, count: segment.count) }
            if !joined {
                flush()
                let again = segment.withUnsafeBytes { coalescer.add($0.baseAddress!, count: segment.count) }
                #expect(again, "a TCP segment starts a packet of its own")
            }
        }
        flush()
        return out
    }

    @Test(arguments: [false, true])
    func segmentsComeBackAsTheSuperPacket(v6: Bool) throws {
        let payload = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        let flags: UInt8 = 0x80 | 0x10 | 0x08  // CWR on the first, PSH on the last
        let packet = S.packet(v6: v6, payload: payload, flags: flags)
        let out = Self.coalesce(try Self.segments(of: packet, limit: 1400))
        try #require(out.count == 1)
        let header = out[0].withUnsafeBytes { VirtioNetHeader(loadingFrom: $0.baseAddress!) }
        let ip = v6 ? 40 : 20
        #expect(header.flags == VirtioNetHeader.needsChecksum && header.checksumStart == UInt16(ip)
                && header.checksumOffset == 16 && header.headerLength == UInt16(ip + 32)
                && header.gsoSize == UInt16(1400 - ip - 32)
                && header.gsoTypeRaw == (v6 ? VirtioNetHeader.GSOType.tcpv6 : .tcpv4).rawValue, "\(header)")
        var body = Array(out[0][VirtioNetHeader.size...])
        #expect(body.count == packet.count)
        // The partial checksum: the pseudo-header's folded sum for the whole TCP length.
        let pseudo = v6
            ? Build.pseudoHeader(source: S.source6, destination: S.destination6, proto: 6, length: packet.count - ip)
            : Build.pseudoHeader(source: S.source4, destination: S.destination4, proto: 6, length: packet.count - ip)
        #expect(Int(body[ip + 16]) << 8 | Int(body[ip + 17]) == Int(Build.foldedSum(pseudo)))
        // Everything else is the original's, the IPv4 header checksum included.
        var original = packet
        for offset in [ip + 16, ip + 17] { (body[offset], original[offset]) = (0, 0) }
        #expect(body == original)
    }

    @Test func aSegmentThatDoesNotContinueStartsAPacketOfItsOwn() throws {
        let payload = Array(repeating: UInt8(7), count: 6_000)
        let packet = S.packet(v6: false, payload: payload, flags: 0x10)
        let segments = try Self.segments(of: packet, limit: 1_000)
        #expect(segments.count == 7)
        // A gap: the third segment is missing.
        #expect(Self.coalesce(Array(segments[0..<2]) + Array(segments[3...])).count == 2)
        // Another flow's segment (other port) in between.
        var other = segments[2]
        other[21] ^= 1
        #expect(Self.coalesce(Array(segments[0..<2]) + [other]).count == 2)
        // A shorter segment ends the packet; PSH or FIN too.
        #expect(Self.coalesce([segments[6], segments[0]]).count == 2)
        var pushed = segments[1]
        pushed[20 + 13] |= 0x08
        #expect(Self.coalesce([segments[0], pushed, segments[2]]).count == 2)
        // One segment alone goes as it is: a plain packet, its checksum complete.
        let alone = Self.coalesce([segments[3]])
        #expect(alone.count == 1 && Array(alone[0][VirtioNetHeader.size...]) == segments[3]
                && alone[0][0..<VirtioNetHeader.size].allSatisfy { $0 == 0 })
    }

    @Test func whatIsNotATCPSegmentIsNotTaken() {
        var coalescer = TCPCoalescer()
        let udp = Build.ipv4(S.source4, S.destination4, proto: 17,
                             payload: Build.udp(S.source4, S.destination4, payload: [1, 2, 3]))
        let bare = Build.ipv4(S.source4, S.destination4, proto: 6, payload: Build.tcp(S.source4, S.destination4, payload: []))
        for packet in [udp, bare, Array(udp[..<30])] {
            #expect(!packet.withUnsafeBytes { coalescer.add($0.baseAddress!, count: packet.count) })
        }
        #expect(coalescer.finish() == 0)
    }
}
