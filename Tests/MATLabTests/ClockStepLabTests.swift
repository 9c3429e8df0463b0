#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATSystem
import MATTestSupport
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
        let movedAt = MonotonicClock.seconds()
        try lab.moveVM(to: "b")
        let registered = "registered \(vm.home4) -> 203.0.113.10"
        _ = poll(seconds: movedAt + 60 - MonotonicClock.seconds()) { lab.matdLog("vm").contains(registered) }
        let took = MonotonicClock.seconds() - movedAt
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

    /// A guest restored from a snapshot whose clock still reads the snapshot's time
    /// (docs/security.md, S2 and Open: rollback). Its state directory goes back to a copy
    /// taken before a restart and two moves the CN took, and matd's clock reads the copy's
    /// time (`MATD_TEST_CLOCK_STEP`). It moves before its first exchange with the IMS (out
    /// of its reach until the CN has refused the move's alert): the alert's number comes
    /// from the snapshot's clock, below the numbers the CN took since, and the CN refuses
    /// it and its retransmissions as replays. The next registration (at once, by a rebind)
    /// is refused for its time (the IMS has a newer one from this key) and teaches matd the
    /// IMS's time; matd then sends the waiting alert again with a number from that time,
    /// and the CN takes it. Without that, the CN refuses every alert until the next move.
    @Test func aRestoredGuestWithItsOldClockIsBelievedAtItsFirstExchangeWithTheIMS() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let snapshot = try lab.snapshotState("vm", once: cn.home4)
        let snapshotTime = Date()
        // After the snapshot: 8 s on, a restart and two moves the CN takes, with numbers of
        // those seconds; the IMS takes their registrations.
        sleep(8)
        try lab.killMatd("vm")
        try lab.startMatd("vm", config: lab.path("vm-ims.conf"))
        for site in ["b", "a"] {
            try lab.moveVM(to: site)
            #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        }
        func signaling() throws -> [String: Int] { try lab.stats("cn")["signaling"] as? [String: Int] ?? [:] }

        // The restore: the state directory goes back, the IMS is out of reach, and matd
        // starts with its clock at the snapshot's time.
        try lab.killMatd("vm")
        try snapshot.restore()
        try lab.exec("vm", "nft", "add table inet lab-no-ims; add chain inet lab-no-ims out { type filter hook output priority 0; }; "
                     + "add rule inet lab-no-ims out ip daddr 192.0.2.132 reject")
        // 5 s before the snapshot's time: the move below comes a few seconds after matd's
        // start, and its clock must still be behind the restart's numbers (8 s after the
        // snapshot) however slowly a loaded machine gets there.
        let back = Int(Date().timeIntervalSince(snapshotTime).rounded(.up)) + 5
        let before = try signaling()
        try lab.startMatd("vm", config: lab.path("vm-ims.conf"), environment: ["MATD_TEST_CLOCK_STEP": "-\(back)@0"])
        #expect(lab.waitForLog("vm", "registering \(vm.home4) failed", timeout: 30), "\(lab.matdLog("vm"))")
        try lab.moveVM(to: "b")
        let refused = try poll(seconds: 8) {
            try signaling()["refused_replayed", default: 0] > before["refused_replayed", default: 0]
        }
        try lab.exec("vm", "nft", "delete table inet lab-no-ims")
        #expect(refused, "the CN did not refuse the restored guest's alert: the test shows nothing")
        // The IMS is back. The registrations the block refused wait out their backoff; a
        // rebind registers at once (its own alert is numbered by the old clock too, and
        // refused): the first exchange with the IMS, which corrects the clock.
        let exchangeAt = MonotonicClock.seconds()
        // Its outcome is not the point (it fails when no peer acknowledges): the CN's counters are.
        _ = try runCommand([LabPaths.matctl, "rebind", "--socket", lab.socket("vm")], timeout: 40)

        var after = try signaling()
        _ = try poll(seconds: exchangeAt + 30 - MonotonicClock.seconds(), every: 0.1) {
            after = try signaling()
            return after["bindings_adopted", default: 0] != before["bindings_adopted", default: 0]
        }
        let took = MonotonicClock.seconds() - exchangeAt
        let log = lab.matdLog("vm")
        #expect(after["bindings_adopted", default: 0] > before["bindings_adopted", default: 0],
                "the CN took no alert of the restored guest: \(before) -> \(after)\n\(log)")
        #expect(log.contains("refused a request for its time"), "\(log)")
        #expect(log.contains("sent again with numbers from the IMS's"), "\(log)")
        // One refused registration, the registration again, and the renumbered alert's
        // challenge: well within an alert's retransmissions (9.4 s), however loaded the machine.
        #expect(took < 9.4, "the CN took the alert \(took) s after the rebind")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10*"))
        print("restored guest with its snapshot's clock (\(back) s back): the CN refused \(after["refused_replayed", default: 0] - before["refused_replayed", default: 0]) "
              + "alert(s) as replays and took the renumbered one \(String(format: "%.2f", took)) s after the first exchange with the IMS began")
    }
}
