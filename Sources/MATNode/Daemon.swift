#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATLog
import MATPacket
import Synchronization

/// matd's parts wired together: TUN device, host setup, engine and control socket.
public final class Daemon {
    private let config: NodeConfig
    private let reread: () throws -> NodeConfig
    /// When the daemon was made, on the monotonic clock (ms): uptime does not jump with the wall clock.
    private let started = MonotonicClock.milliseconds()

    /// Validates what can be checked before the host is touched. `reread` reads the
    /// configuration file again on SIGHUP.
    public init(config: NodeConfig, reread: @escaping () throws -> NodeConfig) throws {
        self.config = config
        self.reread = reread
    }

    /// How a run ended.
    public enum Ending: Sendable {
        /// SIGTERM or SIGINT: the host was restored.
        case stopped
        /// SIGUSR2: the datapath was left in place for the next matd, which takes it over
        /// with the saved peer state, so sessions survive (docs/operations.md).
        case handedOver
    }

    /// The exit status of a matd that handed its datapath over (EX_TEMPFAIL): a service
    /// manager restarts it (systemd: `RestartForceExitStatus=75`).
    public static let handOverExitStatus: Int32 = 75

    /// Sets up the host (taking over what a previous matd left), carries traffic until
    /// SIGTERM or SIGINT (restore the host) or SIGUSR2 (leave it for the next matd).
    /// SIGHUP reloads the peers and the IMS section; SIGPIPE is ignored (a control client
    /// that hangs up is an error on its connection, not the daemon's end).
    public func runUntilSignalled() throws -> Ending {
        // Block the signals before any thread starts, so only sigwait below sees them.
        var signals = sigset_t()
        sigemptyset(&signals)
        for number in [SIGTERM, SIGINT, SIGHUP, SIGUSR2] { sigaddset(&signals, number) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        signal(SIGPIPE, SIG_IGN)

        let tun = try TunDevice(name: config.tunName)
        let host: HostSetup
        do {
            host = try HostSetup(config: config, tun: tun)
        } catch {
            _ = try? HostSetup.cleanup(config: config)
            throw error
        }
        var ending = Ending.stopped
        defer {
            if ending == .stopped { host.teardown() }
        }

        let addresses = NodeAddresses(homes: config.homeAddresses).withMobile(from: host.uplinkAddresses())
        var table = MappingTable()
        for peer in config.peers { try table.insert(peer.mapping) }
        try host.divertInbound(addresses: addresses, peerMoAs: config.peers.flatMap(\.mobileAddresses))
        // The engine reports HoAs without a mapping to the service, which needs the engine.
        let service = Mutex<MappingService?>(nil)
        let encap = try EncapPath.open(config, tun: tun.name)
        encap?.relayedSignalHandler = { origin, bytes in service.withLock { $0 }?.relayedSignal(from: origin, bytes) }
        encap?.relayKeyHandler = { hoa in service.withLock { $0 }?.relayKeyWanted(hoa) }
        encap?.relayRecoveryHandler = { service.withLock { $0 }?.relayAnswerWanted() }
        let engine = try Engine(tun: tun, table: table, addresses: addresses,
                                onMiss: { hoa in service.withLock { $0 }?.lookUp(hoa) },
                                onRefusal: { refusal in service.withLock { $0 }?.noteRefusal(refusal) },
                                encap: encap,
                                onProbeAnswer: { moa, nonce in service.withLock { $0 }?.probeAnswered(from: moa, nonce: nonce) })
        if KernelFastPath.enabled(setting: config.kernelFastPath) {
            engine.fastPath = try KernelFastPath(config: config)
        } else {
            log("matd: kernel fast path off: the TUN engine carries all HoA traffic")
        }
        // Read before the engine writes the fast path's first rules, then every few seconds.
        let firewall = HostFirewallWatcher(uplinks: config.uplinks, tun: tun.name, ipv6Path: host.ipv6Path,
                                           fastPath: engine.fastPath != nil) { engine.refreshFastPathRules() }
        firewall.start()
        defer { firewall.stop() }
        engine.fastPath?.inboundFence = { firewall.engineInbound }
        if let fastPath = engine.fastPath { host.observeMoAServices { fastPath.moaServicesChanged($0) } }
        try engine.start()
        defer {
            engine.stop()
            engine.fastPath?.close()
        }
        let mappings = try MappingService(config: config, host: host, engine: engine, addresses: addresses)
        service.withLock { $0 = mappings }
        try mappings.start()
        defer { mappings.stop() }

        let status = StatusSource(config: config, tun: tun.name, offloads: tun.offloads.description,
                                  ipv6Outbound: host.ipv6Path.rawValue, started: started)
        let controlCounters = Mutex<ControlServer?>(nil)
        let answer: @Sendable (ControlRequest) -> ControlReply = { request in
            status.reply(to: request, engine: engine, mappings: mappings,
                         control: controlCounters.withLock { $0 }?.counters ?? [:])
        }
        let metrics = config.metricsListen.map { listen in
            ControlServer.MetricsEndpoint(address: listen.address, port: listen.port) {
                status.exposition(answer, alerts: mappings.peerSignalStates)
            }
        }
        let control = try ControlServer(path: config.controlSocket, metrics: metrics, handler: answer)
        controlCounters.withLock { $0 = control }
        defer { control.stop() }

        log("matd: up on \(tun.name) (offloads \(tun.offloads)), home \(config.homeAddresses), "
            + "mobile \(addresses.mobileDescription), \(config.peers.count) static peer(s), IPv6 outbound \(host.ipv6Path.rawValue)")
        let notifications = ServiceNotifications(engine: engine, service: mappings)
        defer { notifications.stopping() }
        var inForce = config
        while true {
            var received: Int32 = 0
            guard sigwait(&signals, &received) == 0 else { continue }
            switch received {
            case SIGHUP:
                inForce = reload(inForce, into: mappings)
                continue
            case SIGUSR2:
                ending = .handedOver
                log(.notice, "matd: handing over: the datapath stays for the next matd, peer state is saved")
            default:
                log(.notice, "matd: stopping, restoring the host")
            }
            return ending
        }
    }

    /// Reads the configuration again and hands its run-time part to the service; a file
    /// that does not validate changes nothing.
    private func reload(_ inForce: NodeConfig, into mappings: MappingService) -> NodeConfig {
        let next: NodeConfig
        do {
            next = try reread()
        } catch {
            log(.warning, "matd: SIGHUP: configuration not reloaded: \(error)")
            return inForce
        }
        let (merged, notApplied) = inForce.reloaded(from: next)
        for note in notApplied { log("matd: SIGHUP: \(note)") }
        mappings.reload(merged)
        log("matd: SIGHUP: configuration reloaded (\(merged.peers.count) static peer(s), "
            + "\(merged.ims == nil ? "no IMS" : "IMS at \(merged.ims!.servers.map(\.description).joined(separator: ", "))"))")
        return merged
    }
}

/// Answers control requests from the daemon's state; runs on the control thread.
struct StatusSource: Sendable {
    let config: NodeConfig
    let tun: String
    let offloads: String
    let ipv6Outbound: String
    /// When the daemon was made, on the monotonic clock (ms).
    let started: UInt64

    /// The Prometheus exposition, from the same replies `matctl stats --prometheus` uses,
    /// but for the peers: a scrape does not have the engine copy its table (O(table) on
    /// the engine thread, 100,000 entries every 15 s of a scraper), since the per-peer
    /// series need only what the signaling knows of each alerted peer, and the count is
    /// the engine's published one.
    func exposition(_ answer: (ControlRequest) -> ControlReply, alerts: [IPAddress: PeerSignalState]) -> String {
        guard let stats = answer(ControlRequest(command: .stats)).stats else { return "" }
        let now = MonotonicClock.milliseconds()
        let peers = alerts.map { hoa, state in
            PeerReport(homeAddress: hoa.description, mobileAddresses: [], preferred: nil, sequence: 0).withAlert(state, now: now)
        }
        return PrometheusExposition.render(stats: stats, peers: peers,
                                           status: answer(ControlRequest(command: .status)).status)
    }

    func reply(to request: ControlRequest, engine: Engine, mappings: MappingService,
               control: [String: UInt64]) -> ControlReply {
        switch request.command {
        case .status:
            var status = StatusReport(
                tunDevice: tun, homeAddresses: config.homeAddresses.map(\.description),
                mobileAddresses: mappings.currentAddresses.mobileAddresses.map(\.description),
                uplinks: config.uplinks, domainPrefixes: config.domainPrefixes.map(\.description),
                offloads: offloads, uptimeSeconds: (MonotonicClock.milliseconds() - started) / 1_000,
                peerCount: engine.mappingCount, publicKey: mappings.publicKey, ipv6Outbound: ipv6Outbound)
            let announced = mappings.announcedAddresses.mobileAddresses.map(\.description)
            if announced != status.mobileAddresses { status.publicAddresses = announced }
            status.kernelFastPath = engine.fastPath?.state ?? "off"
            return ControlReply(status: status)
        case .peers:
            guard var table = engine.mappings() else { return ControlReply(error: "the engine did not answer within 10 s") }
            // A HoA removed and added again while the engine listed may come twice: the later is newer.
            var inTable: [IPAddress: Int] = [:]
            inTable.reserveCapacity(table.count)
            for (index, state) in table.enumerated() { inTable[state.mapping.hoa] = index }
            if inTable.count != table.count {
                table = table.indices.filter { inTable[table[$0].mapping.hoa] == $0 }.map { table[$0] }
            }
            let view = mappings.peerView
            let alerts = mappings.peerSignalStates
            let now = MonotonicClock.milliseconds()
            return ControlReply(peers: table.map { state in
                let mapping = state.mapping
                let alert = alerts[mapping.hoa]
                var report = PeerReport(
                    homeAddress: mapping.hoa.description,
                    mobileAddresses: mapping.moas.map {
                        PeerReport.Binding(address: $0.address.description, priority: Int($0.priority),
                                           flags: $0.flags.description)
                    },
                    preferred: state.preferred?.description, sequence: mapping.sequence,
                    origin: view[mapping.hoa]?.rawValue).withAlert(alert, now: now)
                if state.relayed {
                    report.path = "relay"
                } else if state.encapsulated {
                    report.path = EncapPolicy.Mode.encapsulated.rawValue
                } else if state.fastPath {
                    report.path = "kernel"
                }
                return report
            } + view.filter { hoa, _ in inTable[hoa] == nil }.map { hoa, origin in
                // Known to the control plane but not (yet) in the engine's table.
                PeerReport(homeAddress: hoa.description, mobileAddresses: [], preferred: nil, sequence: 0,
                           origin: origin.rawValue)
            })
        case .stats:
            let ims = mappings.imsCounters
            var stats = StatsReport(engine.counters, ims: ims,
                                    signaling: mappings.signalingCounters, control: control,
                                    alertAcknowledged: mappings.signaling.counters.alertAcknowledged,
                                    imsRequests: ims == nil ? nil : mappings.imsWorker.durations)
            stats.encapsulation = engine.encapCounters.map { Dictionary(uniqueKeysWithValues: $0.named) }
            stats.relay = engine.relayStatistics.map { $0.merging(mappings.relayKeyLookupCounters ?? [:]) { engine, _ in engine } }
            stats.kernelFastPath = engine.fastPath?.counters()
            stats.peerListing = engine.lastListing?.named
            return ControlReply(stats: stats)
        case .events:
            let (events, next) = EventLog.shared.events(after: request.after)
            return ControlReply(events: events, nextEvent: next)
        case .rebind:
            var moa: IPAddress?
            if let text = request.mobileAddress {
                guard let address = IPAddress(text) else {
                    return ControlReply(error: "\(text) is not an IPv4 or IPv6 address")
                }
                moa = address
            }
            let report = mappings.rebind(interface: request.interface, moa: moa)
            if let error = report.error { return ControlReply(error: "rebind: \(error)") }
            return ControlReply(rebind: report)
        case .rotateKey:
            let report = mappings.rotateKey()
            if let error = report.error { return ControlReply(error: "rotate-key: \(error)") }
            return ControlReply(keyRotation: report)
        case .deregister:
            let report = mappings.deregister()
            if let error = report.error { return ControlReply(error: "deregister: \(error)") }
            return ControlReply(deregistration: report)
        }
    }
}

/// Writes a line at `info` (``Log``: standard error, journald priorities under systemd).
func log(_ message: String) {
    Log.write(.info, message)
}

/// Writes a line at `level`.
func log(_ level: LogLevel, _ message: String) {
    Log.write(level, message)
}

extension PeerReport {
    /// The report with the fields of the last alert to the peer (none when `state` is nil).
    func withAlert(_ state: PeerSignalState?, now: UInt64) -> PeerReport {
        var report = self
        report.alert = state?.alert.rawValue
        report.lastAckSecondsAgo = state?.lastAckAt.map { Double(now - min(now, $0)) / 1_000 }
        report.roundTripMilliseconds = state?.roundTripMilliseconds
        return report
    }
}
