import MATPacket
import Testing

@Suite struct VirtioNetHeaderTests {
    /// A TSO IPv4 super-packet header as the kernel writes it: NEEDS_CSUM, GSO TCPv4,
    /// hdr_len 66, gso_size 1448, csum_start 20, csum_offset 16 (little-endian fields).
    @Test func decodesKernelHeader() {
        let bytes: [UInt8] = [0x01, 0x01, 0x42, 0x00, 0xA8, 0x05, 0x14, 0x00, 0x10, 0x00]
        let header = bytes.withUnsafeBytes { VirtioNetHeader(loadingFrom: $0.baseAddress!) }
        #expect(header.flags == VirtioNetHeader.needsChecksum)
        #expect(VirtioNetHeader.GSOType(rawValue: header.gsoTypeRaw) == .tcpv4)
        #expect(header.headerLength == 66)
        #expect(header.gsoSize == 1448)
        #expect(header.checksumMode == .partial(start: 20, offset: 16))
        var out = [UInt8](repeating: 0xEE, count: 10)
        out.withUnsafeMutableBytes { header.store(to: $0.baseAddress!) }
        #expect(out == bytes)
    }

    @Test func plainHeaderMeansCompleteChecksum() {
        #expect(VirtioNetHeader().checksumMode == .complete)
        let bytes = [UInt8](repeating: 0, count: 10)
        #expect(bytes.withUnsafeBytes { VirtioNetHeader(loadingFrom: $0.baseAddress!) } == VirtioNetHeader())
    }
}
