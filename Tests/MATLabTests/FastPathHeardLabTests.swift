#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
@testable import MATNode
import MATPacket
import Testing

/// What reading the kernel fast path's heard sets costs (FastPathHeard), with the maps
/// beside them as full as the set: matd's own read (a netlink dump of each set,
/// ``NftablesSetElements``), in a network namespace of the test's own. CI reads 10,000
/// peers; the figure in docs/benchmarks.md is for 100,000, where nft's listing of the set
/// (what matd read before) is timed too:
///
///     MAT_HEARD_BENCH_PEERS=100000 swift test --skip-build --filter FastPathHeardLabTests
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds a network namespace (runs in CI)"))
struct FastPathHeardLabTests {
    @Test func readingTheHeardSetsFindsEveryPeerWithTheTimeOfItsLastPacket() throws {
        let peers = Int(ProcessInfo.processInfo.environment["MAT_HEARD_BENCH_PEERS"] ?? "") ?? 10_000
        let namespace = "matheard\(getpid())"
        try check(["ip", "netns", "add", namespace])
        defer { _ = try? check(["ip", "netns", "del", namespace]) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("matheard\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        // A table shaped like matd's: the maps and both heard sets, IPv6 peers in all three.
        let table = "matd_bench_fast"
        var lines = ["add table inet \(table)",
                     "add map inet \(table) out6 { type ipv6_addr : ipv6_addr; }",
                     "add map inet \(table) in6 { type ipv6_addr : ipv6_addr; }"]
            + FastPathHeard.sets(table: table, timeoutSeconds: 60)
        func address(_ net: Int, _ index: Int) -> String {
            "2001:db8:\(String(net, radix: 16))::\(String(index >> 16, radix: 16)):\(String(index & 0xffff, radix: 16))"
        }
        for start in stride(from: 0, to: peers, by: 4_096) {
            let chunk = start..<min(start + 4_096, peers)
            lines.append("add element inet \(table) out6 { " + chunk.map { "\(address(0x4000, $0)) : \(address(0x4001, $0))" }.joined(separator: ", ") + " }")
            lines.append("add element inet \(table) in6 { " + chunk.map { "\(address(0x4001, $0)) : \(address(0x4000, $0))" }.joined(separator: ", ") + " }")
            lines.append("add element inet \(table) heard6 { " + chunk.map { address(0x4000, $0) }.joined(separator: ", ") + " }")
        }
        let file = directory + "/fill.nft"
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let filling = MonotonicClock.milliseconds()
        try check(["ip", "netns", "exec", namespace, "nft", "-f", file], timeout: 300)
        let filled = MonotonicClock.milliseconds()

        // matd's read, on a thread inside the namespace; twice (the first warms nothing
        // that matd's would not have warm too, but shows the spread).
        var took: [UInt64] = []
        var heard: [IPAddress: UInt64] = [:]
        for _ in 0..<2 {
            let result = try inNamespace("/run/netns/\(namespace)") { () throws(SystemError) -> ([IPAddress: UInt64], UInt64) in
                let nftables = try Nftables()
                let start = MonotonicClock.milliseconds()
                let read = try FastPathHeard.read(table: table, timeoutSeconds: 60, nftables: nftables)
                return (read, MonotonicClock.milliseconds() - start)
            }
            heard = result.0
            took.append(result.1)
        }
        #expect(heard.count == peers, "\(heard.count) of \(peers) peers read")
        #expect(heard[IPAddress(address(0x4000, peers - 1))!] != nil)
        // Each element's last packet, as far as the set knows, is its addition: during the
        // fill (less at most a second: the time is taken before each set's dump).
        let outside = heard.values.filter { $0 + 1_000 < filling || $0 > filled }
        #expect(outside.isEmpty, "\(outside.count) times outside \(filling)...\(filled): \(outside.prefix(3))")
        #expect(took.allSatisfy { $0 < 60_000 }, "\(took) ms")
        var nft = "-"
        if ProcessInfo.processInfo.environment["MAT_HEARD_BENCH_PEERS"] != nil {
            let start = MonotonicClock.milliseconds()
            try check(["ip", "netns", "exec", namespace, "nft", "-j", "list", "set", "inet", table, "heard6"], timeout: 300)
            nft = "\(MonotonicClock.milliseconds() - start)"
        }
        print("bench: fastpath-heard peers=\(peers) read_ms=\(took.map(String.init).joined(separator: ",")) nft_list_ms=\(nft) "
              + "interval_ms=\(FastPathHeard.interval(lastReadTook: took.max() ?? 0, idleAfter: 30_000))")
    }
}
