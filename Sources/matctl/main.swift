import ArgumentParser
import Foundation
import MATNode

/// `matctl`: asks a running matd about its state over the control socket.
@main
struct MatCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matctl",
        abstract: "Query and steer a running matd.",
        subcommands: [Status.self, Peers.self, Stats.self])
}

struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Control socket of the daemon.")
    var socket = NodeConfig.defaultControlSocket

    @Flag(name: .long, help: "Print the daemon's reply as JSON.")
    var json = false

    /// Sends `command` and returns the reply, or exits with a clear message.
    func ask(_ command: ControlRequest.Command) throws -> ControlReply {
        let reply: ControlReply
        do {
            reply = try sendControlRequest(ControlRequest(command: command), to: socket)
        } catch {
            throw ValidationError("cannot reach matd at \(socket): \(error) (is matd running? see --socket)")
        }
        if let error = reply.error { throw ValidationError("matd: \(error)") }
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
        guard let status = try options.ask(.status).status else { throw ValidationError("matd sent no status") }
        if options.json { return try options.printJSON(status) }
        print("tun device:      \(status.tunDevice) (offloads: \(status.offloads.isEmpty ? "none" : status.offloads))")
        print("home addresses:  \(status.homeAddresses.joined(separator: ", "))")
        print("mobile addresses: \(status.mobileAddresses.isEmpty ? "none" : status.mobileAddresses.joined(separator: ", "))")
        print("uplinks:         \(status.uplinks.joined(separator: ", "))")
        print("domain:          \(status.domainPrefixes.joined(separator: ", "))")
        print("peers:           \(status.peerCount)")
        print("uptime:          \(status.uptimeSeconds) s")
    }
}

struct Peers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Known peers and their mappings.")
    @OptionGroup var options: CommonOptions

    func run() throws {
        let peers = try options.ask(.peers).peers ?? []
        if options.json { return try options.printJSON(peers) }
        if peers.isEmpty { return print("no peers") }
        for peer in peers {
            let moas = peer.mobileAddresses.map { binding in
                let mark = binding.address == peer.preferred ? "*" : ""
                return "\(binding.address)\(mark) (prio \(binding.priority)\(binding.flags.isEmpty ? "" : ", \(binding.flags)"))"
            }
            print("\(peer.homeAddress) -> \(moas.joined(separator: ", ")) seq \(peer.sequence)")
        }
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Packet and byte counters, drops by reason.")
    @OptionGroup var options: CommonOptions

    func run() throws {
        guard let stats = try options.ask(.stats).stats else { throw ValidationError("matd sent no stats") }
        if options.json { return try options.printJSON(stats) }
        print("outbound: \(stats.outboundPackets) packets, \(stats.outboundBytes) bytes")
        print("inbound:  \(stats.inboundPackets) packets, \(stats.inboundBytes) bytes")
        print("super-packets: \(stats.superPackets)")
        let drops = stats.drops.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        print("drops:    \(drops.isEmpty ? "none" : drops.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        if let ims = stats.ims {
            print("ims:      \(ims.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
    }
}
