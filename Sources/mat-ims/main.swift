// mat-ims: the embedded mapping server. Parses arguments and hands over to MATIMS.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import MATCommandLine
import MATConfig
import MATDNS
import MATIMS
import MATIMSCore
import MATLinux
import MATLog
import MATMetrics
import MATPacket
import Synchronization

struct MatIMS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mat-ims",
        abstract: "The MAT mapping server: an authoritative DNS server for the mapping zone that takes TSIG-signed UPDATEs.",
        discussion: "See docs/ims.md for the configuration file, the zone layout and the update policy.",
        version: MATVersion.current,
        subcommands: [Run.self, CheckConfig.self, KeyGen.self, Name.self],
        defaultSubcommand: Run.self
    )
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Serve the configured zones until SIGTERM or SIGINT (SIGHUP reloads the key files, SIGUSR1 prints the counters)."
    )

    @Option(name: .long, help: "The configuration file.")
    var config: String = "/etc/mat/mat-ims.conf"

    @OptionGroup var logging: LogLevelOption

    func run() throws {
        logging.apply()
        let configuration: IMSConfiguration
        do {
            configuration = try IMSConfiguration.load(path: config)
        } catch {
            throw ValidationError("\(config): \(error)")
        }
        // Signals are taken synchronously on this thread; the server's threads inherit
        // the blocked mask, so none of them is interrupted.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGUSR1] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        signal(SIGPIPE, SIG_IGN)

        let started = MonotonicClock.milliseconds()
        let server: IMSServer
        do {
            server = try IMSServer(configuration: configuration)
            try server.start()
        } catch {
            Log.write(.error, "mat-ims: \(error)")
            throw ExitCode(1)
        }
        for zone in configuration.zones {
            let serial = server.core.zone(zone.name)?.serial ?? 0
            Log.write(.info, "mat-ims: zone \(zone.name) serial \(serial), \(server.core.zone(zone.name)?.nameCount ?? 0) names")
        }
        let addresses = server.endpoints.map(\.description).joined(separator: " ")
        Log.write(.info, "mat-ims: listening on \(addresses) (UDP and TCP)")
        // Under systemd (Type=notify): started once every listener is bound and the
        // journal replayed; a no-op when run by hand.
        let manager = SystemdNotifier()
        manager.report("mat-ims") { try $0.ready() }
        manager.report("mat-ims") { try $0.status("serving \(configuration.zones.count) zone(s) on \(addresses)") }
        do {
            try ServingWatchdog.startIfAsked(manager: manager, server: server, zone: configuration.zones[0].name)
        } catch {
            Log.write(.error, "mat-ims: watchdog: \(error)")
            throw ExitCode(1)
        }
        let metrics: MetricsServer?
        do {
            metrics = try startMetrics(configuration, server: server, started: started)
        } catch {
            Log.write(.error, "mat-ims: metrics-listen: \(error)")
            throw ExitCode(1)
        }
        var keysInUse = Set(configuration.keys.map(\.name))
        while true {
            var received: Int32 = 0
            guard sigwait(&signals, &received) == 0 else { continue }
            if received == SIGUSR1 {
                for line in server.core.counters.lines() { Log.write(.info, "mat-ims: counter \(line)") }
                continue
            }
            if received == SIGHUP {
                keysInUse = reload(config, into: server.core, started: configuration, keysInUse: keysInUse)
                continue
            }
            Log.write(.notice, "mat-ims: stopping (signal \(received))")
            manager.report("mat-ims") { try $0.stopping() }
            metrics?.stop()
            server.stop()
            for line in server.core.counters.lines() { Log.write(.info, "mat-ims: counter \(line)") }
            return
        }
    }
}

/// The Prometheus endpoint on `metrics-listen`, if configured (docs/ims.md, "Metrics").
func startMetrics(_ configuration: IMSConfiguration, server: IMSServer, started: UInt64) throws(SystemError) -> MetricsServer? {
    guard let listen = configuration.metricsListen else { return nil }
    // The exposition shows the endpoint's own counters, so it needs the server it runs on.
    let endpoint = Mutex<MetricsServer?>(nil)
    let metrics = try MetricsServer(address: listen.address, port: listen.port, threadName: "mat-ims-metrics",
                                    contentType: PrometheusWriter.contentType) { [core = server.core] in
        IMSExposition.render(core: core, uptimeSeconds: (MonotonicClock.milliseconds() - started) / 1_000,
                             endpoint: endpoint.withLock { $0 }?.counters ?? [:])
    }
    endpoint.withLock { $0 = metrics }
    Log.write(.info, "mat-ims: metrics on http://\(listen)/metrics")
    return metrics
}

/// SIGHUP: the key files are read again and their keys replace the running ones (a new
/// node's key works without a restart; the zones and their journals are untouched). A
/// configuration that does not load keeps every running key; other changed settings are
/// named and wait for a restart. Returns the names of the keys in use afterwards.
func reload(_ path: String, into core: IMSCore, started: IMSConfiguration, keysInUse: Set<DNSName>) -> Set<DNSName> {
    let fresh: IMSConfiguration
    do {
        fresh = try IMSConfiguration.load(path: path)
    } catch {
        Log.write(.warning, "mat-ims: reload: \(path): \(error); keeping the \(keysInUse.count) keys in use")
        return keysInUse
    }
    let loaded = Set(fresh.keys.map(\.name))
    core.replaceKeys(fresh.keys)
    Log.write(.info, "mat-ims: reload: \(loaded.count) keys (\(loaded.subtracting(keysInUse).count) new, "
                     + "\(keysInUse.subtracting(loaded).count) removed)")
    for setting in fresh.settingsDiffering(from: started) {
        Log.write(.info, "mat-ims: reload: \(setting) changed; it takes effect when mat-ims is restarted")
    }
    return loaded
}

extension IMSConfiguration {
    /// The settings other than the keys that differ from `other`, by their section or key.
    func settingsDiffering(from other: IMSConfiguration) -> [String] {
        func text(_ value: Any) -> String { String(describing: value) }
        let settings: [(String, String, String)] = [
            ("listen", text(listen), text(other.listen)),
            ("state-directory", text(stateDirectory as Any), text(other.stateDirectory as Any)),
            ("metrics-listen", text(metricsListen as Any), text(other.metricsListen as Any)),
            ("journal settings", text((journalSync, journalCompactBytes)), text((other.journalSync, other.journalCompactBytes))),
            ("connection limits", text((maxTCPConnections, maxTCPConnectionsPerSource, tcpIdleTimeout)),
             text((other.maxTCPConnections, other.maxTCPConnectionsPerSource, other.tcpIdleTimeout))),
            ("rate limiting", text(rateLimit), text(other.rateLimit)),
            ("max-udp-size", text(maxUDPSize), text(other.maxUDPSize)),
            ("udp-threads", text(udpThreads), text(other.udpThreads)),
            ("[zone] sections", text(zones), text(other.zones)),
        ]
        return settings.filter { $0.1 != $0.2 }.map(\.0)
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a configuration file (and its key files) without serving anything."
    )

    @Argument(help: "The configuration file.")
    var file: String

    func run() throws {
        do {
            let configuration = try IMSConfiguration.load(path: file)
            let zones = configuration.zones.map { $0.name.description }.joined(separator: ", ")
            print("\(file): OK (zones: \(zones); \(configuration.keys.count) keys)")
        } catch {
            Log.write(.info, "\(file): \(error)")
            throw ExitCode(1)
        }
    }
}

struct KeyGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Print a new TSIG key in BIND key-file syntax (like tsig-keygen); store it in a 0600 file."
    )

    @Argument(help: "Key names; a node key is named after its HoA name (see `mat-ims name`).")
    var names: [String] = []

    @Option(help: ArgumentHelp("A node's home address: a key named after its HoA name (repeatable; a dual-stack "
                               + "node needs one per HoA, printed together they make its key file).",
                               valueName: "address"))
    var hoa: [String] = []

    @Option(help: "The mapping zone, for --hoa.")
    var zone: String = "mat.example."

    @Option(help: "hmac-sha256, hmac-sha384 or hmac-sha512.")
    var algorithm: String = "hmac-sha256"

    func run() throws {
        guard let algorithm = TSIGAlgorithm(keyword: algorithm) else {
            throw ValidationError("unknown algorithm \(self.algorithm)")
        }
        var keyNames: [DNSName] = []
        for name in names {
            do { keyNames.append(try DNSName(name)) } catch { throw ValidationError("not a domain name: \(name)") }
        }
        if !hoa.isEmpty {
            let zoneName: DNSName
            do { zoneName = try DNSName(zone) } catch { throw ValidationError("bad zone \(zone)") }
            for address in hoa {
                guard let ip = IPAddress(address) else { throw ValidationError("not an IP address: \(address)") }
                do { keyNames.append(try IMSNames.hoaName(ip, zone: zoneName)) } catch {
                    throw ValidationError("bad zone \(zone)")
                }
            }
        }
        guard !keyNames.isEmpty else { throw ValidationError("give a key name or --hoa ADDRESS") }
        var generator = SystemRandomNumberGenerator()
        for keyName in keyNames {
            let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
            print(TSIGKey(name: keyName, algorithm: algorithm, secret: secret).keyFileText, terminator: "")
        }
    }
}

struct Name: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "name",
        abstract: "Print the mapping name of a HoA (or, with --moa, the first-contact name of a MoA)."
    )

    @Argument(help: "An IPv4 or IPv6 address.")
    var address: String

    @Option(help: "The mapping zone.")
    var zone: String = "mat.example."

    @Flag(help: "Print the MoA -> HoA name under moa.<zone> instead.")
    var moa = false

    func run() throws {
        guard let ip = IPAddress(address) else { throw ValidationError("not an IP address: \(address)") }
        do {
            let zoneName = try DNSName(zone)
            print(moa ? try IMSNames.moaName(ip, zone: zoneName) : try IMSNames.hoaName(ip, zone: zoneName))
        } catch {
            throw ValidationError("bad zone \(zone)")
        }
    }
}

MatIMS.main()
