import ArgumentParser
import Foundation
import MATCommandLine
import MATConfig
import MATNode

/// `matd`: the per-node MAT daemon.
@main
struct Matd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matd",
        abstract: "The MAT mobility daemon: keeps home-address sessions alive while the node moves.",
        version: MATVersion.current,
        subcommands: [Run.self, CheckConfig.self, Cleanup.self, RelayKey.self],
        defaultSubcommand: Run.self)
}

/// Reads and validates a configuration file, or exits with the line and key at fault.
func loadConfig(_ path: String) throws -> NodeConfig {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ValidationError("\(path): cannot read the file")
    }
    do {
        return try NodeConfig(parsing: String(decoding: data, as: UTF8.self))
    } catch {
        throw ValidationError("\(path): \(error)")
    }
}

/// Checks the `[ims]` key files against the HoAs (``NodeKeys``): a HoA without its key
/// would be refused by the IMS at every registration. Returns how many keys there are,
/// nil without an `[ims]` section.
func loadIMSKeys(_ node: NodeConfig, file: String) throws -> Int? {
    guard let ims = node.ims else { return nil }
    do {
        return try NodeKeys.load(ims, homeAddresses: node.homeAddresses).count
    } catch {
        throw ValidationError("\(file): \(error)")
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set up the host and carry traffic until SIGTERM or SIGINT.")

    @Option(name: .long, help: "Configuration file.")
    var config = "/etc/mat/matd.conf"

    @OptionGroup var logging: LogLevelOption

    func run() throws {
        logging.apply()
        let node = try loadConfig(config)
        _ = try loadIMSKeys(node, file: config)   // before the host is touched
        let daemon = try Daemon(config: node) { [config] in try loadConfig(config) }
        if try daemon.runUntilSignalled() == .handedOver { throw ExitCode(Daemon.handOverExitStatus) }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file without touching the host.")

    @Argument(help: "Configuration file.")
    var file: String

    func run() throws {
        let node = try loadConfig(file)
        let keys = try loadIMSKeys(node, file: file).map { ", \($0) IMS key(s)" } ?? ""
        print("\(file): ok (\(node.homeAddresses.count) home address(es), \(node.peers.count) static peer(s)\(keys))")
    }
}

struct RelayKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-key",
        abstract: "Print the public key a relay (serve = on) signs its answers with, for its nodes' [relay] public-key.",
        discussion: "The key is <state-directory>/relay.key, made now if the relay has none yet.")

    @Option(name: .long, help: "Configuration file.")
    var config = "/etc/mat/matd.conf"

    func run() throws {
        let node = try loadConfig(config)
        do {
            print(try RelayKeyFile.publicKey(node))
        } catch {
            throw ValidationError("\(config): \(error)")
        }
    }
}

struct Cleanup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove what a matd that died without stopping left on the host.")

    @Option(name: .long, help: "Configuration file.")
    var config = "/etc/mat/matd.conf"

    @OptionGroup var logging: LogLevelOption

    func run() throws {
        logging.apply()
        let node = try loadConfig(config)
        let removed = try HostSetup.cleanup(config: node)
        print(removed.isEmpty ? "nothing to clean up" : removed.map { "removed \($0)" }.joined(separator: "\n"))
    }
}
