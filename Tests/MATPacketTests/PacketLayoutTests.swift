import MATPacket
import Testing

@Suite struct PacketLayoutTests {
    let a = Addr.hoaA.bytes, b = Addr.hoaB.bytes
    let a6 = Addr.hoa6A.bytes, b6 = Addr.hoa6B.bytes
    let data: [UInt8] = Array(repeating: 0x5A, count: 32)

    @Test func ipv4TCPLayout() throws {
        let packet = Build.ipv4(a, b, proto: 6, payload: Build.tcp(a, b, payload: data), options: [1, 1, 1, 0])
        let layout = try parseGuarded(packet).get()
        #expect(layout.family == .ipv4)
        #expect(layout.packetLength == packet.count)
        #expect(layout.transportOffset == 24)
        #expect(layout.transportProtocol == 6)
        #expect(!layout.isFragment)
        #expect(layout.pseudoHeaderHasDestination)
        #expect(layout.quote == nil)
    }

    @Test func trailingBytesPastTotalLengthAreNotPartOfThePacket() throws {
        let packet = Build.ipv4(a, b, proto: 17, payload: Build.udp(a, b, payload: data))
        let layout = try parseGuarded(packet + [0, 0, 0, 0]).get()
        #expect(layout.packetLength == packet.count)
    }

    @Test func ipv6ChainLayout() throws {
        let packet = Build.ipv6(a6, b6, proto: 17, payload: Build.udp(a6, b6, payload: data),
                                extensions: [(0, [0, 0, 1, 4, 0, 0, 0, 0]), (44, [0, 0, 0, 1, 1, 2, 3, 4])])
        let layout = try parseGuarded(packet).get()
        #expect(layout.transportOffset == 56)
        #expect(layout.transportProtocol == 17)
        #expect(layout.isFragment)
    }

    @Test func ipv6LaterFragmentHasNoTransport() throws {
        let packet = Build.ipv6(a6, b6, proto: 6, payload: data, extensions: [(44, [0, 0, 0, 0x11, 1, 2, 3, 4])])
        let layout = try parseGuarded(packet).get()
        #expect(layout.transportOffset == nil)
        #expect(layout.isFragment)
    }

    @Test func icmpErrorQuoteLayout() throws {
        let invoking = Build.ipv4(b, a, proto: 6, payload: Build.tcp(b, a, payload: data))
        let packet = Build.ipv4(a, b, proto: 1, payload: Build.icmpError(
            type: 3, code: 1, quote: Array(invoking.prefix(38)), v6: false, source: [], destination: []))
        let quote = try #require(try parseGuarded(packet).get().quote)
        #expect(quote.offset == 28)
        #expect(quote.length == 38)
        #expect(quote.transportChecksumOffset == 28 + 20 + 16)
        // Cut before the TCP checksum: addresses only.
        let short = Build.ipv4(a, b, proto: 1, payload: Build.icmpError(
            type: 3, code: 1, quote: Array(invoking.prefix(28)), v6: false, source: [], destination: []))
        #expect(try parseGuarded(short).get().quote?.transportChecksumOffset == nil)
    }

    static let malformedIPv4Cases: [(String, DropReason)] = [
        ("", .truncated),
        ("45", .truncated),
        ("55000014000000004006000001020304050607", .unsupportedVersion),
        ("4400001400000000400600000102030405060708", .badIPv4HeaderLength),
        ("4f00001400000000400600000102030405060708", .badIPv4HeaderLength),
        ("4500001000000000400600000102030405060708", .badIPv4TotalLength),
        ("4500001500000000400600000102030405060708", .badIPv4TotalLength),
        ("46000018000000004006000001020304050607080701", .badIPv4HeaderLength),
        ("460000180000000040060000010203040506070883090000", .badIPv4Options),
        ("460000180000000040060000010203040506070844010000", .badIPv4Options),
        ("4500001c00000000401100000102030405060708000000350008", .badIPv4TotalLength),
        ("4500001a00000000401100000102030405060708000000350008", .transportTruncated),
        ("45000028000000004006000001020304050607080000005000000000000000004000000000000000", .badTCPHeaderLength),
        ("45000028000000004006000001020304050607080000005000000000000000006000000000000000", .badTCPHeaderLength),
        ("4500001c000000004001000001020304050607080303000000000000", .badICMPQuote),
        ]

    @Test(arguments: malformedIPv4Cases)
    func malformedIPv4(_ hex: String, _ reason: DropReason) {
        #expect(parseGuarded([UInt8](hex: hex)) == .failure(reason), "\(hex)")
    }

    @Test func malformedIPv6() {
        let header = { (payload: Int, next: UInt8) -> [UInt8] in
            [0x60, 0, 0, 0] + Build.be16(payload) + [next, 64] + Array(repeating: 1, count: 32)
        }
        #expect(parseGuarded(Array(header(0, 59).prefix(39))) == .failure(.truncated))
        #expect(parseGuarded(header(8, 17)) == .failure(.badIPv6PayloadLength))
        #expect(parseGuarded(header(0, 17)) == .failure(.badIPv6PayloadLength))
        #expect((try? parseGuarded(header(0, 59)).get())?.transportOffset == nil)
        #expect(parseGuarded(header(4, 60) + [17, 0, 0, 0]) == .failure(.extensionHeaderTruncated))
        #expect(parseGuarded(header(8, 60) + [17, 1, 0, 0, 0, 0, 0, 0]) == .failure(.extensionHeaderTruncated))
        #expect(parseGuarded(header(16, 60) + [0, 0, 0, 0, 0, 0, 0, 0] + [17, 0, 0, 0, 0, 0, 0, 0])
                == .failure(.misplacedHopByHop))
        #expect(parseGuarded(header(8, 17) + [0, 0, 0, 0, 0, 0, 0, 0]).isSuccess)
        #expect(parseGuarded(header(4, 17) + [0, 0, 0, 0]) == .failure(.transportTruncated))
        // Seventeen destination-options headers in a row: more than any packet needs.
        let chain = (0..<17).flatMap { _ in [UInt8]([60, 0, 0, 0, 0, 0, 0, 0]) }
        #expect(parseGuarded(header(chain.count, 60) + chain) == .failure(.tooManyExtensionHeaders))
        // ESP and unknown headers stop the walk cleanly.
        #expect((try? parseGuarded(header(8, 50) + [1, 2, 3, 4, 5, 6, 7, 8]).get())?.transportOffset == nil)
        #expect((try? parseGuarded(header(8, 253) + [1, 2, 3, 4, 5, 6, 7, 8]).get())?.transportOffset == 40)
    }

    /// Every prefix of valid packets of every shape is refused or parsed without reading
    /// past its end (the guard page faults if it does).
    @Test func everyTruncationIsSafe() {
        for packet in ShapeCatalog.samples() {
            for cut in 0..<packet.count {
                let prefix = Array(packet.prefix(cut))
                if case .success(let layout) = parseGuarded(prefix) {
                    #expect(layout.packetLength <= cut)
                }
            }
        }
    }

    /// Random and mutated byte strings never trap or read out of bounds, and what parses
    /// can be translated without touching a byte past the packet.
    @Test func randomBytesNeverTrap() {
        var generator = SeededRandom(seed: 42)
        let samples = ShapeCatalog.samples()
        var parsed = 0
        for round in 0..<60_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = samples[round / 2 % samples.count]
                for _ in 0..<Int.random(in: 1...4, using: &generator) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
                if Bool.random(using: &generator) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))) }
            } else {
                bytes = (0..<Int.random(in: 0...120, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if !bytes.isEmpty { bytes[0] = Bool.random(using: &generator) ? 0x45 : 0x60 }
            }
            GuardedBuffer.shared.withPacket(bytes) { base, count in
                guard let layout = try? PacketLayout.parse(UnsafeRawPointer(base), length: count) else { return }
                parsed += 1
                if layout.family == .ipv4 {
                    try? Translator.translate(base, layout: layout,
                                              rewrite: AddressRewrite(source: Addr.moaA, destination: Addr.moaB),
                                              quoteRewrite: AddressRewrite(source: Addr.hoaB, destination: Addr.hoaA))
                } else {
                    try? Translator.translate(base, layout: layout,
                                              rewrite: AddressRewrite(source: Addr.moa6A, destination: Addr.moa6B),
                                              quoteRewrite: AddressRewrite(source: Addr.hoa6B, destination: Addr.hoa6A))
                }
            }
        }
        #expect(parsed > 1_000)
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
