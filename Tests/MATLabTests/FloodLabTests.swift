#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATSystem
import Testing

/// A signaling flood from spoofed sources at the CN while the VM moves (docs/signaling.md,
/// "Under load"): the move's gap stays that of a quiet move plus about one round trip,
/// the IMS queries the forged senders cause stay bounded, and matd's CPU time is reported.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct FloodLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    @Test func aSpoofedFloodAtTheCorrespondentDoesNotDelayAMove() throws {
        let (lab, ims) = try Lab.withIMS()
        defer { lab.close() }
        // A probe every 10 ms from the CN to the VM's HoA, echoed: the gap in the echoes is
        // how long the move cut the two off.
        let echo = try lab.spawn("vm", ["python3", LabPaths.handoff, "echo", vm.home4, "5301"])
        guard echo.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("echo did not start:\n\(echo.wait(timeout: 1).summary)")
        }
        let probe = try lab.spawn("cn", ["python3", LabPaths.handoff, "probe", vm.home4, "5301", "24"])
        sleep(3)

        let quietMove = MonotonicClock.seconds()
        try lab.moveVM(to: "b")
        sleep(4)

        let queriesBefore = try lab.imsQueries(ims)
        let cpuBefore = try matdCPUSeconds(lab, "cn")
        let flood = try lab.spawn("plain", ["python3", LabPaths.signalFlood, cn.mobile4, "7540", cn.home4,
                                            "203.0.113.128/25", "198.51.100.0/24", "5000", "12"])
        sleep(3)
        let floodedMove = MonotonicClock.seconds()
        try lab.moveVM(to: "a")
        let floodResult = flood.wait(timeout: 30)
        let cpuAfter = try matdCPUSeconds(lab, "cn")
        let queriesAfter = try lab.imsQueries(ims)
        let probeResult = probe.wait(timeout: 30)
        echo.signal(SIGTERM)

        #expect(floodResult.succeeded, "\(floodResult.summary)")
        let sent = Int(floodResult.stdout.split(separator: " ").dropFirst().first ?? "") ?? 0
        #expect(sent >= 5_000 * 12 * 8 / 10, "the flood sent only \(sent) datagrams: \(floodResult.stdout)")
        let echoes = try echoTimes(probeResult)
        let quietGap = largestGap(echoes, around: quietMove)
        let floodedGap = largestGap(echoes, around: floodedMove)
        let signaling = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        let cpu = cpuAfter - cpuBefore
        print("flood: \(sent) datagrams in 12 s; gap quiet \(Int(quietGap * 1000)) ms, flooded \(Int(floodedGap * 1000)) ms;"
              + " IMS queries during the flood \(queriesAfter - queriesBefore); matd CPU \(String(format: "%.2f", cpu)) s"
              + " (\(Int(cpu / 12 * 100))% of a core); CN signaling \(signaling)")
        // One round trip here is under a millisecond; the allowance is for a loaded 2-core
        // machine. Before cookies the same flood stretched the gap to seconds.
        #expect(floodedGap <= quietGap + 0.25, "gap \(floodedGap) s under the flood, \(quietGap) s without")
        // Forged senders' keys: at most 10 lookups a second after a burst of 20, each at
        // most a query per address family; registrations and refreshes add a few.
        // The window is a little longer than the flood (13 s).
        #expect(queriesAfter - queriesBefore <= 2 * (20 + 10 * 13) + 30, "IMS queries: \(queriesAfter - queriesBefore)")
        #expect(signaling["cookies_sent", default: 0] > 1_000, "\(signaling)")
        // Whether the VM's alert met the CN under load (asked for a cookie, sent again with
        // it) depends on the flood's pace at that moment: on a loaded machine the generator
        // stalls and the shared budget refills. The gap above is what must hold either way;
        // CookieTests prove the exchange itself.
        let vmSignaling = try lab.stats("vm")["signaling"] as? [String: Int] ?? [:]
        print("flood: the VM received \(vmSignaling["cookies_received", default: 0]) cookie(s)")
        #expect(signaling["refused_bad_signature", default: 0] + signaling["refused_unknown_key", default: 0] > 0)
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)*"))
        #expect(cpu < 12 * 0.9, "matd used \(cpu) s of CPU in 12 s")
    }

    /// User plus system CPU time of matd in `node`, from /proc.
    func matdCPUSeconds(_ lab: Lab, _ node: String) throws -> Double {
        let pids = try check(["ip", "netns", "pids", lab.namespace(node)]).split(separator: "\n")
        for pid in pids {
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
                  comm.trimmingCharacters(in: .whitespacesAndNewlines) == "matd" else { continue }
            let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
            // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
            let fields = stat[stat.range(of: ")")!.upperBound...].split(separator: " ")
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            return (Double(fields[11])! + Double(fields[12])!) / ticks
        }
        throw LabError("no matd process in \(node)")
    }

    func echoTimes(_ probe: CommandResult) throws -> [Double] {
        guard probe.succeeded,
              let object = try JSONSerialization.jsonObject(with: Data(probe.stdout.utf8)) as? [String: Any],
              let received = object["received"] as? [Double] else {
            throw LabError("probe failed:\n\(probe.summary)")
        }
        return received
    }

    /// The largest silence between echoes from 0.5 s before to 4 s after `moment`.
    func largestGap(_ echoes: [Double], around moment: Double) -> Double {
        let window = echoes.filter { $0 >= moment - 0.5 && $0 <= moment + 4 }
        return zip(window, window.dropFirst()).map { $1 - $0 }.max() ?? 4.5
    }
}
