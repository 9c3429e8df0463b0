import MATPacket

/// Builds realistic IPv4/IPv6 TCP and UDP packets with valid checksums into raw memory,
/// and checks a packet's checksums by full recomputation.
enum PacketFactory {
    /// What to build: the IP family comes from the address type.
    struct Shape {
        /// `IPProtocolNumber.tcp` or `IPProtocolNumber.udp`.
        var transportProtocol: UInt8
        /// Bytes of the whole IP packet.
        var totalLength: Int
        /// A GSO super-packet with `NEEDS_CSUM`: the TCP checksum field holds the folded,
        /// uncomplemented pseudo-header sum instead of a complete checksum.
        var partialChecksum: Bool
        /// IPv4 UDP only: every n-th packet (0: none) is sent with checksum 0 ("none"),
        /// which translation must leave at 0 (RFC 768).
        var zeroUDPChecksumEvery: Int = 0

        func hasZeroUDPChecksum(_ family: AddressFamily, seed: Int) -> Bool {
            family == .ipv4 && transportProtocol == IPProtocolNumber.udp
                && zeroUDPChecksumEvery > 0 && seed % zeroUDPChecksumEvery == 0
        }
    }

    /// TCP header with the timestamp option (NOP, NOP, TS), as Linux sends it.
    static let tcpHeaderLength = 32
    static let udpHeaderLength = 8

    static func ipHeaderLength(_ family: AddressFamily) -> Int { family == .ipv4 ? 20 : 40 }

    /// Writes packet number `seed` of `shape` from `source` to `destination` at `base`
    /// (which must hold `shape.totalLength` bytes). Ports, sequence numbers, IDs and
    /// payload vary with `seed`, so every packet's checksum differs.
    static func build<Address: PacketAddress>(
        into base: UnsafeMutableRawPointer, shape: Shape, seed: Int, source: Address, destination: Address
    ) {
        let family = Address.family
        let ipLength = ipHeaderLength(family)
        let segmentLength = shape.totalLength - ipLength
        let isTCP = shape.transportProtocol == IPProtocolNumber.tcp
        let headerLength = isTCP ? tcpHeaderLength : udpHeaderLength
        precondition(segmentLength >= headerLength && shape.totalLength <= 40 + 65535)
        precondition(!shape.partialChecksum || isTCP)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: shape.totalLength)
        var random = XorShift(seed: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1)

        // IP header.
        if family == .ipv4 {
            put8(base, 0, 0x45)
            put16(base, 2, UInt16(shape.totalLength))
            put16(base, 4, UInt16(truncatingIfNeeded: seed &* 7 &+ 1))  // identification
            put16(base, 6, 0x4000)  // DF
            put8(base, 8, 64)
            put8(base, 9, shape.transportProtocol)
            source.store(to: base, offset: 12)
            destination.store(to: base, offset: 16)
            put16(base, 10, ~InternetChecksum.sum(UnsafeRawPointer(base), count: 20))
        } else {
            put32(base, 0, 0x6000_0000 | UInt32(truncatingIfNeeded: seed &* 2654435761) & 0xF_FFFF)
            put16(base, 4, UInt16(segmentLength))
            put8(base, 6, shape.transportProtocol)
            put8(base, 7, 64)
            source.store(to: base, offset: 8)
            destination.store(to: base, offset: 24)
        }

        // Transport header and payload.
        let segment = base + ipLength
        let sourcePort = UInt16(truncatingIfNeeded: 32768 + seed % 28000)
        put16(segment, 0, sourcePort)
        put16(segment, 2, 5201)
        if isTCP {
            put32(segment, 4, random.next32())  // sequence
            put32(segment, 8, random.next32())  // acknowledgment
            put8(segment, 12, UInt8(tcpHeaderLength / 4) << 4)
            put8(segment, 13, 0x18)  // PSH, ACK
            put16(segment, 14, 502)  // window
            put32(segment, 20, 0x0101_080A)  // NOP, NOP, timestamps (kind 8, length 10)
            put32(segment, 24, random.next32())
            put32(segment, 28, random.next32())
        } else {
            put16(segment, 4, UInt16(segmentLength))
        }
        var offset = headerLength
        while offset + 8 <= segmentLength {
            segment.storeBytes(of: random.next(), toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < segmentLength {
            put8(segment, offset, UInt8(truncatingIfNeeded: random.next()))
            offset += 1
        }

        // Transport checksum over the pseudo-header (addresses, protocol, length).
        let checksumOffset = isTCP ? 16 : 6
        let pseudo = pseudoHeaderSum(source: source, destination: destination,
                                     transportProtocol: shape.transportProtocol, length: segmentLength)
        if shape.partialChecksum {
            put16(segment, checksumOffset, InternetChecksum.fold(pseudo))
        } else if shape.hasZeroUDPChecksum(family, seed: seed) {
            put16(segment, checksumOffset, 0)
        } else {
            let data = UInt64(InternetChecksum.sum(UnsafeRawPointer(segment), count: segmentLength))
            var checksum = InternetChecksum.finish(pseudo &+ data)
            if !isTCP && checksum == 0 { checksum = 0xFFFF }
            put16(segment, checksumOffset, checksum)
        }
    }

    /// Whether the packet at `base` has a valid IPv4 header checksum (for IPv4) and a valid
    /// transport checksum: complete, or for `partial` the pseudo-header sum.
    static func checksumsAreValid<Address: PacketAddress>(
        _ base: UnsafeRawPointer, shape: Shape, seed: Int, as _: Address.Type
    ) -> Bool {
        let family = Address.family
        let ipLength = ipHeaderLength(family)
        if family == .ipv4 && InternetChecksum.sum(base, count: 20) != 0xFFFF { return false }
        let source = Address(loadingFrom: base, offset: family == .ipv4 ? 12 : 8)
        let destination = Address(loadingFrom: base, offset: family == .ipv4 ? 16 : 24)
        let segmentLength = shape.totalLength - ipLength
        let pseudo = pseudoHeaderSum(source: source, destination: destination,
                                     transportProtocol: shape.transportProtocol, length: segmentLength)
        let checksumOffset = ipLength + (shape.transportProtocol == IPProtocolNumber.tcp ? 16 : 6)
        let field = UInt16(bigEndian: base.loadUnaligned(fromByteOffset: checksumOffset, as: UInt16.self))
        if shape.partialChecksum { return field == InternetChecksum.fold(pseudo) }
        if shape.hasZeroUDPChecksum(family, seed: seed) { return field == 0 }
        let data = UInt64(InternetChecksum.sum(base + ipLength, count: segmentLength))
        return field != 0 && InternetChecksum.fold(pseudo &+ data) == 0xFFFF
    }

    static func pseudoHeaderSum<Address: PacketAddress>(
        source: Address, destination: Address, transportProtocol: UInt8, length: Int
    ) -> UInt64 {
        source.wordSum &+ destination.wordSum &+ UInt64(transportProtocol) &+ UInt64(length)
    }

    private static func put8(_ base: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt8) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    private static func put16(_ base: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt16) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    private static func put32(_ base: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt32) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }
}

/// A small deterministic generator for payload bytes (xorshift64*).
struct XorShift {
    var state: UInt64

    init(seed: UInt64) { state = seed == 0 ? 0x2545_F491_4F6C_DD1D : seed }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    mutating func next32() -> UInt32 { UInt32(truncatingIfNeeded: next() >> 32) }
}
