import MATPacket
import Testing
@testable import MATNode

/// The engine's marks of peers heard from by their packets (``ReceiveMarks``).
@Suite struct ReceiveMarksTests {
    /// An IPv4 or IPv6 header with `source`, the rest zero.
    func header(from source: IPAddress) -> [UInt8] {
        switch source {
        case .v4(let address):
            var bytes = [UInt8](repeating: 0, count: 20)
            bytes[0] = 0x45
            bytes.replaceSubrange(12..<16, with: address.bytes)
            return bytes
        case .v6(let address):
            var bytes = [UInt8](repeating: 0, count: 40)
            bytes[0] = 0x60
            for index in 0..<8 {
                bytes[8 + index] = UInt8(truncatingIfNeeded: address.high >> (56 - 8 * UInt64(index)))
                bytes[16 + index] = UInt8(truncatingIfNeeded: address.low >> (56 - 8 * UInt64(index)))
            }
            return bytes
        }
    }

    func mark(_ marks: inout ReceiveMarks, _ source: IPAddress) {
        header(from: source).withUnsafeBytes { marks.mark(translated: $0.baseAddress!) }
    }

    @Test func eachSourceIsTakenOnceAndTheMarksStartAfresh() {
        var marks = ReceiveMarks()
        #expect(marks.isEmpty)
        let four = IPAddress("198.51.100.10")!, six = IPAddress("2001:db8:100::10")!
        for _ in 0..<100 {
            mark(&marks, four)
            mark(&marks, six)
        }
        #expect(!marks.isEmpty)
        let taken = marks.take()
        #expect(Set(taken) == [four, six] && taken.count == 2)
        #expect(marks.isEmpty && marks.take().isEmpty)
        mark(&marks, four)
        #expect(marks.take() == [four], "marked again after a take")
    }

    @Test func manyPeersShareSixtyFourSlotsAndNothingIsInvented() {
        var marks = ReceiveMarks()
        let sources = (1...200).map { IPAddress("198.51.100.\($0)")! }
        for source in sources { mark(&marks, source) }
        let taken = marks.take()
        #expect(taken.count <= 64 && !taken.isEmpty)
        #expect(Set(taken).isSubset(of: Set(sources)), "a collision loses a mark, never makes one up")
    }
}
