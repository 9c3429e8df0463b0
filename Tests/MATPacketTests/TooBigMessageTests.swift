import MATPacket
import Testing

/// ``TooBigMessage``: the ICMP and ICMPv6 answers to a packet too large for the UDP
/// encapsulation, byte by byte against answers whose checksums were worked out apart from
/// this code (Python's `struct` and a plain RFC 1071 sum), and on random bytes.
@Suite struct TooBigMessageTests {
    /// 192.0.2.10 -> 198.51.100.20, DF, an ICMP echo request of 1500 bytes (header checksum
    /// 0x369b, ICMP checksum 0x729b).
    static func echo4(flags: UInt16 = 0x4000) -> [UInt8] {
        var bytes: [UInt8] = [0x45, 0x00, 0x05, 0xDC, 0x12, 0x34, UInt8(flags >> 8), UInt8(flags & 0xFF),
                              0x40, 0x01, 0x36, 0x9B, 192, 0, 2, 10, 198, 51, 100, 20,
                              0x08, 0x00, 0x72, 0x9B, 0x00, 0x01, 0x00, 0x01]
        bytes += (0..<1472).map { UInt8($0 & 0xFF) }
        return bytes
    }

    static let source6: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]
    static let destination6: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20]

    /// 2001:db8:1::10 -> 2001:db8:100::20, a UDP datagram of 1500 bytes in all.
    static func udp6() -> [UInt8] {
        var bytes: [UInt8] = [0x60, 0, 0, 0, 0x05, 0xB4, 17, 64] + source6 + destination6
        bytes += [0x9C, 0x40, 0x13, 0x88, 0x05, 0xB4, 0x12, 0x34]
        bytes += (0..<1452).map { UInt8(($0 * 7) & 0xFF) }
        return bytes
    }

    func answer(_ packet: [UInt8], mtu: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: TooBigMessage.capacity)
        let length = packet.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { target in
                TooBigMessage.write(answering: source.baseAddress!, length: source.count, mtu: mtu,
                                    into: target.baseAddress!)
            }
        }
        return Array(out[..<length])
    }

    @Test func anIPv4PacketWithDFIsAnsweredFragmentationNeeded() {
        let packet = Self.echo4()
        let bytes = answer(packet, mtu: 1454)
        #expect(bytes.count == 576)
        let header: [UInt8] = [0x45, 0xC0, 0x02, 0x40, 0, 0, 0, 0, 64, 1, 0x8B, 0xAB,
                               198, 51, 100, 20, 192, 0, 2, 10,
                               3, 4, 0xF0, 0x20, 0, 0, 0x05, 0xAE]
        #expect(Array(bytes.prefix(28)) == header)
        #expect(Array(bytes[28...]) == Array(packet.prefix(548)))
    }

    @Test func anIPv6PacketIsAnsweredPacketTooBig() {
        let packet = Self.udp6()
        let bytes = answer(packet, mtu: 1434)
        #expect(bytes.count == 1280)
        let header: [UInt8] = [0x60, 0, 0, 0, 0x04, 0xD8, 58, 64] + Self.destination6 + Self.source6
            + [2, 0, 0x04, 0x43, 0, 0, 0x05, 0x9A]
        #expect(Array(bytes.prefix(48)) == header)
        #expect(Array(bytes[48...]) == Array(packet.prefix(1232)))
    }

    /// A short packet is quoted whole, and the checksums still come out right.
    @Test func aShortPacketIsQuotedWhole() {
        let packet = Array(Self.echo4().prefix(100))
        let bytes = answer(packet, mtu: 68)
        #expect(bytes.count == 128 && Array(bytes[28...]) == packet)
        #expect(bytes.withUnsafeBytes { InternetChecksum.sum($0.baseAddress!, count: 20) } == 0xFFFF)
        #expect(bytes.withUnsafeBytes { InternetChecksum.sum($0.baseAddress! + 20, count: 108) } == 0xFFFF)
    }

    @Test func whatIsFragmentedInsteadIsNotAnswered() {
        // No DF; a later fragment; an MTU under IPv4's least.
        #expect(answer(Self.echo4(flags: 0), mtu: 1454).isEmpty)
        #expect(answer(Self.echo4(flags: 0x4000 | 0x0010), mtu: 1454).isEmpty)
        #expect(answer(Self.echo4(), mtu: 67).isEmpty)
        // IPv6 under 1280: fragmented below IPv6 (RFC 2473 section 7.1).
        #expect(answer(Self.udp6(), mtu: 1279).isEmpty)
        #expect(answer(Self.udp6(), mtu: 1280).count == 1280)
    }

    @Test func errorsAndSourcesWithNobodyToAnswerAreNotAnswered() {
        // An ICMP error (destination unreachable) with DF.
        var error4 = Self.echo4()
        error4[20] = 3
        #expect(answer(error4, mtu: 1000).isEmpty)
        // An ICMP echo reply is not an error: answered.
        error4[20] = 0
        #expect(answer(error4, mtu: 1000).count == 576)
        // A multicast or unspecified source.
        var multicast4 = Self.echo4()
        multicast4[12] = 224
        #expect(answer(multicast4, mtu: 1000).isEmpty)
        var zero4 = Self.echo4()
        zero4.replaceSubrange(12..<16, with: [0, 0, 0, 0])
        #expect(answer(zero4, mtu: 1000).isEmpty)
        // An ICMPv6 error behind a destination options header; an echo request is answered.
        var error6 = Self.udp6()
        error6[6] = 60
        error6.replaceSubrange(40..<50, with: [58, 0, 1, 4, 0, 0, 0, 0, 1, 0])
        #expect(answer(error6, mtu: 1280).isEmpty)
        error6[48] = 128
        #expect(answer(error6, mtu: 1280).count == 1280)
        var multicast6 = Self.udp6()
        multicast6[8] = 0xFF
        #expect(answer(multicast6, mtu: 1280).isEmpty)
        // Neither IPv4 nor IPv6, or too short to be either.
        #expect(answer([0x50] + Array(Self.echo4().dropFirst()), mtu: 1400).isEmpty)
        #expect(answer(Array(Self.echo4().prefix(19)), mtu: 1400).isEmpty)
        #expect(answer(Array(Self.udp6().prefix(39)), mtu: 1400).isEmpty)
    }

    /// Random bytes (and random cuts of real packets with random bytes changed), each
    /// ending at a guard page: nothing is read past the packet, and whatever is answered is
    /// an ICMP error of the right family with correct checksums, the right MTU, addresses
    /// swapped and the packet's start quoted.
    @Test func randomInputIsReadOnlyWithinItsLengthAndAnsweredCorrectly() {
        var random = SeededRandom(seed: 0x7B16_0411)
        var answered = 0
        var out = [UInt8](repeating: 0, count: TooBigMessage.capacity)
        for round in 0..<8_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0...1600, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                if !bytes.isEmpty { bytes[0] = (round % 4 == 0 ? 0x40 : 0x60) | (bytes[0] & 0x0F) }
            } else {
                bytes = round % 3 == 0 ? Self.udp6() : Self.echo4()
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))
                for _ in 0..<Int.random(in: 0...4, using: &random) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<min(bytes.count, 60), using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            }
            let mtu = Int.random(in: 0...2000, using: &random)
            let length = GuardedBuffer.shared.withPacket(bytes) { base, count in
                out.withUnsafeMutableBytes { TooBigMessage.write(answering: base, length: count, mtu: mtu, into: $0.baseAddress!) }
            }
            guard length > 0 else { continue }
            answered += 1
            let version = bytes[0] >> 4
            #expect(length <= (version == 4 ? 576 : 1280) && length > (version == 4 ? 28 : 48))
            let valid = out.withUnsafeBytes { raw -> Bool in
                let base = raw.baseAddress!
                if version == 4 {
                    return InternetChecksum.sum(base, count: 20) == 0xFFFF
                        && InternetChecksum.sum(base + 20, count: length - 20) == 0xFFFF
                        && out[20] == 3 && out[21] == 4 && Int(out[26]) << 8 | Int(out[27]) == min(mtu, 0xFFFF)
                        && Array(out[12..<16]) == Array(bytes[16..<20]) && Array(out[16..<20]) == Array(bytes[12..<16])
                        && Array(out[28..<length]) == Array(bytes.prefix(length - 28))
                }
                var pseudo = [UInt8](out[8..<40])
                pseudo += [0, 0, UInt8((length - 40) >> 8), UInt8((length - 40) & 0xFF), 0, 0, 0, 58]
                let pseudoSum = pseudo.withUnsafeBytes { InternetChecksum.sum($0.baseAddress!, count: 40) }
                let total = InternetChecksum.fold(UInt64(pseudoSum) &+ UInt64(InternetChecksum.sum(base + 40, count: length - 40)))
                return total == 0xFFFF && out[40] == 2 && out[6] == 58
                    && Array(out[8..<24]) == Array(bytes[24..<40]) && Array(out[24..<40]) == Array(bytes[8..<24])
                    && Array(out[48..<length]) == Array(bytes.prefix(length - 48))
            }
            #expect(valid, "round \(round): \(bytes.prefix(48))")
        }
        // The cut real packets are answered often enough for the checks to mean something.
        #expect(answered > 800)
    }
}
