import MATSignaling
import Testing

/// The UDP encapsulation's framing (docs/signaling.md, "UDP encapsulation").
@Suite struct EncapWireTests {
    func parse(_ bytes: [UInt8]) -> EncapWire.Frame? { bytes.withUnsafeBytes { EncapWire.parse($0) } }

    let header: [UInt8] = [0x4D, 0x41, 0x54, 0x75, 1, 1, 0, 0]
    let virtio = [UInt8](repeating: 0, count: 10)
    let ipv4 = [0x45] + [UInt8](repeating: 0, count: 19)

    @Test func theFourFormsParse() {
        #expect(parse(header + virtio + ipv4) == .packet)
        #expect(parse(header + virtio + [0x60] + [UInt8](repeating: 0, count: 39)) == .packet)
        #expect(parse(EncapWire.control(.keepalive)) == .keepalive)
        #expect(EncapWire.control(.keepalive) == [0x4D, 0x41, 0x54, 0x75, 1, 2, 0, 0])
        let nonce = (0..<16).map { UInt8($0) }
        #expect(parse(EncapWire.control(.probeRequest, nonce: nonce)) == .probeRequest)
        #expect(parse(EncapWire.control(.probeAnswer, nonce: nonce)) == .probeAnswer)
    }

    @Test func everythingElseIsRefused() {
        #expect(parse([]) == nil && parse(Array(header.prefix(7))) == nil)
        #expect(parse(header + virtio + Array(ipv4.prefix(19))) == nil)          // shorter than an IPv4 header
        #expect(parse(header + virtio + [0x50] + ipv4.dropFirst()) == nil)        // IP version 5
        #expect(parse([0x4D, 0x41, 0x54, 0x73, 1, 2, 0, 0]) == nil)               // a signaling magic
        #expect(parse([0x4D, 0x41, 0x54, 0x75, 2, 2, 0, 0]) == nil)               // version 2
        #expect(parse([0x4D, 0x41, 0x54, 0x75, 1, 5, 0, 0]) == nil)               // unknown kind
        #expect(parse([0x4D, 0x41, 0x54, 0x75, 1, 2, 0, 1]) == nil)               // reserved bits
        #expect(parse(EncapWire.control(.keepalive) + [0]) == nil)
        #expect(parse(EncapWire.control(.probeRequest, nonce: [UInt8](repeating: 1, count: 16)).dropLast() + []) == nil)
        // Every single-byte change of a header either still parses as a well-formed form or is refused; never traps.
        let valid = header + virtio + ipv4
        for index in valid.indices {
            for value in [UInt8(0), 1, 0x45, 0x60, 0xFF] {
                var mutated = valid
                mutated[index] = value
                _ = parse(mutated)
            }
        }
    }
}
