#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// The lab's delay element: mat-delay in the delay node between the CN and site C
/// (`DELAY=1 Tools/testbed up`, `Tools/testbed delay RTT_MS`). Everything the CN sends to
/// site C crosses it, held half the RTT each way. Root only, like the other lab tests.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct DelayElementTests {
    init() throws {
        guard FileManager.default.isExecutableFile(atPath: LabPaths.matDelay) else {
            throw LabError("mat-delay not found in \(LabPaths.binDirectory) (set MATLAB_BIN_DIR)")
        }
    }

    /// Site C's router and plain host, seen from the CN.
    static let targets = ["192.0.2.129", Addr.plain4, "2001:db8:c::1"]

    @Test func pingRoundTripFollowsTheDelay() throws {
        let lab = try Lab(delayElement: true)
        defer { lab.close() }
        // Without the element the CN has no way to site C.
        #expect(try !lab.ping("cn", "192.0.2.129", count: 1), "the CN reached site C with no element running")

        try lab.setDelay(rttMilliseconds: 0)
        for target in Self.targets {
            let rtt = try roundTrip(lab, to: target)
            // The minimum: on a busy 2-core machine a single round trip can wait for the CPU.
            #expect(rtt.min < 5, "RTT to \(target) with no delay: \(rtt)")
        }

        try lab.setDelay(rttMilliseconds: 100)
        for target in Self.targets {
            let rtt = try roundTrip(lab, to: target)
            #expect(rtt.min >= 100 && rtt.min <= 115, "RTT to \(target) with 100 ms: \(rtt)")
        }
    }

    @Test func tcpCrossesTheElementIntact() throws {
        let lab = try Lab(delayElement: true)
        defer { lab.close() }
        try lab.setDelay(rttMilliseconds: 0)
        let file = try lab.randomFile("payload", megabytes: 20)
        // Both ways through the element, SHA-256 of what arrived compared with what was sent.
        try lab.tcpTransfer(listener: "plain", address: Addr.plain4, connector: "cn", sender: "cn", file: file)
        try lab.tcpTransfer(listener: "plain", address: Addr.plain6, connector: "cn", sender: "plain", file: file)

        let bitsPerSecond = try iperf(lab, seconds: 3)
        print("DelayElementTests: iperf3 CN -> plain host through mat-delay at 0 ms: \(String(format: "%.2f", bitsPerSecond / 1e9)) Gbit/s")
        #expect(bitsPerSecond > 50e6, "iperf3 through the element: \(bitsPerSecond) bit/s")
    }

    /// mat-delay run by hand in the delay node: SIGTERM ends it with its counters, frames
    /// larger than a slot (up to a 64 KiB IPv4 packet) are counted and dropped without
    /// harm, and a bad interface name or queue size is a clear error.
    @Test func countsOversizeFramesAndStopsCleanly() throws {
        let lab = try Lab(delayElement: true)
        defer { lab.close() }
        let bad = try lab.run("delay", [LabPaths.matDelay, "--between", "nope0", "d-rt", "--delay-ms", "1"], timeout: 10)
        #expect(!bad.succeeded && bad.stderr.contains("no interface named 'nope0'"), "\(bad.summary)")
        let tinyQueue = try lab.run("delay", [LabPaths.matDelay, "--between", "d-cn", "d-rt", "--delay-ms", "1",
                                              "--queue-kb", "10"], timeout: 10)
        #expect(!tinyQueue.succeeded && tinyQueue.stderr.contains("--queue-kb must be between 64 and"), "\(tinyQueue.summary)")

        // Frames up to the largest IPv4 packet can reach the element.
        for (node, interface) in [("cn", "eth0"), ("delay", "d-cn")] {
            try lab.exec(node, "ip", "link", "set", interface, "mtu", "65535")
        }
        let element = try lab.spawn("delay", [LabPaths.matDelay, "--between", "d-cn", "d-rt", "--delay-ms", "2",
                                              "--queue-kb", "512"])
        guard element.waitForOutput(timeout: 10, { $0.contains("forwarding d-cn <-> d-rt") && $0.contains("512 KiB queue") }) else {
            throw LabError("mat-delay did not start:\n\(element.wait(timeout: 1).summary)")
        }
        #expect(try lab.ping("cn", "192.0.2.129", count: 3))
        let big = try lab.run("cn", ["ping", "-c", "2", "-i", "0.2", "-W", "1", "-s", "65507", "-M", "dont", "192.0.2.129"], timeout: 30)
        #expect(!big.stdout.contains(" 2 received"), "a 64 KiB frame crossed a 2 KiB slot: \(big.summary)")
        #expect(try lab.ping("cn", "192.0.2.129", count: 3), "forwarding stopped after the oversize frames")
        #expect(element.isRunning)

        element.signal(SIGTERM)
        let result = element.wait(timeout: 10)
        #expect(result.succeeded, "\(result.summary)")
        #expect(result.stderr.contains("stopped by SIGTERM"), "\(result.stderr)")
        let outbound = try #require(result.stderr.split(separator: "\n").first { $0.contains("d-cn -> d-rt: forwarded") })
        let inbound = try #require(result.stderr.split(separator: "\n").first { $0.contains("d-rt -> d-cn: forwarded") })
        // 6 echo requests at least, plus ARP; the two giant ones only as oversize drops.
        #expect(number(after: "forwarded ", in: outbound) >= 6, "\(outbound)")
        #expect(number(after: "forwarded ", in: inbound) >= 6, "\(inbound)")
        #expect(number(after: "oversize ", in: outbound) == 2, "\(outbound)")
        #expect(number(after: "ring full ", in: outbound) == 0 && number(after: "send errors ", in: outbound) == 0, "\(outbound)")
    }

    /// `--rate-mbit` makes each direction a 10 Mbit/s link with a 256 KiB queue, which four
    /// bulk TCP flows from the CN keep full (up to 200 ms of it). Two pings cross the link
    /// beside the flow, one marked DSCP CS6 (`ping -Q 0xc0`, as matd marks its signaling),
    /// one not: with fifo both wait behind the queue, with prio the marked one goes first,
    /// with fq both go first (each is a flow of its own, sparse beside the bulk one).
    @Test func aLinksQueueDisciplineDecidesWhoWaits() throws {
        let lab = try Lab(delayElement: true)
        defer { lab.close() }
        let noRate = try lab.run("delay", [LabPaths.matDelay, "--between", "d-cn", "d-rt", "--delay-ms", "1",
                                           "--qdisc", "prio"], timeout: 10)
        #expect(!noRate.succeeded && noRate.stderr.contains("give its rate with --rate-mbit"), "\(noRate.summary)")

        var waits: [String: (marked: Double, plain: Double)] = [:]
        for qdisc in ["fifo", "prio", "fq"] {
            let element = try lab.spawn("delay", [LabPaths.matDelay, "--between", "d-cn", "d-rt", "--delay-ms", "1",
                                                  "--rate-mbit", "10", "--queue-kb", "256", "--qdisc", qdisc])
            guard element.waitForOutput(timeout: 10, { $0.contains("a 10 Mbit/s link with qdisc \(qdisc) each way") }) else {
                throw LabError("mat-delay did not start:\n\(element.wait(timeout: 1).summary)")
            }
            #expect(try lab.ping("cn", Addr.plain4, count: 1))
            let server = try lab.spawn("plain", ["iperf3", "-s", "-1", "--forceflush", "-B", Addr.plain4])
            guard server.waitForOutput(timeout: 10, { $0.contains("Server listening") }) else {
                throw LabError("iperf3 server did not start:\n\(server.wait(timeout: 1).summary)")
            }
            let bulk = try lab.spawn("cn", ["iperf3", "-c", Addr.plain4, "-t", "6", "-P", "4", "-w", "1M"])
            sleep(2)  // the flows fill the queue
            let marked = try lab.spawn("cn", ["ping", "-Q", "0xc0", "-c", "20", "-i", "0.1", "-W", "2", Addr.plain4])
            let plain = try lab.spawn("cn", ["ping", "-c", "20", "-i", "0.1", "-W", "2", Addr.plain4])
            let markedTimes = pingTimes(marked.wait(timeout: 30).stdout)
            let plainTimes = pingTimes(plain.wait(timeout: 30).stdout)
            bulk.wait(timeout: 30)
            server.wait(timeout: 10)
            element.signal(SIGTERM)
            let result = element.wait(timeout: 10)
            let towardsPlain = result.stderr.split(separator: "\n").first { $0.contains("d-cn -> d-rt: forwarded") } ?? ""
            // The flows did fill the queue (it drops at 256 KiB).
            #expect(number(after: "queue peak ", in: towardsPlain) > 128 * 1_024, "\(qdisc): \(towardsPlain)")
            #expect(markedTimes.count >= 15 && plainTimes.count >= 15, "\(qdisc): \(markedTimes) \(plainTimes)")
            waits[qdisc] = (median(markedTimes), median(plainTimes))
            print("DelayElementTests: \(qdisc): median ping behind a full 256 KiB queue at 10 Mbit/s: "
                  + "CS6 \(waits[qdisc]!.marked) ms, unmarked \(waits[qdisc]!.plain) ms")
        }
        let fifo = try #require(waits["fifo"]), prio = try #require(waits["prio"]), fq = try #require(waits["fq"])
        #expect(fifo.marked > 30 && fifo.plain > 30, "fifo: \(fifo)")
        #expect(prio.marked < 25 && prio.plain > 30, "prio: \(prio)")
        #expect(fq.marked < 25 && fq.plain < 25, "fq: \(fq)")
    }

    @Test func downLeavesNothingBehind() throws {
        let lab = try Lab(delayElement: true)
        let name = lab.name
        defer { lab.close() }
        try lab.setDelay(rttMilliseconds: 20)
        try lab.setDelay(rttMilliseconds: 40)  // replaces the first one
        let pidText = try String(contentsOfFile: "/run/testbed-\(name)/delay.pid", encoding: .utf8)
        let pid = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(isMatDelay(pid))
        #expect(try lab.ping("cn", Addr.plain4, count: 1))
        // One element only: no duplicate replies.
        let once = try lab.run("cn", ["ping", "-c", "3", "-i", "0.2", Addr.plain4], timeout: 30)
        #expect(once.succeeded && !once.stdout.contains("duplicates"), "\(once.summary)")

        lab.close()
        #expect(!isMatDelay(pid), "mat-delay \(pid) outlived Tools/testbed down")
        let namespaces = try check(["ip", "netns", "list"])
        #expect(!namespaces.contains("\(name)-"), "namespaces left: \(namespaces)")
        let links = try check(["ip", "-o", "link", "show"])
        #expect(!links.contains(name), "interfaces left: \(links)")
        #expect(!FileManager.default.fileExists(atPath: "/run/testbed-\(name)"))
    }

    // MARK: helpers

    /// Round-trip times of 5 echoes from the CN to `target` (after one that warms up the
    /// neighbour caches, whose exchange crosses the element too).
    func roundTrip(_ lab: Lab, to target: String) throws -> (min: Double, avg: Double, max: Double) {
        _ = try lab.run("cn", ["ping", "-c", "1", "-W", "3", target], timeout: 10)
        let output = try lab.exec("cn", "ping", "-c", "5", "-i", "0.2", "-W", "3", "-q", target, timeout: 30)
        // "rtt min/avg/max/mdev = 100.364/100.815/101.357/0.342 ms"
        guard let line = output.split(separator: "\n").first(where: { $0.contains("min/avg/max") }),
              let values = line.split(separator: "=").last?.split(separator: "/").compactMap({ Double($0.trimmingCharacters(in: .whitespaces)) }),
              values.count >= 3 else {
            throw LabError("no RTT in ping's output:\n\(output)")
        }
        #expect(output.contains(" 5 received"), "\(output)")
        return (values[0], values[1], values[2])
    }

    /// One iperf3 TCP stream from the CN to the plain host; the bit rate the receiver saw.
    func iperf(_ lab: Lab, seconds: Int) throws -> Double {
        let server = try lab.spawn("plain", ["iperf3", "-s", "-1", "--forceflush", "-B", Addr.plain4])
        guard server.waitForOutput(timeout: 10, { $0.contains("Server listening") }) else {
            throw LabError("iperf3 server did not start:\n\(server.wait(timeout: 1).summary)")
        }
        let output = try lab.exec("cn", "iperf3", "-c", Addr.plain4, "-t", "\(seconds)", "-J", timeout: Double(seconds + 30))
        server.wait(timeout: 10)
        guard let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
              let end = report["end"] as? [String: Any],
              let received = end["sum_received"] as? [String: Any],
              let rate = (received["bits_per_second"] as? NSNumber)?.doubleValue else {
            throw LabError("no sum_received in iperf3's report:\n\(output)")
        }
        return rate
    }

    /// The round-trip times of ping's reply lines ("time=12.3 ms"), in milliseconds.
    func pingTimes(_ output: String) -> [Double] {
        output.split(separator: "\n").compactMap { line in
            guard let range = line.range(of: "time=") else { return nil }
            return Double(line[range.upperBound...].prefix { $0.isNumber || $0 == "." })
        }
    }

    func median(_ values: [Double]) -> Double {
        values.isEmpty ? .nan : values.sorted()[values.count / 2]
    }

    func number(after label: String, in line: Substring) -> Int {
        guard let range = line.range(of: label) else { return -1 }
        return Int(line[range.upperBound...].prefix { $0.isNumber }) ?? -1
    }

    /// Whether `pid` is a live mat-delay (a zombie or another program is not).
    func isMatDelay(_ pid: Int32) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data, as: UTF8.self).contains("mat-delay")
    }
}
