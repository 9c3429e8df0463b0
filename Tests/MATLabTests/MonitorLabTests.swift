#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATPacket
import MATSignaling
import Testing

/// `matctl monitor` while the VM moves: the VM's stream shows the move, the alert, the
/// CN's ack and the registration; the CN's shows the adopted mapping and, after a forged
/// alert, a refusal; `--count` stops it, `--history` replays what matd kept.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct MonitorLabTests {
    @Test func eventsOfAMoveOnBothSides() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        let (vm, cn) = (Addr.node("vm"), Addr.node("cn"))
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let vmMonitor = try Spawned([LabPaths.matctl, "monitor", "--socket", lab.socket("vm")])
        let cnMonitor = try Spawned([LabPaths.matctl, "monitor", "--socket", lab.socket("cn")])
        usleep(500_000)
        try lab.moveVM(to: "b")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        // A forged alert (a key nobody has) to the CN's signaling port.
        let forged = SignalCodec.seal(SignalMessage(sequence: UInt64.max - 1, sender: IPAddress(vm.home4)!,
                                                    receiver: IPAddress(cn.home4)!,
                                                    body: .bindingUpdate(moas: [IPAddress("192.0.2.131")!], lifetime: 60)),
                                      with: SigningKey.generate())
        try lab.exec("plain", "python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(bytes.fromhex(sys.argv[1]), ("\(cn.mobile4)", 7540))
            """, forged.map { String(format: "%02x", $0) }.joined())
        sleep(2)
        vmMonitor.signal(SIGTERM)
        cnMonitor.signal(SIGTERM)
        let vmEvents = try events(vmMonitor.wait(timeout: 10).stdout)
        let cnEvents = try events(cnMonitor.wait(timeout: 10).stdout)

        let kinds = vmEvents.map(\.kind)
        #expect(kinds.first == "move", "\(kinds)")
        // Under load matd may read the uplink between the lab's flush and its new address:
        // a move to "none" first, then the one to site B.
        #expect(vmEvents.contains { $0.kind == "move" && $0.details["mobile"]?.contains("203.0.113.10") == true },
                "\(vmEvents)")
        for kind in ["alert", "ack", "registered"] { #expect(kinds.contains(kind), "no \(kind) in \(kinds)") }
        #expect(vmEvents.first { $0.kind == "alert" }?.details["peer"] == cn.home4, "\(vmEvents)")
        let numbers = vmEvents.map(\.number)
        #expect(numbers == Array(numbers.first!...numbers.last!), "numbers without gaps: \(numbers)")
        #expect(cnEvents.contains { $0.kind == "adopted" && $0.details["peer"] == vm.home4 }, "\(cnEvents)")
        #expect(cnEvents.contains { $0.kind == "refused" && $0.details["refused_bad_signature"] == "1" }, "\(cnEvents)")

        // --history replays what matd kept, and --count stops it.
        let replay = try runCommand([LabPaths.matctl, "monitor", "--history", "--count", "2", "--socket", lab.socket("vm")],
                                    timeout: 10)
        let replayed = replay.succeeded ? try events(replay.stdout).map(\.number) : []
        #expect(replayed == [1, 2], "\(replay.summary)")
    }

    struct Event: Decodable {
        var number: UInt64
        var kind: String
        var details: [String: String]
    }

    func events(_ text: String) throws -> [Event] {
        try text.split(separator: "\n").map { try JSONDecoder().decode(Event.self, from: Data($0.utf8)) }
    }
}
