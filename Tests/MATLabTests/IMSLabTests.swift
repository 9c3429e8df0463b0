#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATNode
import MATSystem
import Testing

/// matd with mappings from mat-ims instead of `[peer]` sections: registration on start,
/// lookup on the first packet to an unknown HoA, and the flow carrying on while the IMS
/// is down.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct IMSLabTests {
    @Test func mappingsComeFromTheIMSAndOutliveItsOutage() throws {
        let lab = try Lab()
        defer { lab.close() }
        let server = try lab.startIMS()
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm"))
        try lab.startMatd("cn", config: try lab.writeIMSConfig("cn"))
        let vm = Addr.node("vm"), cn = Addr.node("cn")
        #expect(lab.waitForLog("vm", "registered \(vm.home4) -> \(vm.mobile4) seq "), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("cn", "registered \(cn.home4) -> \(cn.mobile4) seq "), "\(lab.matdLog("cn"))")

        // The CN learns the VM from the IMS on its first packet to it (that packet is lost
        // while the lookup runs), and the VM learns the CN from the CN's alert.
        _ = try lab.run("cn", ["ping", "-c", "2", "-i", "0.5", "-W", "1", "-q", vm.home4], timeout: 20)
        #expect(try lab.ping("vm", cn.home4), "\(lab.matdLog("vm"))")
        #expect(try lab.matctl("vm", "peers").contains("\(cn.home4) -> \(cn.mobile4)*"))
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)*"))

        let file = try lab.randomFile("payload", megabytes: 5)
        let exchange = try lab.tcpTransfer(listener: "cn", address: cn.home4, connector: "vm", sender: "vm", file: file)
        #expect(exchange.listenerSawPeer.contains(vm.home4), "the application saw \(exchange.listenerSawPeer)")

        // The IMS goes away. Past the records' TTL matd keeps the mappings it has, says so,
        // and the flow carries on.
        server.signal(SIGTERM)
        _ = server.wait(timeout: 15)
        sleep(7)
        try lab.tcpTransfer(listener: "vm", address: vm.home4, connector: "cn", sender: "cn", file: file, port: 5003)
        #expect(try lab.ping("vm", cn.home4))
        #expect(lab.waitForLog("vm", "serving stale mapping", timeout: 10), "\(lab.matdLog("vm"))")
        let ims = try #require(try lab.stats("vm")["ims"] as? [String: Any])
        #expect((ims["stale_answers_served"] as? Int ?? 0) > 0, "\(ims)")
        // Sequence numbers are persisted before use, a block of 256 at a time, above the
        // floor of the second the block was reserved in.
        let sequence = try String(contentsOfFile: lab.path("vm-state/sequence"), encoding: .utf8)
        let last = try #require(UInt64(sequence.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(last % 256 == 0 && last > SequenceStore.floor(atSecond: WallClock.seconds() - 600), "\(last)")
    }

    /// Someone on the path answers the CN's lookups (here the CN's configured IMS address
    /// is the forger's) with a mapping of its own, unsigned: the plain host's address as
    /// the VM's MoA, the highest sequence, a key nobody holds. The CN takes none of it.
    /// Pointed at the real IMS (SIGHUP), it has the genuine mapping at the first lookup:
    /// the forgery left nothing behind, not even its sequence number.
    @Test func aForgedIMSAnswerChangesNothing() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS()
        let vm = Addr.node("vm")
        let forger = try lab.spawn("plain", ["python3", LabPaths.forgedIMS, Addr.plain4, Addr.plain4])
        guard forger.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("the forger did not start:\n\(forger.wait(timeout: 1).summary)")
        }
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm"))
        #expect(lab.waitForLog("vm", "registered \(vm.home4)"), "\(lab.matdLog("vm"))")
        let genuine = try String(contentsOfFile: try lab.writeIMSConfig("cn"), encoding: .utf8)
        let forged = genuine.replacingOccurrences(of: "server = 192.0.2.132", with: "server = \(Addr.plain4)")
        #expect(forged != genuine)
        try forged.write(toFile: lab.path("cn-ims.conf"), atomically: true, encoding: .utf8)
        try lab.startMatd("cn", config: lab.path("cn-ims.conf"))

        #expect(!(try lab.ping("cn", vm.home4, count: 3)), "traffic went somewhere on a forged mapping")
        #expect(forger.stdout.contains("answered type 16"), "the forger was never asked:\n\(forger.stdout)")
        let ims = try lab.stats("cn")["ims"] as? [String: Int] ?? [:]
        #expect(ims["ims_unauthenticated_responses", default: 0] > 0, "\(ims)")
        #expect(!(try lab.matctl("cn", "peers")).contains(vm.home4), "a forged mapping was installed")

        try genuine.write(toFile: lab.path("cn-ims.conf"), atomically: true, encoding: .utf8)
        try lab.signalMatd("cn", SIGHUP)
        #expect(lab.waitForLog("cn", "registered"), "\(lab.matdLog("cn"))")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3), "\(lab.matdLog("cn"))")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)*"))
        // The VM's later alerts are still taken: no forged sequence number stands in front of them.
        try lab.moveVM(to: "b")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10*"))
    }
}
