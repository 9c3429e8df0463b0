#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport

/// mat-ims in the lab's IMS node, and matd configured to use it.
extension Lab {
    /// Starts mat-ims in the lab's IMS node with a key per node; returns the server.
    /// `dualStack`: it listens on both of the IMS node's addresses and each node's key file
    /// holds a key per HoA (`mat-ims keygen --hoa V4 --hoa V6`).
    /// `metricsListen`: mat-ims's `metrics-listen` (its Prometheus endpoint), if any.
    /// `more`: other nodes' IPv4 HoAs by node name, each with a key `keys/<node>.key`.
    func startIMS(dualStack: Bool = false, metricsListen: String? = nil, more: [String: String] = [:]) throws -> Spawned {
        try FileManager.default.createDirectory(atPath: path("keys"), withIntermediateDirectories: true)
        for node in ["vm", "cn"] + more.keys.sorted() {
            let me = Addr.node(node)
            let homes = more[node].map { [$0] } ?? (dualStack ? [me.home4, me.home6] : [me.home4])
            let key = try check([LabPaths.matIMS, "keygen"] + homes.flatMap { ["--hoa", $0] } + ["--zone", "mat.example."],
                                timeout: 10)
            try key.write(toFile: path("keys/\(node).key"), atomically: true, encoding: .utf8)
            chmod(path("keys/\(node).key"), 0o600)
        }
        let config = """
            [server]
            listen = 192.0.2.132:53
            \(dualStack ? "listen = [2001:db8:c::132]:53" : "")
            state-directory = \(path("ims-state"))
            \(metricsListen.map { "metrics-listen = \($0)" } ?? "")
            key-file = \(path("keys/vm.key"))
            key-file = \(path("keys/cn.key"))
            \(more.keys.sorted().map { "key-file = \(path("keys/\($0).key"))" }.joined(separator: "\n"))
            [zone]
            name = mat.example.
            ns = ns.mat.example.
            glue = ns.mat.example. 192.0.2.132

            """
        try config.write(toFile: path("ims.conf"), atomically: true, encoding: .utf8)
        let server = try spawn("ims", [LabPaths.matIMS, "run", "--config", path("ims.conf")])
        guard server.waitForOutput(timeout: 20, { $0.contains("listening on") }) else {
            throw LabError("mat-ims did not start:\n\(server.wait(timeout: 1).summary)")
        }
        return server
    }

    /// A lab with mat-ims, and matd on both nodes, registered; and the mat-ims process.
    /// `environment`: matd's on both nodes.
    static func withIMS(delayElement: Bool = false, environment: [String: String] = [:]) throws -> (lab: Lab, ims: Spawned) {
        let lab = try Lab(delayElement: delayElement)
        if delayElement { try lab.setDelay(rttMilliseconds: 0) }
        let ims = try lab.startIMS()
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm"), environment: environment)
        try lab.startMatd("cn", config: try lab.writeIMSConfig("cn"), environment: environment)
        for node in ["vm", "cn"] where !lab.waitForLog(node, "registered \(Addr.node(node).home4)") {
            throw LabError("matd in \(node) did not register:\n\(lab.matdLog(node))")
        }
        return (lab, ims)
    }

    /// A node configuration with an `[ims]` section and no static peers. `dualStack`:
    /// both HoAs, as docs/config.md's example (its key file then holds a key per HoA, see
    /// `startIMS(dualStack:)`). `servers`: the `[ims]` servers; by default the IMS node's
    /// IPv4 address, and its IPv6 one after it for a dual-stack node. `lifetime`: the
    /// `[ims] lifetime`, `proofLifetime` the `proof-lifetime` (matd's defaults when nil).
    /// `home`: the IPv4 HoA of a node other than the VM and the CN (`startIMS(more:)`).
    func writeIMSConfig(_ node: String, home: String? = nil, dualStack: Bool = false, servers: [String]? = nil,
                        lifetime: Int? = nil, proofLifetime: Int? = nil) throws -> String {
        let me = Addr.node(node)
        let homes = home.map { "home-address = \($0)" }
            ?? (dualStack ? "home-address = \(me.home4)\nhome-address = \(me.home6)" : "home-address = \(me.home4)")
        let prefixes = dualStack ? "domain-prefix = 198.51.100.0/24\ndomain-prefix = 2001:db8:100::/64"
            : "domain-prefix = 198.51.100.0/24"
        let imsServers = servers ?? (dualStack ? ["192.0.2.132", "[2001:db8:c::132]"] : ["192.0.2.132"])
        let text = """
            [node]
            \(homes)
            uplink = eth0
            \(prefixes)
            control-socket = \(socket(node))
            state-directory = \(path("\(node)-state"))
            \(proofLifetime.map { "proof-lifetime = \($0)" } ?? "")
            [ims]
            \(imsServers.map { "server = \($0)" }.joined(separator: "\n"))
            zone = mat.example.
            key-file = \(path("keys/\(node).key"))
            record-ttl = 5
            \(lifetime.map { "lifetime = \($0)" } ?? "")

            """
        let file = path("\(node)-ims.conf")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// The IMS's query counter (SIGUSR1 makes mat-ims log its counters).
    func imsQueries(_ ims: Spawned) throws -> Int {
        let marker = ims.stderr.components(separatedBy: "counter queries ").count
        ims.signal(SIGUSR1)
        guard ims.waitForOutput(timeout: 5, { $0.components(separatedBy: "counter queries ").count > marker }) else {
            throw LabError("mat-ims did not log its counters:\n\(ims.stderr.suffix(2000))")
        }
        let last = ims.stderr.components(separatedBy: "counter queries ").last ?? ""
        guard let value = Int(last.prefix { $0.isNumber }) else { throw LabError("no query count in \(last.prefix(80))") }
        return value
    }

    /// Waits until `node`'s state file (`<node>-state/peers.json`, saved within a second
    /// of a change) names `hoa`.
    func waitForSavedPeer(_ node: String, _ hoa: String, timeout: Double = 20) -> Bool {
        poll(seconds: timeout, every: 0.1) {
            (try? String(contentsOfFile: path("\(node)-state/peers.json"), encoding: .utf8))?.contains(hoa) == true
        }
    }

    /// What a snapshot of `node` holds of its state directory (the sequence counter and
    /// peers.json), taken once its state file names `peer`; ``StateSnapshot/restore()``
    /// writes it back, as restoring the snapshot would.
    func snapshotState(_ node: String, once peer: String) throws -> StateSnapshot {
        guard waitForSavedPeer(node, peer) else { throw LabError("\(node)'s state file never named \(peer)") }
        let directory = path("\(node)-state")
        return StateSnapshot(directory: directory, files: try ["sequence", "peers.json"].map {
            ($0, try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\($0)")))
        })
    }

    /// Waits until matd's log in `node` contains `text`.
    func waitForLog(_ node: String, _ text: String, timeout: Double = 20) -> Bool {
        poll(seconds: timeout, every: 0.1) { matdLog(node).contains(text) }
    }
}

/// A node's state files as a snapshot held them (``Lab/snapshotState(_:once:)``).
struct StateSnapshot {
    let directory: String
    let files: [(name: String, data: Data)]

    /// Writes the files back (the node's matd should not be running).
    func restore() throws {
        for (name, data) in files { try data.write(to: URL(fileURLWithPath: "\(directory)/\(name)")) }
    }
}
