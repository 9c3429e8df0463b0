import MATPacket
import Testing

@Suite struct ChecksumTests {
    /// RFC 1071 section 3's worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    @Test func rfc1071Example() {
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        let sum = bytes.withUnsafeBytes { InternetChecksum.sum($0.baseAddress!, count: $0.count) }
        #expect(sum == 0xDDF2)
    }

    /// A well-known IPv4 header whose checksum field is b861.
    @Test func knownIPv4HeaderChecksum() {
        var header = [UInt8](hex: "450000730000400040110000c0a80001c0a800c7")
        let sum = header.withUnsafeBytes { InternetChecksum.sum($0.baseAddress!, count: 20) }
        #expect(~sum == 0xB861)
        header[10] = 0xB8
        header[11] = 0x61
        let verify = header.withUnsafeBytes { InternetChecksum.sum($0.baseAddress!, count: 20) }
        #expect(verify == 0xFFFF)
    }

    @Test func sumMatchesNaiveForEveryLengthAndAlignment() {
        var generator = SeededRandom(seed: 7)
        for length in 0..<300 {
            let bytes = (0..<(length + 3)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for shift in 0..<3 {
                let slice = Array(bytes[shift..<(shift + length)])
                let fast = bytes.withUnsafeBytes { InternetChecksum.sum($0.baseAddress! + shift, count: length) }
                let naive = Build.foldedSum(slice)
                // 0x0000 and 0xFFFF are the same one's-complement value; only an all-zero
                // input may fold to 0x0000.
                #expect(fast == naive || (fast == 0xFFFF && naive == 0) || (fast == 0 && naive == 0xFFFF),
                        "length \(length) shift \(shift): \(fast) vs \(naive)")
            }
        }
    }

    @Test func allOnesAndAllZeroInputs() {
        let ones = [UInt8](repeating: 0xFF, count: 64)
        let zeros = [UInt8](repeating: 0, count: 64)
        #expect(ones.withUnsafeBytes { InternetChecksum.sum($0.baseAddress!, count: 64) } == 0xFFFF)
        #expect(zeros.withUnsafeBytes { InternetChecksum.sum($0.baseAddress!, count: 64) } == 0)
    }

    /// RFC 1624 section 4: HC = 0xDD2F, m = 0x5555 changed to m' = 0x3285 gives 0x0000.
    @Test func rfc1624Example() {
        let delta = InternetChecksum.delta(replacing: 0x5555, with: 0x3285)
        #expect(InternetChecksum.update(0xDD2F, delta: delta) == 0x0000)
    }

    @Test func incrementalUpdateEqualsRecomputation() {
        var generator = SeededRandom(seed: 11)
        for _ in 0..<20_000 {
            var words = (0..<10).map { _ in UInt16.random(in: 0...0xFFFF, using: &generator) }
            if Bool.random(using: &generator) { words[3] = 0xFFFF }
            let bytes = words.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
            let before = Build.checksum(bytes)
            let index = Int.random(in: 0..<10, using: &generator)
            let new = Bool.random(using: &generator) ? 0 : UInt16.random(in: 0...0xFFFF, using: &generator)
            var changed = bytes
            changed[index * 2] = UInt8(new >> 8)
            changed[index * 2 + 1] = UInt8(new & 0xFF)
            let expected = Build.checksum(changed)
            let delta = InternetChecksum.delta(replacing: UInt64(words[index]), with: UInt64(new))
            let updated = InternetChecksum.update(before, delta: delta)
            if words[index] != new {
                #expect(updated == expected, "words \(words) index \(index) new \(new)")
            }
        }
    }
}
