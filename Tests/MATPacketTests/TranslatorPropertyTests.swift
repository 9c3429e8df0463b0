import MATPacket
import Testing

/// Packets of every shape the translator handles, built for any pair of addresses.
enum ShapeCatalog {
    /// One shape: a function from (source, destination) bytes to a packet, plus whether
    /// it is an ICMP error whose quote runs the other way.
    struct Shape {
        var name: String
        var v6: Bool
        var isError: Bool
        var build: ([UInt8], [UInt8]) -> [UInt8]
    }

    static func shapes(payload: [UInt8], optionWords: Int, quoteLength: Int) -> [Shape] {
        let options = [UInt8](repeating: 1, count: optionWords * 4)
        let destinationOptions: [UInt8] = [0, 0, 1, 4, 0, 0, 0, 0]
        return [
            Shape(name: "tcp4", v6: false, isError: false) { s, d in
                Build.ipv4(s, d, proto: 6, payload: Build.tcp(s, d, payload: payload), options: options) },
            Shape(name: "udp4", v6: false, isError: false) { s, d in
                Build.ipv4(s, d, proto: 17, payload: Build.udp(s, d, payload: payload), options: options) },
            Shape(name: "udp4-nocsum", v6: false, isError: false) { s, d in
                Build.ipv4(s, d, proto: 17, payload: Build.udp(s, d, payload: payload, zeroChecksum: true)) },
            Shape(name: "icmp4", v6: false, isError: false) { s, d in
                Build.ipv4(s, d, proto: 1, payload: Build.icmpEcho(payload: payload), options: options) },
            Shape(name: "frag4", v6: false, isError: false) { s, d in
                Build.ipv4(s, d, proto: 6, payload: payload, fragmentOffset: 100) },
            Shape(name: "icmp4-error", v6: false, isError: true) { s, d in
                let invoking = Build.ipv4(d, s, proto: 17, payload: Build.udp(d, s, payload: payload))
                return Build.ipv4(s, d, proto: 1, payload: Build.icmpError(
                    type: 3, code: 3, quote: Array(invoking.prefix(min(invoking.count, 20 + quoteLength))),
                    v6: false, source: s, destination: d))
            },
            Shape(name: "tcp6", v6: true, isError: false) { s, d in
                Build.ipv6(s, d, proto: 6, payload: Build.tcp(s, d, payload: payload)) },
            Shape(name: "udp6-ext", v6: true, isError: false) { s, d in
                Build.ipv6(s, d, proto: 17, payload: Build.udp(s, d, payload: payload),
                           extensions: [(0, destinationOptions), (60, destinationOptions)]) },
            Shape(name: "icmp6", v6: true, isError: false) { s, d in
                Build.ipv6(s, d, proto: 58, payload: Build.icmpv6Echo(s, d, payload: payload)) },
            Shape(name: "frag6", v6: true, isError: false) { s, d in
                Build.ipv6(s, d, proto: 6, payload: payload, extensions: [(44, [0, 0, 0x01, 0x00, 0, 0, 0, 7])]) },
            Shape(name: "icmp6-error", v6: true, isError: true) { s, d in
                let invoking = Build.ipv6(d, s, proto: 6, payload: Build.tcp(d, s, payload: payload))
                return Build.ipv6(s, d, proto: 58, payload: Build.icmpError(
                    type: 3, code: 0, quote: Array(invoking.prefix(min(invoking.count, 40 + quoteLength))),
                    v6: true, source: s, destination: d))
            },
        ]
    }

    /// One packet of each shape, for the truncation and mutation tests.
    static func samples() -> [[UInt8]] {
        let payload: [UInt8] = Array(0..<37)
        return shapes(payload: payload, optionWords: 1, quoteLength: 28).map {
            $0.v6 ? $0.build(Addr.hoa6A.bytes, Addr.hoa6B.bytes) : $0.build(Addr.hoaA.bytes, Addr.hoaB.bytes)
        }
    }
}

@Suite struct TranslatorPropertyTests {
    /// For random shapes, payloads and addresses: the incrementally updated packet equals
    /// one built from scratch with the new addresses (so every checksum equals a full
    /// recomputation), and translating back restores the original bytes.
    @Test func incrementalEqualsRecomputationAndRoundTrips() throws {
        var generator = SeededRandom(seed: 2026)
        var checked = 0
        for _ in 0..<3_000 {
            let payload = (0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let shapes = ShapeCatalog.shapes(payload: payload, optionWords: Int.random(in: 0...3, using: &generator),
                                             quoteLength: quoteLength(&generator))
            let shape = shapes[Int.random(in: 0..<shapes.count, using: &generator)]
            if shape.v6 {
                let old = (randomV6(&generator), randomV6(&generator))
                let new = (randomV6(&generator), randomV6(&generator))
                try checkRoundTrip(shape, old: old, new: new)
            } else {
                let old = (randomV4(&generator), randomV4(&generator))
                let new = (randomV4(&generator), randomV4(&generator))
                try checkRoundTrip(shape, old: old, new: new)
            }
            checked += 1
        }
        #expect(checked == 3_000)
    }

    func checkRoundTrip<A: PacketAddress & AddressBytes>(_ shape: ShapeCatalog.Shape, old: (A, A), new: (A, A)) throws {
        let original = shape.build(old.0.bytes, old.1.bytes)
        let expected = shape.build(new.0.bytes, new.1.bytes)
        // An error's quote is the invoking packet, whose addresses run the other way.
        let quote = shape.isError ? AddressRewrite(source: new.1, destination: new.0) : .unchanged
        let quoteBack = shape.isError ? AddressRewrite(source: old.1, destination: old.0) : .unchanged
        let forward = try translated(original, AddressRewrite(source: new.0, destination: new.1), quote: quote)
        #expect(forward.hex == expected.hex, "\(shape.name) \(old) -> \(new)")
        let back = try translated(forward, AddressRewrite(source: old.0, destination: old.1), quote: quoteBack)
        #expect(back.hex == original.hex, "\(shape.name) back")
    }

    /// Even lengths only: a quote cut through the middle of its checksum field cannot be
    /// updated (the missing byte decides the carry), so the translator leaves it alone and
    /// a rebuilt packet would differ in that one byte.
    func quoteLength(_ generator: inout SeededRandom) -> Int {
        2 * Int.random(in: 4...32, using: &generator)
    }

    func randomV4(_ generator: inout SeededRandom) -> IPv4Address {
        // Include the checksum-neutral extremes now and then.
        switch Int.random(in: 0..<20, using: &generator) {
        case 0: IPv4Address(0xFFFF_0000)
        case 1: IPv4Address(0x0000_FFFF)
        default: IPv4Address(UInt32.random(in: 1...UInt32.max, using: &generator))
        }
    }

    func randomV6(_ generator: inout SeededRandom) -> IPv6Address {
        IPv6Address(high: 0x2001_0DB8_0000_0000 | UInt64.random(in: 0...0xFFFF_FFFF, using: &generator),
                    low: UInt64.random(in: 0...UInt64.max, using: &generator))
    }
}

/// The wire bytes of an address, for the packet builder.
protocol AddressBytes { var bytes: [UInt8] { get } }
extension IPv4Address: AddressBytes {}
extension IPv6Address: AddressBytes {}
