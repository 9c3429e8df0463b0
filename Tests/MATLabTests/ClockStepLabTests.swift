#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// matd's own wall clock stepped back (docs/security.md, D5): 1000 s, far outside TSIG's
/// 300 s fudge, while it runs. The host's clock is the machine's, shared with everything
/// else, so the step is matd's alone, through the test-only `MATD_TEST_CLOCK_STEP`
/// (``ClockStep``), which moves the one wall clock matd reads (TSIG's time and the floor
/// of sequence numbers). The registration after the step is refused once for its time
/// (a signed BADTIME), and the next one, signed with the IMS's time, is taken: seconds,
/// not the fudge or a lifetime.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct ClockStepLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    /// When after matd's start its clock steps back.
    static let stepAfter = 8.0

    @Test func aBackwardStepOfMatdsClockCostsOneRefusedRegistration() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS()
        try lab.startMatd("cn", config: try lab.writeIMSConfig("cn"))
        let started = Date()
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm"),
                          environment: ["MATD_TEST_CLOCK_STEP": "-1000@\(Self.stepAfter)"])
        for node in ["vm", "cn"] where !lab.waitForLog(node, "registered \(Addr.node(node).home4)") {
            throw LabError("matd in \(node) did not register:\n\(lab.matdLog(node))")
        }
        #expect(lab.matdLog("vm").contains("MATD_TEST_CLOCK_STEP is set (for tests only)"), "\(lab.matdLog("vm"))")
        #expect(Date().timeIntervalSince(started) < Self.stepAfter, "registered only after the step: the test shows nothing")
        #expect(!lab.matdLog("vm").contains("refused a request for its time"), "\(lab.matdLog("vm"))")

        // After the step: the VM moves, and registers its new MoA 1000 s behind the IMS.
        let wait = Self.stepAfter + 1 - Date().timeIntervalSince(started)
        if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
        let movedAt = Date()
        try lab.moveVM(to: "b")
        let registered = "registered \(vm.home4) -> 203.0.113.10"
        let deadline = movedAt.addingTimeInterval(60)
        while !lab.matdLog("vm").contains(registered) && Date() < deadline { usleep(50_000) }
        let took = Date().timeIntervalSince(movedAt)
        let log = lab.matdLog("vm")
        #expect(log.contains(registered), "\(log)")
        #expect(log.components(separatedBy: "refused a request for its time").count == 2, "one refusal: \(log)")
        // One refusal, then the IMS's time: well within the 300 s fudge (and the 300 s
        // lifetime), however loaded the machine.
        #expect(took < 15, "registered \(took) s after the move")
        // The CN takes the move (the sequence counter never goes back) and looks the VM up.
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10"))
        print("clock step: matd's clock 1000 s back; the move's registration went in \(String(format: "%.2f", took)) s "
              + "after the move, one refusal for time on the way")
    }
}
