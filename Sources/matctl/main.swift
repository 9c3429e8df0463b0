import ArgumentParser
import Foundation
import MATConfig
import MATNode

/// `matctl`: asks a running matd about its state over the control socket.
@main
struct MatCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matctl",
        abstract: "Query and steer a running matd.",
        version: MATVersion.current,
        subcommands: [Status.self, Peers.self, Stats.self, Rebind.self, RotateKey.self, Deregister.self, Monitor.self, Doctor.self])
}

/// A failure at run time (matd unreachable, or it refused the request), as opposed to a
/// usage error: ArgumentParser prints it as one line, without the usage text, and exits 1,
/// so scripts can tell "matd said no" (1) from "wrong arguments" (64).
struct ControlFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Control socket of the daemon.")
    var socket = NodeConfig.defaultControlSocket

    @Flag(name: .long, help: "Print the daemon's reply as JSON.")
    var json = false

    /// Sends `command` and returns the reply; throws `ControlFailure` when matd cannot be
    /// reached or answers with an error.
    func ask(_ command: ControlRequest.Command) throws -> ControlReply {
        try ask(ControlRequest(command: command))
    }

    func ask(_ request: ControlRequest, timeout: Int = 5) throws -> ControlReply {
        let reply: ControlReply
        do {
            reply = try sendControlRequest(request, to: socket, timeout: timeout)
        } catch {
            throw ControlFailure("cannot reach matd at \(socket): \(error) (is matd running? see --socket)")
        }
        if let error = reply.error { throw ControlFailure("matd: \(error)") }
        return reply
    }

    func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Addresses, uplinks, TUN device and offloads.")
    @OptionGroup var options: CommonOptions

    func run() throws {
        guard let status = try options.ask(.status).status else { throw ControlFailure("matd sent no status") }
        if options.json { return try options.printJSON(status) }
        print("tun device:      \(status.tunDevice) (offloads: \(status.offloads.isEmpty ? "none" : status.offloads))")
        print("home addresses:  \(status.homeAddresses.joined(separator: ", "))")
        print("mobile addresses: \(status.mobileAddresses.isEmpty ? "none" : status.mobileAddresses.joined(separator: ", "))")
        if let published = status.publicAddresses {
            print("public addresses: \(published.isEmpty ? "none yet (asking the IMS)" : published.joined(separator: ", ")) (behind NAT)")
        }
        print("uplinks:         \(status.uplinks.joined(separator: ", "))")
        print("domain:          \(status.domainPrefixes.joined(separator: ", "))")
        if let fast = status.kernelFastPath { print("kernel fast path: \(fast)") }
        print("peers:           \(status.peerCount)")
        print("uptime:          \(status.uptimeSeconds) s")
        print("public key:      \(status.publicKey)")
    }
}

struct Peers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Known peers and their mappings.")
    @OptionGroup var options: CommonOptions

    func run() throws {
        // The reply lists every mapping: a node with 100,000 needs more than a status does.
        let peers = try options.ask(ControlRequest(command: .peers), timeout: 60).peers ?? []
        if options.json { return try options.printJSON(peers) }
        if peers.isEmpty { return print("no peers") }
        for peer in peers {
            let moas = peer.mobileAddresses.map { binding in
                let mark = binding.address == peer.preferred ? "*" : ""
                return "\(binding.address)\(mark) (prio \(binding.priority)\(binding.flags.isEmpty ? "" : ", \(binding.flags)"))"
            }
            var line = "\(peer.homeAddress) -> \(moas.joined(separator: ", ")) seq \(peer.sequence)"
            if let alert = peer.alert { line += " alert \(alert)" }
            if let ago = peer.lastAckSecondsAgo { line += " last-ack \(String(format: "%.1f", ago)) s ago" }
            if let rtt = peer.roundTripMilliseconds { line += " rtt \(rtt) ms" }
            if let path = peer.path { line += " path \(path)" }
            print(line)
        }
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Packet and byte counters, drops by reason.",
        discussion: """
            --prometheus prints them in the Prometheus text format, with the per-peer gauges of \
            `matctl peers`: for node_exporter's textfile collector, write it to a temporary file \
            and rename it into the collector's directory.
            """)
    @OptionGroup var options: CommonOptions

    @Flag(name: .long, help: "Print the counters in the Prometheus text exposition format.")
    var prometheus = false

    func validate() throws {
        if prometheus && options.json { throw ValidationError("--prometheus and --json exclude each other") }
    }

    func run() throws {
        guard let stats = try options.ask(.stats).stats else { throw ControlFailure("matd sent no stats") }
        if prometheus {
            let peers = try options.ask(.peers).peers ?? []
            let status = try options.ask(.status).status
            return print(PrometheusExposition.render(stats: stats, peers: peers, status: status), terminator: "")
        }
        if options.json { return try options.printJSON(stats) }
        print("outbound: \(stats.outboundPackets) packets, \(stats.outboundBytes) bytes")
        print("inbound:  \(stats.inboundPackets) packets, \(stats.inboundBytes) bytes")
        print("super-packets: \(stats.superPackets)")
        if let fast = stats.kernelFastPath {
            print("kernel fast path (not in the counts above): \(fast.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
        if let encapsulation = stats.encapsulation {
            let nonzero = encapsulation.filter { $0.value > 0 }.sorted { $0.key < $1.key }
            print("encapsulation: \(nonzero.isEmpty ? "nothing yet" : nonzero.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
        if let relay = stats.relay {
            print("relay:    \(relay.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
        if let listing = stats.peerListing {
            print("last peer listing: \(listing.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
        let drops = stats.drops.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        print("drops:    \(drops.isEmpty ? "none" : drops.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        if let ims = stats.ims {
            print("ims:      \(ims.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
        if let signaling = stats.signaling {
            let nonzero = signaling.filter { $0.value > 0 }.sorted { $0.key < $1.key }
            print("signaling: \(nonzero.isEmpty ? "nothing yet" : nonzero.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
    }
}

struct Rebind: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-bind after a migration: take the current MoA, register it, alert every peer.",
        discussion: """
            Returns when the IMS has the new mapping, every peer has been alerted (a move's \
            alerts go out a few hundred at a time) and has acknowledged it (or stopped answering). Idempotent: call it again and nothing changes but the \
            sequence numbers. Exits non-zero when the rebind fails or a peer did not answer.
            """)
    @OptionGroup var options: CommonOptions

    @Option(name: .long, help: "Take the MoA from this uplink only.")
    var interface: String?

    @Option(name: .long, help: "Use this address of an uplink as the MoA.")
    var moa: String?

    func run() throws {
        let request = ControlRequest(command: .rebind, interface: interface, mobileAddress: moa)
        guard let report = try options.ask(request, timeout: 45).rebind else { throw ControlFailure("matd sent no report") }
        if options.json {
            try options.printJSON(report)
        } else {
            print("mobile addresses: \(report.mobileAddresses.joined(separator: ", "))")
            let registration = report.registered.map { $0 ? "confirmed" : "FAILED (peers alerted anyway)" } ?? "no IMS key"
            print("registration:     \(registration)")
            print("peers:            \(report.alerted) alerted, \(report.acknowledged.count) acknowledged, "
                + "\(report.unanswered.count) unanswered")
            print("acknowledged:     \(report.acknowledged.isEmpty ? "none" : report.acknowledged.joined(separator: ", "))")
            if !report.unanswered.isEmpty { print("unanswered:       \(report.unanswered.joined(separator: ", "))") }
            print("took:             \(report.milliseconds) ms")
        }
        if report.registered == false || !report.unanswered.isEmpty { throw ExitCode(1) }
    }
}

struct RotateKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-key",
        abstract: "Give this node a new signing key and register it with the IMS.",
        discussion: """
            Writes a new key to the signing-key file, signs with it from then on and \
            registers it; returns once the IMS has the new key. Peers take it at their next \
            lookup of this node (within its record TTL); alerts signed with the old key are \
            refused wherever the new one is known. Exits non-zero when the IMS did not \
            confirm the new key (matd goes on trying).
            """)
    @OptionGroup var options: CommonOptions

    func run() throws {
        guard let report = try options.ask(ControlRequest(command: .rotateKey), timeout: 45).keyRotation else {
            throw ControlFailure("matd sent no report")
        }
        if options.json {
            try options.printJSON(report)
        } else {
            print("public key:   \(report.publicKey)")
            print("was:          \(report.previousKey)")
            print("registration: \(report.registered.map { $0 ? "confirmed" : "NOT CONFIRMED" } ?? "no IMS key")")
            print("took:         \(report.milliseconds) ms")
        }
        if report.registered == false { throw ExitCode(1) }
    }
}

struct Deregister: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Withdraw this node's mapping from the IMS, for a node going away for good.",
        discussion: """
            Removes the node's MoAs from the IMS (the sequence number and key stay) and \
            registers nothing more until `matctl rebind` or a restart; peers drop the \
            mapping at their next lookup. Run it before stopping a node that will not come \
            back: a stop alone does not deregister, since `systemctl restart` stops too. \
            Exits non-zero when the IMS did not take it.
            """)
    @OptionGroup var options: CommonOptions

    func run() throws {
        guard let report = try options.ask(ControlRequest(command: .deregister), timeout: 45).deregistration else {
            throw ControlFailure("matd sent no report")
        }
        if options.json {
            try options.printJSON(report)
        } else {
            print("deregistered: \(report.homeAddresses.isEmpty ? "nothing (no IMS key)" : report.homeAddresses.joined(separator: ", "))")
            print("took:         \(report.milliseconds) ms")
        }
    }
}

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check this node: configuration, keys, matd, IPv6 outbound, forward policy, IMS, peers.",
        discussion: """
            Prints one line per check (ok, warning, PROBLEM) with what to do about each \
            warning and problem, and exits 1 when there is a problem. Changes nothing. Run it \
            as root: it reads the key files and the nftables ruleset.
            """)

    @Option(name: .long, help: "matd's configuration file.")
    var config = "/etc/mat/matd.conf"

    @Option(name: .long, help: "Control socket of the daemon (default: the configuration's control-socket).")
    var socket: String?

    func run() throws {
        let findings = MATNode.Doctor.examine(configPath: config, socket: socket)
        for finding in findings {
            let label = finding.verdict == .problem ? "PROBLEM" : finding.verdict.rawValue
            print("\(label.padding(toLength: 8, withPad: " ", startingAt: 0)) \(finding.check): \(finding.detail)")
            if let fix = finding.fix, finding.verdict != .ok { print("         fix: \(fix)") }
        }
        let problems = findings.filter { $0.verdict == .problem }.count
        print(problems == 0 ? "doctor: no problem found" : "doctor: \(problems) problem(s)")
        if problems > 0 { throw ExitCode(1) }
    }
}

struct Monitor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print matd's events as they happen, one JSON object a line, until interrupted.",
        discussion: """
            Events: move, registered, registration_failed, alert, ack, unanswered, adopted, key_changed, \
            key_rotated, deregistering, mapping_refused, answer_on_trial, answer_refused, \
            claim_settled, mapping_lapsed, idle_peer_dropped, encapsulation, refused (signaling \
            refusals, at most one a second, with their counts; docs/operations.md says what each is). Each has a number, the time (seconds since 1970) and details; a gap in the \
            numbers means events were missed (matd keeps the last 1024). Exits 1 when matd \
            goes away.
            """)
    @OptionGroup var options: CommonOptions

    @Flag(name: .long, help: "Start with the events matd still has, not only new ones.")
    var history = false

    @Option(name: .long, help: "Stop after this many events (for scripts).")
    var count: Int?

    func run() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var after: UInt64? = try history ? 0 : options.ask(ControlRequest(command: .events)).nextEvent.map { $0 - 1 }
        var printed = 0
        while true {
            let reply = try options.ask(ControlRequest(command: .events, after: after))
            for event in reply.events ?? [] {
                print(String(decoding: try encoder.encode(event), as: UTF8.self))
                printed += 1
                if let count, printed >= count { return }
            }
            fflush(nil)  // piped output: each event as it comes
            if let next = reply.nextEvent { after = next - 1 }
            usleep(200_000)
        }
    }
}
