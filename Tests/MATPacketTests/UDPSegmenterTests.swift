import MATPacket
import Testing

/// ``UDPSegmenter`` against datagrams built independently, byte by byte (the reference
/// below and PacketBuilder.swift's checksums): what a receiver gets is exactly what the
/// sender of the super-packet would have sent as separate datagrams, whatever the sizes.
@Suite struct UDPSegmenterTests {
    static let source4: [UInt8] = [198, 51, 100, 10], destination4: [UInt8] = [198, 51, 100, 20]
    static let source6: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0x01, 0x00] + Array(repeating: 0, count: 9) + [0x10]
    static let destination6: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0x01, 0x00] + Array(repeating: 0, count: 9) + [0x20]
    static let ports: [UInt8] = [0xC3, 0x51, 0x01, 0xBB]

    /// How a super-packet (and so each of its datagrams) is made.
    struct Shape {
        var v6 = false
        var identification: UInt16 = 0x1234
        var dontFragment = true
        /// IPv4 options (a multiple of 4 bytes).
        var options: [UInt8] = []
        /// The UDP checksum field of the super-packet: a partial sum as a TUN device hands
        /// it, or 0 (no checksum, IPv4).
        var checksumField: UInt16 = 0x5A5A
    }

    /// An IP header for `transport` bytes of UDP, written field by field.
    static func ipHeader(_ shape: Shape, transportLength: Int, identification: UInt16) -> [UInt8] {
        if shape.v6 {
            // Traffic class 0xB8 and flow label 0x12345 must be copied unchanged.
            return [0x6B, 0x81, 0x23, 0x45] + Build.be16(transportLength) + [17, 63] + source6 + destination6
        }
        let headerLength = 20 + shape.options.count
        var header: [UInt8] = [UInt8(0x40 | headerLength / 4), 0x2E] + Build.be16(headerLength + transportLength)
            + Build.be16(Int(identification)) + [shape.dontFragment ? 0x40 : 0, 0, 61, 17, 0, 0]
            + source4 + destination4 + shape.options
        Build.put16(&header, 10, Build.checksum(header))
        return header
    }

    /// The super-packet carrying `payload`, its lengths the whole packet's.
    static func superPacket(_ shape: Shape, payload: [UInt8]) -> [UInt8] {
        var udp = ports + Build.be16(8 + payload.count) + [0, 0]
        Build.put16(&udp, 6, shape.checksumField)
        return ipHeader(shape, transportLength: 8 + payload.count, identification: shape.identification) + udp + payload
    }

    /// Datagram `index` as its sender would have built it on its own: the next
    /// identification, its own lengths, a UDP checksum computed from scratch (none for an
    /// IPv4 super-packet that had none).
    static func reference(_ shape: Shape, payload: [UInt8], gsoSize: Int, index: Int) -> [UInt8] {
        let body = Array(payload[index * gsoSize..<min(payload.count, (index + 1) * gsoSize)])
        let (source, destination) = shape.v6 ? (source6, destination6) : (source4, destination4)
        let udp = Build.transport(header: ports + Build.be16(8 + body.count) + [0, 0], payload: body, checksumOffset: 6,
                                  proto: 17, source: source, destination: destination,
                                  zeroChecksum: !shape.v6 && shape.checksumField == 0)
        return ipHeader(shape, transportLength: udp.count, identification: shape.identification &+ UInt16(index)) + udp
    }

    /// Cuts `packet`: the prefix bytes of each slot (filled with 0xEE after the cut, as the
    /// caller does) and the datagram that follows, slot headers then payload.
    static func cut(_ packet: [UInt8], gsoSize: Int, prefix: Int = 18) -> [(prefix: [UInt8], bytes: [UInt8])]? {
        var segmenter = UDPSegmenter()
        let cut = packet.withUnsafeBytes {
            segmenter.segment($0.baseAddress!, length: packet.count, gsoSize: gsoSize, prefix: prefix)
        }
        guard cut else { return nil }
        #expect(segmenter.segmentSize == segmenter.headerLength + gsoSize)
        return (0..<segmenter.count).map { index in
            let slot = segmenter.header(index)
            for byte in 0..<prefix { slot.storeBytes(of: 0xEE, toByteOffset: byte, as: UInt8.self) }
            let headers = Array(UnsafeRawBufferPointer(start: slot, count: segmenter.headerLength))
            let (offset, length) = segmenter.payload(index)
            return (Array(headers[..<prefix]), Array(headers[prefix...]) + packet[offset..<offset + length])
        }
    }

    /// Cuts the super-packet of `shape` and `payload` and compares each datagram with the
    /// reference, byte by byte.
    static func expectCutAsReference(_ shape: Shape, payload: [UInt8], gsoSize: Int, prefix: Int = 18,
                                     sourceLocation: SourceLocation = #_sourceLocation) {
        let packet = superPacket(shape, payload: payload)
        guard let segments = cut(packet, gsoSize: gsoSize, prefix: prefix) else {
            Issue.record("not cut: \(shape), \(payload.count) bytes at \(gsoSize)", sourceLocation: sourceLocation)
            return
        }
        #expect(segments.count == (payload.count + gsoSize - 1) / gsoSize, sourceLocation: sourceLocation)
        for (index, segment) in segments.enumerated() {
            let expected = reference(shape, payload: payload, gsoSize: gsoSize, index: index)
            #expect(segment.prefix == Array(repeating: 0xEE, count: prefix), sourceLocation: sourceLocation)
            #expect(segment.bytes == expected, "datagram \(index) of \(segments.count), \(shape), gso \(gsoSize)",
                    sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [false, true])
    func aSuperPacketIsCutIntoTheDatagramsItsSenderAskedFor(v6: Bool) {
        // 20 datagrams of 1200 bytes and a last one of 517, as a QUIC sender's.
        let payload = (0..<24_517).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        Self.expectCutAsReference(Shape(v6: v6), payload: payload, gsoSize: 1200)
        // The identification wraps; an odd segment size makes odd-length datagrams.
        Self.expectCutAsReference(Shape(v6: v6, identification: 0xFFF0), payload: payload, gsoSize: 1001)
    }

    @Test func ipv4OptionsAndNoDontFragmentAreCopied() {
        let payload = (0..<5_000).map { UInt8(truncatingIfNeeded: $0) }
        Self.expectCutAsReference(Shape(dontFragment: false, options: [0x94, 4, 0, 0] + [1, 1, 1, 0]),
                                  payload: payload, gsoSize: 1400)
    }

    /// IPv4 without a checksum stays without; IPv6 must have one (RFC 8200 section 8.1),
    /// so its datagrams get one even from a super-packet whose field was 0.
    @Test func aZeroChecksumStaysZeroOnlyForIPv4() throws {
        let payload = Array(repeating: UInt8(0x42), count: 3000)
        let v4 = try #require(Self.cut(Self.superPacket(Shape(checksumField: 0), payload: payload), gsoSize: 1000))
        #expect(v4.count == 3 && v4.allSatisfy { $0.bytes[26] == 0 && $0.bytes[27] == 0 })
        Self.expectCutAsReference(Shape(checksumField: 0), payload: payload, gsoSize: 1000)
        let v6 = try #require(Self.cut(Self.superPacket(Shape(v6: true, checksumField: 0), payload: payload),
                                       gsoSize: 1000))
        #expect(v6.count == 3 && v6.allSatisfy { $0.bytes[46] != 0 || $0.bytes[47] != 0 })
        Self.expectCutAsReference(Shape(v6: true, checksumField: 0), payload: payload, gsoSize: 1000)
    }

    /// A checksum that comes out 0 is sent as 0xFFFF (0 would mean "none").
    @Test func aComputedZeroChecksumGoesAsAllOnes() throws {
        // One datagram of two payload bytes chosen so that its sum is 0xFFFF before the
        // complement: found by trying each value of the last word.
        var chosen: [UInt8]?
        for word in 0...0xFFFF {
            let body = Build.be16(word)
            let udp = Build.transport(header: Self.ports + Build.be16(10) + [0, 0], payload: body, checksumOffset: 6,
                                      proto: 17, source: Self.source4, destination: Self.destination4)
            if udp[6] == 0xFF && udp[7] == 0xFF { chosen = body; break }
        }
        let body = try #require(chosen)
        let payload = body + body
        let segments = try #require(Self.cut(Self.superPacket(Shape(), payload: payload), gsoSize: 2))
        #expect(segments.count == 2 && segments.allSatisfy { $0.bytes[26] == 0xFF && $0.bytes[27] == 0xFF })
        Self.expectCutAsReference(Shape(), payload: payload, gsoSize: 2)
    }

    /// Random payload lengths, segment sizes, prefixes, options and identifications, both
    /// families: every datagram equals the reference.
    @Test func randomSizesAreCutAsTheReferenceIs() {
        var random = SeededRandom(seed: 0x0D9_5E61)
        for _ in 0..<300 {
            let length = Int.random(in: 1...9000, using: &random)
            let gsoSize = Int.random(in: max(1, (length + 255) / 256)...1500, using: &random)
            var shape = Shape(v6: Bool.random(using: &random), identification: UInt16.random(in: 0...0xFFFF, using: &random),
                              dontFragment: Bool.random(using: &random))
            shape.options = Array(repeating: 1, count: 4 * Int.random(in: 0...10, using: &random))
            if Int.random(in: 0..<4, using: &random) == 0 { shape.checksumField = 0 }
            let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            Self.expectCutAsReference(shape, payload: payload, gsoSize: gsoSize,
                                      prefix: Int.random(in: 0...UDPSegmenter.maximumPrefix, using: &random))
        }
    }

    @Test func whatCannotBeCutIsRefused() {
        let payload = Array(repeating: UInt8(1), count: 3000)
        let packet = Self.superPacket(Shape(), payload: payload)
        #expect(Self.cut(packet, gsoSize: 1000)?.count == 3)
        // No segment size.
        #expect(Self.cut(packet, gsoSize: 0) == nil)
        // Not UDP.
        var tcp = packet
        tcp[9] = 6
        #expect(Self.cut(tcp, gsoSize: 1000) == nil)
        // A fragment, first or later.
        var fragment = packet
        fragment[6] |= 0x20
        #expect(Self.cut(fragment, gsoSize: 1000) == nil)
        fragment = packet
        fragment[7] = 1
        #expect(Self.cut(fragment, gsoSize: 1000) == nil)
        // An IPv6 extension header before the UDP header.
        let udp6 = Array(Self.superPacket(Shape(v6: true), payload: payload)[40...])
        let withExtension = Build.ipv6(Self.source6, Self.destination6, proto: 17, payload: udp6,
                                       extensions: [(0, [0, 0, 1, 4, 0, 0, 0, 0])])
        #expect(Self.cut(withExtension, gsoSize: 1000) == nil)
        // An IP or UDP length that is not the packet's.
        #expect(Self.cut(Array(packet.dropLast()), gsoSize: 1000) == nil)
        var udpLength = packet
        udpLength[25] &+= 1
        #expect(Self.cut(udpLength, gsoSize: 1000) == nil)
        var ipv6Length = Self.superPacket(Shape(v6: true), payload: payload)
        ipv6Length[5] &+= 1
        #expect(Self.cut(ipv6Length, gsoSize: 1000) == nil)
        // Headers only.
        #expect(Self.cut(Self.superPacket(Shape(), payload: []), gsoSize: 1000) == nil)
        // A prefix too large for a slot, with the longest IPv4 header.
        let longest = Self.superPacket(Shape(options: Array(repeating: 1, count: 40)), payload: payload)
        #expect(Self.cut(longest, gsoSize: 1000, prefix: UDPSegmenter.maximumPrefix)?.count == 3)
        #expect(Self.cut(longest, gsoSize: 1000, prefix: UDPSegmenter.maximumPrefix + 1) == nil)
        // 256 segments at most.
        let many = Self.superPacket(Shape(), payload: Array(repeating: 7, count: 2 * UDPSegmenter.maximumSegments))
        #expect(Self.cut(many, gsoSize: 2)?.count == UDPSegmenter.maximumSegments)
        #expect(Self.cut(many, gsoSize: 1) == nil)
        // Truncated, not IP.
        #expect(Self.cut(Array(packet[..<24]), gsoSize: 1000) == nil)
        #expect(Self.cut(Array(repeating: 0x50, count: 100), gsoSize: 10) == nil)
    }

    /// Random bytes, and super-packets cut short or with header bytes changed, each ending
    /// at a guard page with a random segment size and prefix: nothing is read past the
    /// packet, and whatever is cut is a set of valid datagrams whose payloads are the
    /// packet's, in order, to its end.
    @Test func randomAndDamagedInputIsReadOnlyWithinItsLengthAndCutIntoValidDatagrams() {
        var random = SeededRandom(seed: 0x05E6_A11D)
        var accepted = 0
        for _ in 0..<8_000 {
            var bytes: [UInt8]
            if Int.random(in: 0..<4, using: &random) == 0 {
                bytes = (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            } else {
                let shape = Shape(v6: Bool.random(using: &random),
                                  options: Array(repeating: 1, count: 4 * Int.random(in: 0...3, using: &random)),
                                  checksumField: Bool.random(using: &random) ? 0 : 0x5A5A)
                bytes = Self.superPacket(shape, payload: (0..<Int.random(in: 0...4000, using: &random)).map {
                    UInt8(truncatingIfNeeded: $0)
                })
                if Int.random(in: 0..<4, using: &random) == 0 {
                    bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))
                }
                for _ in 0..<Int.random(in: 0...2, using: &random) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<min(bytes.count, 60), using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            }
            let gsoSize = Int.random(in: 0...1500, using: &random)
            let prefix = Int.random(in: -1...80, using: &random)
            let issues = GuardedBuffer.shared.withPacket(bytes) { base, count -> [String] in
                var segmenter = UDPSegmenter()
                guard segmenter.segment(UnsafeRawPointer(base), length: count, gsoSize: gsoSize, prefix: prefix) else {
                    return []
                }
                accepted += 1
                var problems: [String] = []
                var next = -1
                for index in 0..<segmenter.count {
                    let (offset, length) = segmenter.payload(index)
                    if next < 0 { next = offset }
                    guard offset == next, length > 0, length <= gsoSize, offset + length <= count else {
                        return ["payload \(index) at \(offset)+\(length) of \(count) (next \(next))"]
                    }
                    next = offset + length
                    let headers = Array(UnsafeRawBufferPointer(start: segmenter.header(index) + prefix,
                                                               count: segmenter.headerLength - prefix))
                    let datagram = headers + Array(UnsafeRawBufferPointer(start: base + offset, count: length))
                    problems += Self.problems(datagram, original: bytes, index: index)
                }
                if next != count { problems.append("payloads end at \(next) of \(count)") }
                return problems
            }
            #expect(issues.isEmpty, "\(issues) for \(bytes.hex) at \(gsoSize), prefix \(prefix)")
        }
        #expect(accepted > 1_000)
    }

    /// What is wrong with `datagram` as one datagram of its own, checked from its bytes.
    static func problems(_ datagram: [UInt8], original: [UInt8], index: Int) -> [String] {
        let v6 = datagram[0] >> 4 == 6
        let ip = v6 ? 40 : Int(datagram[0] & 0x0F) * 4
        let udp = Array(datagram[ip...])
        var problems: [String] = []
        func field(_ bytes: [UInt8], _ at: Int) -> Int { Int(bytes[at]) << 8 | Int(bytes[at + 1]) }
        if field(udp, 4) != udp.count { problems.append("UDP length of \(index)") }
        if v6 {
            if field(datagram, 4) != udp.count { problems.append("IPv6 payload length of \(index)") }
        } else {
            if field(datagram, 2) != datagram.count { problems.append("IPv4 total length of \(index)") }
            if field(datagram, 4) != (field(original, 4) + index) & 0xFFFF { problems.append("identification of \(index)") }
            if Build.foldedSum(Array(datagram[..<ip])) != 0xFFFF { problems.append("IPv4 header checksum of \(index)") }
        }
        if !v6 && field(original, ip + 6) == 0 {
            if field(udp, 6) != 0 { problems.append("UDP checksum of \(index) is not 0 as the original's") }
        } else {
            let pseudo = v6
                ? Build.pseudoHeader(source: Array(datagram[8..<24]), destination: Array(datagram[24..<40]), proto: 17,
                                     length: udp.count)
                : Build.pseudoHeader(source: Array(datagram[12..<16]), destination: Array(datagram[16..<20]), proto: 17,
                                     length: udp.count)
            if field(udp, 6) == 0 || Build.foldedSum(pseudo + udp) != 0xFFFF { problems.append("UDP checksum of \(index)") }
        }
        return problems
    }
}
