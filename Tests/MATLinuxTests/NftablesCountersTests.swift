#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import MATLinux
import Testing

/// The nfnetlink reader of named counters: what it makes of the kernel's answer (any bytes),
/// and, as root, the real answer beside maps of 100,000 elements, against nft's listing.
struct NftablesCountersTests {
    /// One netlink message: header, then `payload`.
    static func message(type: UInt16, sequence: UInt32 = 7, portID: UInt32 = 42, _ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value) { bytes += $0 } }
        append(UInt32(16 + payload.count))
        append(type)
        append(UInt16(0))
        append(sequence)
        append(portID)
        bytes += payload
        while bytes.count % 4 != 0 { bytes.append(0) }
        return bytes
    }

    /// One attribute (its payload padded to four bytes).
    static func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt16(4 + payload.count)) { bytes += $0 }
        withUnsafeBytes(of: type) { bytes += $0 }
        bytes += payload
        while bytes.count % 4 != 0 { bytes.append(0) }
        return bytes
    }

    static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    /// An NFT_MSG_NEWOBJ message for counter `name` (object type `type`).
    static func counter(_ name: String, packets: UInt64, bytes: UInt64, type: UInt32 = 1, sequence: UInt32 = 7) -> [UInt8] {
        let data = attribute(2, bigEndian(packets)) + attribute(1, bigEndian(bytes))
        let payload: [UInt8] = [1, 0, 0, 0] + attribute(1, Array("t".utf8) + [0]) + attribute(2, Array(name.utf8) + [0])
            + attribute(3, bigEndian(type)) + attribute(0x8004, data)
        // NFT_MSG_NEWOBJ is 18 (linux/netfilter/nf_tables.h).
        return message(type: NftablesCounters.messageType(18), sequence: sequence, payload)
    }

    static func parse(_ bytes: [UInt8]) -> (counters: [String: NftablesCounters.Value], end: NftablesCounters.End) {
        bytes.withUnsafeBytes { NftablesCounters.parse($0, sequence: 7, portID: 42) }
    }

    @Test func countersOfADumpAreReadAndItsEndOrErrorIsSeen() {
        let done = Self.message(type: 3, [0, 0, 0, 0])
        let two = Self.counter("out6", packets: 5, bytes: 420) + Self.counter("in4", packets: 1 << 40, bytes: 7)
        let read = Self.parse(two)
        #expect(read.counters == ["out6": .init(packets: 5, bytes: 420), "in4": .init(packets: 1 << 40, bytes: 7)])
        #expect(read.end == .more)
        #expect(Self.parse(two + done).end == .done)
        // A quota object, another request's answer, an error, a dump that failed midway.
        #expect(Self.parse(Self.counter("q", packets: 1, bytes: 1, type: 2) + done).counters.isEmpty)
        #expect(Self.parse(Self.counter("old", packets: 1, bytes: 1, sequence: 6)).counters.isEmpty)
        let error: Int32 = -EPERM
        #expect(Self.parse(Self.message(type: 2, withUnsafeBytes(of: error) { Array($0) } + [UInt8](repeating: 0, count: 16))).end
                == .failed(EPERM))
        #expect(Self.parse(Self.message(type: 3, withUnsafeBytes(of: Int32(-EINTR)) { Array($0) })).end == .failed(EINTR))
    }

    @Test func anyBytesAreSafe() {
        let whole = Self.counter("out6", packets: 5, bytes: 420)
        // Every truncation, a length past the end, a length below the header's, noise.
        for count in 0..<whole.count {
            let cut = Array(whole.prefix(count))
            let read = Self.parse(cut)
            if count > 0 { #expect(read.end != .done && read.end != .more, "\(count)") }
            #expect(read.counters.isEmpty)
        }
        var long = whole
        long[0] = 0xff
        #expect(Self.parse(long).end == .malformed("a message of 255 bytes in \(whole.count)"))
        var short = whole
        short[0] = 8
        #expect(Self.parse(short).end != .more)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var noise = whole
            for _ in 0..<4 { noise[Int.random(in: 16..<noise.count, using: &generator)] = .random(in: 0...255, using: &generator) }
            _ = Self.parse(noise)
        }
    }
}

@Suite(.enabled(if: isRoot || mustRunRootTests, "needs root (runs in CI)"))
struct NftablesCountersLabTests {
    /// The fast path's table, its counters set to known values, its IPv6 maps filled with
    /// 100,000 peers: the reader gives those values in milliseconds, and nothing for a
    /// table that is not there. With `MAT_COUNTERS_BENCH=1` it also times nft's listing
    /// (seconds: left out of CI) and checks the reader gives nft's numbers. Prints
    /// `bench: counters elements=N nft_ms=... netlink_ms=...`.
    @Test func countersAreReadWithoutReadingTheMaps() throws {
        let lab = try LabNamespace()
        let peers = 100_000
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mat-counters-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var script = """
            add table inet t
            add counter inet t out4 { packets 3 bytes 180 }
            add counter inet t in4
            add counter inet t out6 { packets 5000000000 bytes 7000000000000 }
            add quota inet t q { over 1 mbytes }
            add map inet t out6 { type ipv6_addr : ipv6_addr; }
            add map inet t in6 { type ipv6_addr : ipv6_addr; }
            add table inet other
            add counter inet other out4 { packets 9 bytes 9 }

            """
        func address(_ net: Int, _ i: Int) -> String { "2001:db8:\(String(net, radix: 16))::\(String(i >> 16, radix: 16)):\(String(i & 0xffff, radix: 16))" }
        for start in stride(from: 0, to: peers, by: 4_096) {
            let chunk = start..<min(start + 4_096, peers)
            script += "add element inet t out6 { " + chunk.map { "\(address(0x4000, $0)) : \(address(0x4001, $0))" }.joined(separator: ", ") + " }\n"
            script += "add element inet t in6 { " + chunk.map { "\(address(0x4001, $0)) : \(address(0x4000, $0))" }.joined(separator: ", ") + " }\n"
        }
        let file = directory.appendingPathComponent("table.nft").path
        try script.write(toFile: file, atomically: true, encoding: .utf8)
        try run("ip", "netns", "exec", lab.name, "nft", "-f", file)

        @Sendable func milliseconds<R>(_ body: () throws -> R) rethrows -> (R, Double) {
            let start = ContinuousClock.now
            let result = try body()
            let elapsed = ContinuousClock.now - start
            return (result, Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) / 1e15)
        }
        let (read, netlinkMilliseconds) = try lab.enter { try milliseconds { try NftablesCounters.read(family: "inet", table: "t") } }
        #expect(read == ["out4": .init(packets: 3, bytes: 180), "in4": .init(packets: 0, bytes: 0),
                         "out6": .init(packets: 5_000_000_000, bytes: 7_000_000_000_000)])
        var nftMilliseconds: Double?
        if ProcessInfo.processInfo.environment["MAT_COUNTERS_BENCH"] == "1" {
            let (listing, milliseconds) = try milliseconds { try run("ip", "netns", "exec", lab.name, "nft", "-j", "list", "counters", "table", "inet", "t") }
            nftMilliseconds = milliseconds
            // nft's own numbers, for the same counters.
            let json = try JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [String: Any]
            let listed = (json?["nftables"] as? [[String: Any]] ?? []).compactMap { $0["counter"] as? [String: Any] }
            #expect(read == Dictionary(uniqueKeysWithValues: listed.map {
                ($0["name"] as? String ?? "", NftablesCounters.Value(packets: ($0["packets"] as? NSNumber)?.uint64Value ?? 0,
                                                                    bytes: ($0["bytes"] as? NSNumber)?.uint64Value ?? 0))
            }))
        }
        print("bench: counters elements=\(2 * peers) nft_ms=\(nftMilliseconds.map { String(Int($0)) } ?? "-") "
              + "netlink_ms=\(String(format: "%.1f", netlinkMilliseconds))")
        // Milliseconds, where nft takes one to three seconds: a second is generous under load.
        #expect(netlinkMilliseconds < 1_000)
        #expect(try lab.enter { try NftablesCounters.read(family: "inet", table: "absent") }.isEmpty)
        #expect(try lab.enter { try NftablesCounters.read(family: "ip", table: "t") }.isEmpty)
        #expect(throws: SystemError.self) { try NftablesCounters.read(family: "nosuch", table: "t") }
    }
}
