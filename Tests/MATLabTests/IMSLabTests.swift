import Foundation
import MATNode
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
        #expect(lab.waitForLog("vm", "registered \(vm.home4) -> \(vm.mobile4) seq 1"), "\(lab.matdLog("vm"))")
        #expect(lab.waitForLog("cn", "registered \(cn.home4) -> \(cn.mobile4) seq 1"), "\(lab.matdLog("cn"))")

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
        #expect(last % 256 == 0 && last > SequenceStore.floor(atSecond: UInt64(time(nil)) - 600), "\(last)")
    }
}
