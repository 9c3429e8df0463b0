#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATSignaling
import MATTestSupport

/// Addresses of the testbed (see the header of Tools/testbed).
enum Addr {
    struct Node {
        let home4: String, home6: String, mobile4: String, mobile6: String
        func home(_ family: Family) -> String { family == .v4 ? home4 : home6 }
        func mobile(_ family: Family) -> String { family == .v4 ? mobile4 : mobile6 }
    }
    enum Family: String, CaseIterable, Sendable { case v4, v6 }

    static let vm = Node(home4: "198.51.100.10", home6: "2001:db8:100::10", mobile4: "192.0.2.10", mobile6: "2001:db8:a::10")
    static let cn = Node(home4: "198.51.100.20", home6: "2001:db8:100::20", mobile4: "192.0.2.130", mobile6: "2001:db8:c::130")
    static let plain4 = "192.0.2.131"
    static let plain6 = "2001:db8:c::131"
    static func plain(_ family: Family) -> String { family == .v4 ? plain4 : plain6 }

    /// Prefixes of the HoA space: none of it may appear on a site link.
    static let homePrefixes = ["198.51.100.", "2001:db8:100:"]

    /// The router's addresses on the site links.
    static let routers = ["192.0.2.1", "2001:db8:a::1", "203.0.113.1", "2001:db8:b::1", "192.0.2.129", "2001:db8:c::1"]

    /// Addresses a site link carries whatever the nodes do: the router's, link-local,
    /// multicast (IGMP and MLD reports, neighbour discovery), unspecified.
    static func isInfrastructure(_ address: String) -> Bool {
        routers.contains(address) || address.hasPrefix("fe80:") || address.hasPrefix("ff02:")
            || address.hasPrefix("224.0.0.") || address == "0.0.0.0" || address == "::"
    }

    static func node(_ name: String) -> Node { name == "vm" ? vm : cn }
}

/// One lab built with Tools/testbed under a unique `LAB=` prefix, and everything the test
/// started in it. `close()` (also run by deinit) stops every process and removes the lab.
final class Lab: @unchecked Sendable {
    /// The LAB prefix, e.g. "mt4821": short, because interface names are built from it
    /// (the router's port for node "plain" is "mt4821-plain", 12 of the 15 bytes allowed).
    let name: String
    /// Scratch directory for configs, sockets, files and captures.
    let directory: String
    private var daemons: [String: Spawned] = [:]
    private var background: [Spawned] = []
    private var closed = false

    /// Builds the lab; with `delayElement`, the CN reaches site C through the delay node
    /// (`DELAY=1 Tools/testbed up`), which forwards nothing until `setDelay` starts mat-delay.
    init(delayElement: Bool = false) throws {
        var candidate: String
        repeat {
            candidate = "mt\(Int.random(in: 1000...9999))"
        } while FileManager.default.fileExists(atPath: "/run/netns/\(candidate)-router")
            || FileManager.default.fileExists(atPath: "/tmp/\(candidate)")
        name = candidate
        directory = "/tmp/\(candidate)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            try check([LabPaths.testbed, "up"], timeout: 60,
                      environment: ["LAB": name, "DELAY": delayElement ? "1" : "0"])
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Stops what the test started and removes the lab's namespaces and files. Idempotent.
    func close() {
        guard !closed else { return }
        closed = true
        for daemon in daemons.values where daemon.isRunning {
            daemon.signal(SIGTERM)
            daemon.wait(timeout: 10)
        }
        for process in background where process.isRunning {
            process.signal(SIGKILL)
            process.wait(timeout: 5)
        }
        daemons.removeAll()
        background.removeAll()
        _ = try? runCommand([LabPaths.testbed, "down"], timeout: 60, environment: ["LAB": name])
        try? FileManager.default.removeItem(atPath: directory)
    }

    func namespace(_ node: String) -> String { "\(name)-\(node)" }

    /// The router's bridge port facing `node` (how Tools/testbed names it).
    func routerPort(_ node: String) -> String { String("\(name)-\(node)".prefix(15)) }

    func path(_ file: String) -> String { "\(directory)/\(file)" }

    // MARK: running things in nodes

    func inNode(_ node: String, _ arguments: [String]) -> [String] {
        ["ip", "netns", "exec", namespace(node)] + arguments
    }

    /// Runs a command in `node` that must succeed; returns its standard output.
    @discardableResult
    func exec(_ node: String, _ arguments: String..., timeout: Double = 120) throws -> String {
        try check(inNode(node, arguments), timeout: timeout)
    }

    /// Runs a command in `node`, whatever its outcome.
    func run(_ node: String, _ arguments: [String], timeout: Double = 120) throws -> CommandResult {
        try runCommand(inNode(node, arguments), timeout: timeout)
    }

    /// Starts a command in `node` in the background; `close()` kills it if still running.
    /// `ip netns exec` execs the command, so the process is the command itself.
    func spawn(_ node: String, _ arguments: [String]) throws -> Spawned {
        let process = try Spawned(inNode(node, arguments))
        background.append(process)
        return process
    }

    /// Starts a UDP flow in `node`: 1000-byte datagrams to `address`:`port`, one every 5 ms
    /// (up to 200 a second) for `seconds`; the process prints `sent N` when it ends.
    func spawnUDPFlow(_ node: String, to address: String, port: Int, seconds: Int) throws -> Spawned {
        try spawn(node, ["python3", "-c", """
            import socket, sys, time
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            end, sent = time.time() + \(seconds), 0
            while time.time() < end:
                s.sendto(b"x" * 1000, (sys.argv[1], \(port)))
                sent += 1
                time.sleep(0.005)
            print(f"sent {sent}", flush=True)
            """, address])
    }

    // MARK: matd

    func socket(_ node: String) -> String { path("\(node).sock") }

    /// A configuration for `node` with the lab's HoAs and the peer's MoAs (or `peerMobile`).
    func writeConfig(_ node: String, peerMobile4: String? = nil, peerMobile6: String? = nil,
                     file: String? = nil) throws -> String {
        let me = Addr.node(node)
        let peer = Addr.node(node == "vm" ? "cn" : "vm")
        let text = """
            # \(node) in lab \(name)
            [node]
            home-address = \(me.home4)
            home-address = \(me.home6)
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            domain-prefix = 2001:db8:100::/64
            control-socket = \(socket(node))
            state-directory = \(path("\(node)-state"))

            [peer]
            home-address = \(peer.home4)
            mobile-address = \(peerMobile4 ?? peer.mobile4)

            [peer]
            home-address = \(peer.home6)
            mobile-address = \(peerMobile6 ?? peer.mobile6)

            """
        let configPath = path(file ?? "\(node).conf")
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        return configPath
    }

    /// Writes a new signing key into `node`'s state directory (mode 0600 in a 0700
    /// directory, as matd writes it), for matd to take at start; returns the key.
    func writeSigningKey(_ node: String) throws -> SigningKey {
        let key = SigningKey.generate()
        try FileManager.default.createDirectory(atPath: path("\(node)-state"), withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let file = path("\(node)-state/signing.key")
        try (Data(key.rawRepresentation).base64EncodedString() + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)
        return key
    }

    /// Starts matd in `node` and waits until its control socket answers, for `timeout`
    /// seconds. `environment` is added to matd's (a test-only variable such as
    /// `MATD_TEST_CLOCK_STEP`).
    @discardableResult
    func startMatd(_ node: String, config: String? = nil, environment: [String: String] = [:],
                   timeout: Double = 20) throws -> Spawned {
        if let old = daemons[node], old.isRunning { throw LabError("matd already runs in \(node)") }
        let configPath = try config ?? writeConfig(node)
        let daemon = try Spawned(inNode(node, [LabPaths.matd, "run", "--config", configPath]), environment: environment)
        daemons[node] = daemon
        let answered = try poll(seconds: timeout) {
            if !daemon.isRunning {
                throw LabError("matd in \(node) exited at start:\n\(daemon.wait(timeout: 1).summary)")
            }
            return (try? runCommand([LabPaths.matctl, "status", "--socket", socket(node)], timeout: 10))?.succeeded == true
        }
        if answered { return daemon }
        throw LabError("matd in \(node) did not answer on \(socket(node)) within \(Int(timeout)) s:\n\(daemon.stderr)")
    }

    /// Sends SIGTERM to matd in `node` and waits for it to exit.
    @discardableResult
    func stopMatd(_ node: String) throws -> CommandResult {
        guard let daemon = daemons.removeValue(forKey: node) else { throw LabError("no matd in \(node)") }
        daemon.signal(SIGTERM)
        let result = daemon.wait(timeout: 15)
        if result.signalled { throw LabError("matd in \(node) did not stop on SIGTERM:\n\(result.summary)") }
        return result
    }

    /// Kills matd in `node` with SIGKILL, as a crash would.
    func killMatd(_ node: String) throws {
        guard let daemon = daemons.removeValue(forKey: node) else { throw LabError("no matd in \(node)") }
        daemon.signal(SIGKILL)
        daemon.wait(timeout: 15)
    }

    func matdLog(_ node: String) -> String { daemons[node]?.stderr ?? "" }

    /// Sends `signal` to matd in `node`.
    func signalMatd(_ node: String, _ signal: Int32) throws {
        guard let daemon = daemons[node] else { throw LabError("no matd in \(node)") }
        daemon.signal(signal)
    }

    /// Whether matd in `node` is still running.
    func isMatdRunning(_ node: String) -> Bool { daemons[node]?.isRunning ?? false }

    /// `matctl ARGS --socket <node's socket>`; must succeed.
    func matctl(_ node: String, _ arguments: String...) throws -> String {
        try check([LabPaths.matctl] + arguments + ["--socket", socket(node)], timeout: 20)
    }

    /// The daemon's counters, from `matctl stats --json`.
    func stats(_ node: String) throws -> [String: Any] {
        let text = try matctl(node, "stats", "--json")
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw LabError("matctl stats --json is not a JSON object: \(text)")
        }
        return object
    }

    // MARK: lab variations

    /// (Re)starts the delay element of a lab built with `delayElement`: mat-delay of this
    /// build, `rttMilliseconds / 2` each way (`Tools/testbed delay`).
    func setDelay(rttMilliseconds: Double) throws {
        try check([LabPaths.testbed, "delay", String(rttMilliseconds)], timeout: 30,
                  environment: ["LAB": name, "MAT_DELAY": LabPaths.matDelay])
    }

    /// Turns transmit checksum offload off on `node`'s uplink, so a capture sees the
    /// checksums a real NIC would send (DESIGN.md section 4).
    func checksumOffloadOff(_ nodes: String...) throws {
        for node in nodes { try exec(node, "ethtool", "-K", "eth0", "tx", "off") }
    }

    /// Puts the VM node at home: its uplink carries only the HoAs (MoA == HoA) and the
    /// router routes them to site A.
    func vmAtHome() throws {
        try exec("vm", "ip", "addr", "del", "192.0.2.10/25", "dev", "eth0")
        try exec("vm", "ip", "-6", "addr", "del", "2001:db8:a::10/64", "dev", "eth0")
        try exec("vm", "ip", "addr", "add", "198.51.100.10/32", "dev", "eth0")
        try exec("vm", "ip", "-6", "addr", "add", "2001:db8:100::10/128", "dev", "eth0", "nodad")
        try exec("vm", "ip", "route", "replace", "default", "via", "192.0.2.1", "dev", "eth0", "onlink")
        try exec("vm", "ip", "-6", "route", "replace", "default", "via", "2001:db8:a::1", "dev", "eth0", "onlink")
        try exec("router", "ip", "route", "add", "198.51.100.10/32", "dev", "br-a")
        try exec("router", "ip", "-6", "route", "add", "2001:db8:100::10/128", "dev", "br-a")
    }

    // MARK: traffic

    /// A file of random bytes in the lab directory.
    func randomFile(_ name: String, megabytes: Int) throws -> String {
        let file = path(name)
        try check(["sh", "-c", "head -c \(megabytes)M /dev/urandom > '\(file)'"])
        return file
    }

    func sha256(_ file: String) throws -> String {
        let output = try check(["sha256sum", file])
        return String(output.prefix(64))
    }

    /// What a TCP or UDP exchange showed the two applications.
    struct Exchange {
        /// The peer address the listening application saw.
        var listenerSawPeer: String
        /// The local address the connecting application had.
        var connectorLocal: String
    }

    /// One TCP connection: `listener` listens on `address`, `connector` connects to it, and
    /// `sender` (one of the two) sends `file`; the bytes received must hash the same.
    @discardableResult
    func tcpTransfer(listener: String, address: String, connector: String, sender: String,
                     file: String, port: Int = 5001) throws -> Exchange {
        let received = path("received-\(UInt32.random(in: 0...UInt32.max))")
        defer { unlink(received) }
        let listenerMode = sender == listener ? "send" : "recv"
        let connectorMode = sender == connector ? "send" : "recv"
        let server = try spawn(listener, ["python3", LabPaths.labPeer, "tcp-listen", address, "\(port)",
                                          listenerMode, listenerMode == "send" ? file : received])
        guard server.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("tcp listener in \(listener) did not start:\n\(server.wait(timeout: 1).summary)")
        }
        let client = try run(connector, ["python3", LabPaths.labPeer, "tcp-connect", address, "\(port)",
                                         connectorMode, connectorMode == "send" ? file : received], timeout: 120)
        let serverResult = server.wait(timeout: 30)
        guard client.succeeded, serverResult.succeeded else {
            throw LabError("tcp \(connector) -> \(listener) [\(address)] failed:\n\(client.summary)\n\(serverResult.summary)")
        }
        let sent = try sha256(file), got = try sha256(received)
        guard sent == got else {
            throw LabError("tcp \(sender) -> \(sender == listener ? connector : listener) [\(address)]: SHA-256 \(got) of the received bytes differs from \(sent)")
        }
        return Exchange(listenerSawPeer: Self.field("peer", in: serverResult.stderr),
                        connectorLocal: Self.field("local", in: client.stderr))
    }

    /// `count` numbered UDP datagrams from `client` to an echo server in `server` at
    /// `address`; every echo must come back byte for byte.
    @discardableResult
    func udpEcho(client: String, server: String, address: String, count: Int = 200, port: Int = 5002) throws -> Exchange {
        let echo = try spawn(server, ["python3", LabPaths.labPeer, "udp-echo", address, "\(port)", "\(count)"])
        guard echo.waitForOutput(timeout: 10, { $0.contains("listening") }) else {
            throw LabError("udp echo in \(server) did not start:\n\(echo.wait(timeout: 1).summary)")
        }
        let ping = try run(client, ["python3", LabPaths.labPeer, "udp-ping", address, "\(port)", "\(count)"], timeout: 120)
        let echoResult = echo.wait(timeout: 10)
        guard ping.succeeded, echoResult.succeeded, ping.stdout.contains("udp ok \(count)") else {
            throw LabError("udp \(client) -> \(server) [\(address)] failed:\n\(ping.summary)\n\(echoResult.summary)")
        }
        return Exchange(listenerSawPeer: Self.field("peer", in: echoResult.stderr), connectorLocal: "")
    }

    /// ICMP echo from `node` to `address`; true when every reply came back.
    func ping(_ node: String, _ address: String, count: Int = 3) throws -> Bool {
        let result = try run(node, ["ping", "-c", "\(count)", "-i", "0.2", "-W", "2", "-q", address], timeout: 30)
        return result.succeeded && result.stdout.contains(" \(count) received")
    }

    /// A UDP datagram to a closed port of `address`; true when the port-unreachable error
    /// came back to the application (ECONNREFUSED).
    func udpToClosedPort(_ node: String, _ address: String, port: Int = 5999) throws -> Bool {
        let result = try run(node, ["python3", LabPaths.labPeer, "udp-closed", address, "\(port)"], timeout: 30)
        return result.succeeded && result.stdout.contains("refused")
    }

    private static func field(_ key: String, in text: String) -> String {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count >= 2 && parts[0] == key { return String(parts[1]) }
        }
        return "?"
    }

    // MARK: host state

    /// Everything matd may change in `node`: addresses, links, routes and rules of both
    /// families, the nftables ruleset and the network sysctls of the namespace.
    func hostState(_ node: String) throws -> [String: String] {
        var state: [String: String] = [:]
        let commands: [(String, [String])] = [
            ("ip link", ["ip", "-o", "link", "show"]),
            ("ip addr", ["ip", "-o", "addr", "show"]),
            ("ip -4 route", ["ip", "-4", "route", "show", "table", "all"]),
            ("ip -6 route", ["ip", "-6", "route", "show", "table", "all"]),
            ("ip -4 rule", ["ip", "-4", "rule", "show"]),
            ("ip -6 rule", ["ip", "-6", "rule", "show"]),
            ("nft list ruleset", ["nft", "list", "ruleset"]),
        ]
        for (key, arguments) in commands { state[key] = try check(inNode(node, arguments)) }
        // Only the network sysctls are per namespace; drop counters that move by themselves.
        let sysctls = try exec(node, "sysctl", "-a").split(separator: "\n")
            .filter { $0.hasPrefix("net.") && !$0.contains("nf_conntrack_count") }
        state["sysctl net"] = sysctls.joined(separator: "\n")
        return state
    }

    /// The value of one sysctl in `node`.
    func sysctl(_ node: String, _ key: String) throws -> String {
        try exec(node, "sysctl", "-n", key).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The lines that differ between two host-state snapshots, by key (only keys that differ).
func changedLines(_ before: [String: String], _ after: [String: String]) -> [String: [String]] {
    var changed: [String: [String]] = [:]
    for key in Set(before.keys).union(after.keys) where before[key] != after[key] {
        let left = Set((before[key] ?? "").split(separator: "\n").map(String.init))
        let right = Set((after[key] ?? "").split(separator: "\n").map(String.init))
        changed[key] = left.symmetricDifference(right).sorted()
    }
    return changed
}

/// The keys of two host-state snapshots that differ, with the differing lines.
func stateDifferences(_ before: [String: String], _ after: [String: String]) -> [String: String] {
    var differences: [String: String] = [:]
    for key in Set(before.keys).union(after.keys) where before[key] != after[key] {
        differences[key] = lineDifference(before[key] ?? "", after[key] ?? "")
    }
    return differences
}
