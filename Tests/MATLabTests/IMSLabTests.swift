import Foundation
import Testing

/// matd with mappings from mat-ims instead of `[peer]` sections: registration on start,
/// lookup on the first packet to an unknown HoA, and the flow carrying on while the IMS
/// is down.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct IMSLabTests {
    /// Starts mat-ims in the lab's IMS node with a key per node; returns the server.
    func startIMS(_ lab: Lab) throws -> Spawned {
        try FileManager.default.createDirectory(atPath: lab.path("keys"), withIntermediateDirectories: true)
        for (node, name) in [("vm", "10.100.51.198.hoa.mat.example."), ("cn", "20.100.51.198.hoa.mat.example.")] {
            let key = try check([LabPaths.matIMS, "keygen", name], timeout: 10)
            try key.write(toFile: lab.path("keys/\(node).key"), atomically: true, encoding: .utf8)
            chmod(lab.path("keys/\(node).key"), 0o600)
        }
        let config = """
            [server]
            listen = 192.0.2.132:53
            state-directory = \(lab.path("ims-state"))
            key-file = \(lab.path("keys/vm.key"))
            key-file = \(lab.path("keys/cn.key"))
            [zone]
            name = mat.example.
            ns = ns.mat.example.
            glue = ns.mat.example. 192.0.2.132

            """
        try config.write(toFile: lab.path("ims.conf"), atomically: true, encoding: .utf8)
        let server = try lab.spawn("ims", [LabPaths.matIMS, "run", "--config", lab.path("ims.conf")])
        guard server.waitForOutput(timeout: 20, { $0.contains("listening on") }) else {
            throw LabError("mat-ims did not start:\n\(server.wait(timeout: 1).summary)")
        }
        return server
    }

    /// A node configuration with an `[ims]` section and no static peers.
    func writeIMSConfig(_ lab: Lab, _ node: String) throws -> String {
        let me = Addr.node(node)
        let text = """
            [node]
            home-address = \(me.home4)
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            control-socket = \(lab.socket(node))
            state-directory = \(lab.path("\(node)-state"))
            [ims]
            server = 192.0.2.132
            zone = mat.example.
            key-file = \(lab.path("keys/\(node).key"))
            record-ttl = 5

            """
        let path = lab.path("\(node)-ims.conf")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func waitForLog(_ lab: Lab, _ node: String, _ text: String, timeout: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if lab.matdLog(node).contains(text) { return true }
            usleep(100_000)
        }
        return false
    }

    @Test func mappingsComeFromTheIMSAndOutliveItsOutage() throws {
        let lab = try Lab()
        defer { lab.close() }
        let server = try startIMS(lab)
        try lab.startMatd("vm", config: try writeIMSConfig(lab, "vm"))
        try lab.startMatd("cn", config: try writeIMSConfig(lab, "cn"))
        let vm = Addr.node("vm"), cn = Addr.node("cn")
        #expect(waitForLog(lab, "vm", "registered \(vm.home4) -> \(vm.mobile4) seq 1"), "\(lab.matdLog("vm"))")
        #expect(waitForLog(lab, "cn", "registered \(cn.home4) -> \(cn.mobile4) seq 1"), "\(lab.matdLog("cn"))")

        // Each side learns the other from the IMS on its first packet to it (that packet
        // is lost while the lookup runs; the ones after it go through).
        _ = try lab.run("cn", ["ping", "-c", "2", "-i", "0.5", "-W", "1", "-q", vm.home4], timeout: 20)
        _ = try lab.run("vm", ["ping", "-c", "2", "-i", "0.5", "-W", "1", "-q", cn.home4], timeout: 20)
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
        #expect(waitForLog(lab, "vm", "serving stale mapping", timeout: 10), "\(lab.matdLog("vm"))")
        let ims = try #require(try lab.stats("vm")["ims"] as? [String: Any])
        #expect((ims["stale_answers_served"] as? Int ?? 0) > 0, "\(ims)")
        // The sequence number was persisted before use.
        let sequence = try String(contentsOfFile: lab.path("vm-state/sequence"), encoding: .utf8)
        #expect(sequence.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
    }
}
