#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket
import Synchronization

/// matd's parts wired together: TUN device, host setup, engine and control socket.
public final class Daemon {
    private let config: NodeConfig
    private let started = Date()

    /// Validates what can be checked before the host is touched.
    public init(config: NodeConfig) throws {
        self.config = config
    }

    /// Sets up the host, carries traffic until SIGTERM or SIGINT, then restores the host.
    public func runUntilSignalled() throws {
        // Block the stop signals before any thread starts, so only sigwait below sees them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let tun = try TunDevice(name: config.tunName)
        let host: HostSetup
        do {
            host = try HostSetup(config: config, tun: tun)
        } catch {
            _ = try? HostSetup.cleanup(config: config)
            throw error
        }
        defer { host.teardown() }

        let addresses = NodeAddresses(homes: config.homeAddresses).withMobile(from: host.uplinkAddresses())
        var table = MappingTable()
        for peer in config.peers {
            let bindings = peer.mobileAddresses.enumerated().map {
                MoABinding(address: $0.element, priority: UInt8(clamping: $0.offset), flags: .static)
            }
            try table.insert(PeerMapping(hoa: peer.homeAddress, moas: bindings))
        }
        try host.divertInbound(addresses: addresses, peerMoAs: config.peers.flatMap(\.mobileAddresses))
        // The engine reports HoAs without a mapping to the service, which needs the engine.
        let service = Mutex<MappingService?>(nil)
        let engine = try Engine(tun: tun, table: table, addresses: addresses) { hoa in
            service.withLock { $0 }?.lookUp(hoa)
        }
        engine.start()
        defer { engine.stop() }
        let mappings = try MappingService(config: config, host: host, engine: engine, addresses: addresses)
        service.withLock { $0 = mappings }
        mappings.start()
        defer { mappings.stop() }

        let status = StatusSource(config: config, tun: tun.name, offloads: tun.offloads.description,
                                  started: started)
        let control = try ControlServer(path: config.controlSocket) { request in
            status.reply(to: request, engine: engine, mappings: mappings)
        }
        defer { control.stop() }

        log("matd: up on \(tun.name) (offloads \(tun.offloads)), home \(config.homeAddresses), "
            + "mobile \(addresses.mobileDescription), \(config.peers.count) static peer(s)")
        var received: Int32 = 0
        sigwait(&signals, &received)
        log("matd: signal \(received), restoring the host")
    }
}

/// Answers control requests from the daemon's state; runs on the control thread.
struct StatusSource: Sendable {
    let config: NodeConfig
    let tun: String
    let offloads: String
    let started: Date

    func reply(to request: ControlRequest, engine: Engine, mappings: MappingService) -> ControlReply {
        switch request.command {
        case .status:
            return ControlReply(status: StatusReport(
                tunDevice: tun, homeAddresses: config.homeAddresses.map(\.description),
                mobileAddresses: mappings.currentAddresses.mobileAddresses.map(\.description),
                uplinks: config.uplinks, domainPrefixes: config.domainPrefixes.map(\.description),
                offloads: offloads, uptimeSeconds: UInt64(Date().timeIntervalSince(started)),
                peerCount: engine.mappings.count, publicKey: mappings.publicKey))
        case .peers:
            return ControlReply(peers: engine.mappings.map { state in
                let mapping = state.mapping
                return PeerReport(
                    homeAddress: mapping.hoa.description,
                    mobileAddresses: mapping.moas.map {
                        PeerReport.Binding(address: $0.address.description, priority: Int($0.priority),
                                           flags: $0.flags.description)
                    },
                    preferred: state.preferred?.description, sequence: mapping.sequence)
            })
        case .stats:
            return ControlReply(stats: StatsReport(engine.counters, ims: mappings.imsCounters,
                                                   signaling: mappings.signalingCounters))
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
        }
    }
}

/// Writes a line to standard error (journald keeps it under systemd).
func log(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
