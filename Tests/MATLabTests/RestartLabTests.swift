#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATPacket
import MATSignaling
import MATSystem
import Testing

/// Restarting matd keeps HoA sessions: after kill -9 the next matd takes over the
/// datapath it left and the saved peer state; SIGUSR2 hands the datapath over on purpose
/// (exit 75, for a service manager to restart it); SIGTERM still restores the host.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct RestartLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// With the IMS (so the peers are learned, not configured): matd on the VM node is
    /// killed with SIGKILL in the middle of a transfer and started again; the new one
    /// restores the CN's mapping from the state directory and the flow goes on.
    @Test func killNineMidTransferThenStartKeepsTheFlow() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        let file = try lab.randomFile("payload", megabytes: 30)
        let transfer = try PacedTransfer(lab, from: "vm", to: "cn", file: file, megabytesPerSecond: 10)
        let progress = FileProgress(transfer.received)
        defer { progress.stop() }
        #expect(progress.wait(forAtLeast: 1_000_000, timeout: 30), "the flow did not start")
        // The state is saved at most a second after it changes.
        #expect(lab.waitForSavedPeer("vm", cn.home4), "the VM's state file never named the CN")
        let killed = MonotonicClock.seconds()
        try lab.killMatd("vm")
        try lab.startMatd("vm", config: lab.path("vm-ims.conf"))
        let started = MonotonicClock.seconds()
        try transfer.finish()
        progress.stop()
        // The figure (docs/security.md, R3): how long the flow stood still around the restart.
        let stall = progress.longestStall(from: killed, to: started + 30)
        print("kill -9 mid-transfer: matd back \(String(format: "%.2f", started - killed)) s after the kill; "
              + "the flow's longest stall \(stall.map { String(format: "%.2f", $0.seconds) } ?? "?") s, "
              + "ending \(stall.map { String(format: "%.2f", $0.to - killed) } ?? "?") s after the kill")
        #expect(lab.matdLog("vm").contains("restored 1 learned peer(s)"), "\(lab.matdLog("vm"))")
        #expect(try lab.matctl("vm", "peers").contains("\(cn.home4) -> \(cn.mobile4)"))
    }

    /// SIGUSR2 mid-transfer: matd exits 75 leaving mat0, its rules and its nftables table;
    /// the next matd takes them over and the flow goes on. SIGTERM then restores the host.
    @Test func handOverOnSIGUSR2KeepsTheFlowAndStopStillRestoresTheHost() throws {
        let lab = try Lab()
        defer { lab.close() }
        let before = try lab.hostState("vm")
        try lab.startMatd("cn")
        let daemon = try lab.startMatd("vm")
        let file = try lab.randomFile("payload", megabytes: 30)
        let transfer = try PacedTransfer(lab, from: "cn", to: "vm", file: file, megabytesPerSecond: 10)
        sleep(1)
        daemon.signal(SIGUSR2)
        let handedOver = daemon.wait(timeout: 10)
        #expect(handedOver.status == Daemon.handOverExitStatus, "\(handedOver.summary)")
        let between = try lab.hostState("vm")
        #expect(between["ip link"]?.contains(": mat0:") == true)
        #expect(between["nft list ruleset"]?.contains("table netdev matd_mat0") == true)
        try lab.startMatd("vm")
        try transfer.finish()
        let stopped = try lab.stopMatd("vm")
        #expect(stopped.status == 0, "\(stopped.summary)")
        let after = try lab.hostState("vm")
        #expect(stateDifferences(before, after).isEmpty, "after SIGTERM: \(stateDifferences(before, after))")
    }

    /// A VM restored from a snapshot: its state directory goes back to before numbers it
    /// has since sent the CN. Its next alert is still above them (docs/signaling.md,
    /// "Sequence numbers"), so the CN takes it at once instead of refusing it as a replay.
    @Test func aNodeRestoredFromAnOlderSnapshotIsBelievedAtOnce() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let snapshot = try lab.snapshotState("vm", once: cn.home4)
        sleep(1)
        // After the snapshot: a restart (which reserves the next block of numbers) and two
        // moves, whose alerts the CN accepts with numbers from that block.
        try lab.killMatd("vm")
        try lab.startMatd("vm", config: lab.path("vm-ims.conf"))
        for site in ["b", "a"] {
            try lab.moveVM(to: site)
            #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        }
        let before = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        // The restore: matd dies, the state directory goes back, matd starts again (a
        // second later, as a restore takes) and moves: it would reuse the block's numbers.
        try lab.killMatd("vm")
        try snapshot.restore()
        sleep(1)
        try lab.startMatd("vm", config: lab.path("vm-ims.conf"))
        try lab.moveVM(to: "b")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let after = try lab.stats("cn")["signaling"] as? [String: Int] ?? [:]
        #expect(after["refused_replayed", default: 0] == before["refused_replayed", default: 0], "\(before) -> \(after)")
        #expect(after["bindings_adopted", default: 0] > before["bindings_adopted", default: 0], "\(before) -> \(after)")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10*"))
    }

    /// The VM's key was stolen and used: an alert signed with it carries a sequence just
    /// below 2^64, so the CN refuses the VM's own alerts as replays. The VM rotates its key
    /// (a new signing key, registered in the IMS); once the CN's next lookup brings the new
    /// key, the VM's alerts are taken again: sequence numbers count per key.
    @Test func aRotatedKeyEndsAStolenKeysHold() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let keyFile = lab.path("vm-state/signing.key")
        let stolenText = try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let stolen = try SigningKey(rawRepresentation: Array(try #require(Data(base64Encoded: stolenText))))
        let update = SignalCodec.seal(SignalMessage(sequence: UInt64.max - 1, sender: IPAddress(vm.home4)!,
                                                    receiver: IPAddress(cn.home4)!,
                                                    body: .bindingUpdate(moas: [IPAddress(vm.mobile4)!], lifetime: 60)),
                                      with: stolen)
        try lab.exec("vm", "python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(bytes.fromhex(sys.argv[1]), ("\(cn.mobile4)", 7540))
            """, update.map { String(format: "%02x", $0) }.joined())
        usleep(500_000)
        func signaling() throws -> [String: Int] { try lab.stats("cn")["signaling"] as? [String: Int] ?? [:] }
        let held = try signaling()
        try lab.moveVM(to: "b")
        sleep(1)
        let behind = try signaling()
        #expect(behind["refused_replayed", default: 0] > held["refused_replayed", default: 0],
                "the VM's alert was not refused behind the stolen sequence: \(behind)")

        // The rotation: a new key at the next start, registered with it.
        try lab.stopMatd("vm")
        unlink(keyFile)
        try lab.startMatd("vm", config: lab.path("vm-ims.conf"))
        #expect(lab.waitForLog("vm", "created signing key"), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("cn", "\(vm.home4) has a new signing key", timeout: 30), "\(lab.matdLog("cn"))")
        let before = try signaling()
        try lab.moveVM(to: "a")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let after = try signaling()
        #expect(after["refused_replayed", default: 0] == before["refused_replayed", default: 0], "\(before) -> \(after)")
        #expect(after["bindings_adopted", default: 0] > before["bindings_adopted", default: 0], "\(before) -> \(after)")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)*"))
    }
}
