import MATWire
import Testing

/// A reader over an array, as the IMS journal uses one.
private struct ArrayReader: ByteReading {
    struct Short: Error, Equatable { var offset: Int }
    let buffer: [UInt8]
    var position: Int
    var limit: Int

    init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        buffer = bytes
        position = start
        limit = end ?? bytes.count
    }

    static func shortInput(at offset: Int) -> Short { Short(offset: offset) }
}

/// A reader over memory it does not own, as the DNS parser uses one.
private struct PointerReader: ByteReading {
    let buffer: UnsafeBufferPointer<UInt8>
    var position = 0
    var limit: Int { buffer.count }
    static func shortInput(at offset: Int) -> ArrayReader.Short { ArrayReader.Short(offset: offset) }
}

@Suite struct ByteCodecTests {
    let sample: [UInt8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C,
                           0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0xFE, 0xFF]

    @Test func readsEachWidthMostSignificantByteFirst() throws {
        var reader = ArrayReader(sample)
        #expect(try reader.u8() == 0x01)
        #expect(try reader.u16() == 0x0203)
        #expect(try reader.u32() == 0x0405_0607)
        #expect(try reader.u48() == 0x0809_0A0B_0C0D)
        #expect(try reader.u64() == 0x0E0F_1011_1213_1415)
        #expect(reader.position == 21)
        #expect(reader.remaining == 3)
        #expect(try reader.bytes(2) == [0x16, 0xFE])
        try reader.skip(1)
        #expect(reader.remaining == 0)
    }

    @Test func aShortReadThrowsWhereTheFieldStartsAndMovesNothing() throws {
        var reader = ArrayReader(sample, from: 20, to: 23)
        #expect(throws: ArrayReader.Short(offset: 20)) { _ = try reader.u32() }
        #expect(reader.position == 20)
        #expect(try reader.u16() == 0x1516)
        #expect(throws: ArrayReader.Short(offset: 22)) { _ = try reader.u16() }
        #expect(throws: ArrayReader.Short(offset: 22)) { _ = try reader.bytes(2) }
        #expect(throws: ArrayReader.Short(offset: 22)) { try reader.skip(-1) }
        #expect(try reader.u8() == 0xFE)
        // The limit holds even though the array goes on.
        #expect(throws: ArrayReader.Short(offset: 23)) { _ = try reader.u8() }
        #expect(reader.buffer.count == 24)
    }

    @Test func everyTruncationOfAFieldThrows() {
        for length in 0..<8 {
            let bytes = Array(sample.prefix(length))
            var reader = ArrayReader(bytes)
            #expect(throws: ArrayReader.Short(offset: 0)) { _ = try reader.u64() }
            if length < 6 {
                #expect(throws: ArrayReader.Short(offset: 0)) { _ = try reader.u48() }
            }
        }
    }

    @Test func pointerAndArrayStorageReadAlike() throws {
        var array = ArrayReader(sample)
        var expected: [UInt64] = []
        for _ in 0..<3 { expected.append(try array.u64()) }
        let read = try sample.withUnsafeBufferPointer { buffer throws -> [UInt64] in
            var pointer = PointerReader(buffer: buffer)
            var values: [UInt64] = []
            for _ in 0..<3 { values.append(try pointer.u64()) }
            #expect(throws: ArrayReader.Short(offset: 24)) { _ = try pointer.u8() }
            return values
        }
        #expect(read == expected)
        #expect(expected[0] == 0x0102_0304_0506_0708)
    }

    @Test func unalignedReadsAtAnOffset() {
        #expect(BigEndian.u16(sample, at: 22) == 0xFEFF)
        #expect(BigEndian.u32(sample, at: 1) == 0x0203_0405)
        #expect(BigEndian.u48(sample, at: 3) == 0x0405_0607_0809)
        #expect(BigEndian.u64(sample, at: 16) == 0x1112_1314_1516_FEFF)
        sample.withUnsafeBytes { raw in
            #expect(BigEndian.u64(raw, at: 5) == 0x0607_0809_0A0B_0C0D)
        }
    }

    @Test func writesRoundTripThroughTheReader() throws {
        var writer = ByteWriter(capacity: 32)
        writer.u8(0xAB)
        writer.u16(0)  // patched below
        writer.u32(0xDEAD_BEEF)
        writer.u48(0x1234_5678_9ABC)
        writer.u64(0x0102_0304_0506_0708)
        writer.append([0x55, 0x66])
        writer.patchU16(at: 1, 0xCAFE)
        #expect(writer.bytes == [0xAB, 0xCA, 0xFE, 0xDE, 0xAD, 0xBE, 0xEF, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC,
                                 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x55, 0x66])
        var reader = ArrayReader(writer.bytes)
        #expect(try reader.u8() == 0xAB)
        #expect(try reader.u16() == 0xCAFE)
        #expect(try reader.u32() == 0xDEAD_BEEF)
        #expect(try reader.u48() == 0x1234_5678_9ABC)
        #expect(try reader.u64() == 0x0102_0304_0506_0708)
        #expect(try reader.bytes(2) == [0x55, 0x66])
    }

    @Test func aTimeAppendsOnlyItsLow48Bits() {
        var bytes: [UInt8] = [0x00]
        bytes.appendBigEndian48(0xFFFF_0000_0000_0001)
        bytes.appendBigEndian(UInt16(0x0102))
        #expect(bytes == [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02])
    }
}
