#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATDNS
import MATIMSClient
import MATLinux
import MATPacket
import Synchronization

/// The control plane of the mappings, on a thread of its own: watches the uplinks for
/// MoA changes, registers the node's mapping with the IMS (on start, on every change and
/// before the lifetime runs out), looks up peers the engine has packets for, refreshes
/// learned mappings when their TTL runs out, and keeps the engine's table and the inbound
/// diversion in step with all of it.
public final class MappingService: @unchecked Sendable {
    // @unchecked: `host`, `client`, `schedules`, `learned` and `addresses` are touched only
    // by the service thread (and by `init` before it starts); other threads use `misses`
    // and `wakeup` only.

    private let config: NodeConfig
    private let host: HostSetup
    private let engine: Engine
    private let client: IMSClient?
    private let sequences: SequenceStore
    private var schedules: [AddressFamily: RegistrationSchedule] = [:]
    private var addresses: NodeAddresses
    /// `addresses` as of the last change, for the control thread.
    private let publishedAddresses: Mutex<NodeAddresses>
    /// Mappings learned from the IMS, with the time their TTL runs out.
    private var learned: [IPAddress: (mapping: PeerMapping, expiresAt: UInt64)] = [:]
    private let misses = Mutex<[IPAddress]>([])
    private let wakeup: Wakeup
    private let stopped = Mutex(false)
    private var thread: Thread?

    /// Prepares the service; `start()` begins the work. Throws when the IMS key file is
    /// missing, unreadable, readable by others, or holds no key.
    public init(config: NodeConfig, host: HostSetup, engine: Engine, addresses: NodeAddresses) throws {
        self.config = config
        self.host = host
        self.engine = engine
        self.addresses = addresses
        publishedAddresses = Mutex(addresses)
        sequences = SequenceStore(path: config.stateDirectory + "/sequence")
        wakeup = try Wakeup()
        if let ims = config.ims {
            let key = try ims.keyFile.map(Self.loadKey)
            client = IMSClient(
                configuration: IMSClientConfiguration(names: try MappingNames(zone: ims.zone), servers: ims.servers,
                                                      key: key, recordTTL: ims.recordTTL),
                log: { level, message in log("matd: ims \(level.rawValue): \(message)") })
            if key != nil {
                for home in config.homeAddresses {
                    schedules[home.family] = RegistrationSchedule(lifetime: ims.lifetime)
                }
            }
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } else {
            client = nil
        }
    }

    /// Starts the service thread.
    public func start() {
        let thread = Thread { [self] in self.loop() }
        thread.name = "matd-mapping"
        self.thread = thread
        thread.start()
    }

    /// Stops the service thread and waits for it.
    public func stop() {
        stopped.withLock { $0 = true }
        wakeup.signal()
        while thread?.isFinished == false { usleep(1_000) }
    }

    /// The node's HoAs and current MoAs.
    public var currentAddresses: NodeAddresses { publishedAddresses.withLock { $0 } }

    /// The IMS client's counters by metric name, or nil without an `[ims]` section.
    public var imsCounters: [String: UInt64]? {
        client.map { client in
            Dictionary(client.statistics.named.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// Called by the engine thread: packets wait for a mapping of `hoa`.
    public func lookUp(_ hoa: IPAddress) {
        let added = misses.withLock { queue -> Bool in
            guard queue.count < 256, !queue.contains(hoa) else { return false }
            queue.append(hoa)
            return true
        }
        if added { wakeup.signal() }
    }

    private func loop() {
        var descriptor = pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)
        while !stopped.withLock({ $0 }) {
            let now = UInt64(time(nil))
            followUplinks(now: now)
            register(now: now)
            resolveMisses(now: now)
            refreshLearned(now: now)
            _ = poll(&descriptor, 1, 1_000)
            wakeup.drain()
        }
    }

    /// Picks up a changed MoA: the engine, the diversion and the registration follow it.
    private func followUplinks(now: UInt64) {
        guard let found = try? host.uplinkAddresses() else { return }
        let next = addresses.withMobile(from: found)
        for family in schedules.keys {
            schedules[family]?.moasChanged(to: found.filter { $0.family == family }, at: now)
        }
        guard next != addresses else { return }
        log("matd: mobile addresses now \(next.mobileDescription) (were \(addresses.mobileDescription))")
        addresses = next
        publishedAddresses.withLock { $0 = next }
        engine.send(.setAddresses(next))
        updateDiversion()
    }

    private func register(now: UInt64) {
        guard let client else { return }
        for home in config.homeAddresses {
            guard var schedule = schedules[home.family], schedule.isDue(at: now) else { continue }
            let moas = schedule.currentMoAs
            guard !moas.isEmpty else { continue }
            do {
                let sequence = try sequences.next()
                let result = try client.register(hoa: home, moas: moas, sequence: sequence)
                schedule.succeeded(moas: moas, at: now)
                log("matd: registered \(home) -> \(moas.map(\.description).joined(separator: ", ")) seq \(sequence) at \(result.server)")
            } catch {
                schedule.failed(at: now)
                log("matd: registering \(home) failed: \(error); retry in \(schedule.nextAttempt - min(now, schedule.nextAttempt)) s")
            }
            schedules[home.family] = schedule
        }
    }

    private func resolveMisses(now: UInt64) {
        let pending = misses.withLock { queue -> [IPAddress] in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        guard let client, !pending.isEmpty else { return }
        var changed = false
        for hoa in pending where config.domainPrefixes.contains(where: { $0.contains(hoa) }) {
            changed = install(try? client.lookup(hoa: hoa), now: now) || changed
        }
        if changed { updateDiversion() }
    }

    /// Looks learned mappings up again when their TTL has run out. An unreachable IMS
    /// answers from the cache (stale, logged and counted by the client), so the engine
    /// keeps the mapping it has.
    private func refreshLearned(now: UInt64) {
        guard let client else { return }
        var changed = false
        for (hoa, entry) in learned where entry.expiresAt <= now {
            do {
                changed = install(try client.lookup(hoa: hoa, allowCached: false), now: now) || changed
            } catch IMSClientError.noMapping {
                learned[hoa] = nil
                engine.send(.removeMapping(hoa))
                changed = true
            } catch {
                learned[hoa]?.expiresAt = now + 1
            }
        }
        if changed { updateDiversion() }
    }

    /// Puts an answer into the engine's table. Returns whether the MoAs changed.
    private func install(_ answer: PeerMappingAnswer?, now: UInt64) -> Bool {
        guard let answer, !answer.moas.isEmpty else { return false }
        let mapping = answer.peerMapping()
        let expiresAt = answer.isStale ? now + 1 : max(answer.expiresAt, now + 1)
        let previous = learned[answer.hoa]?.mapping
        learned[answer.hoa] = (mapping, expiresAt)
        guard previous?.moas.map(\.address) != mapping.moas.map(\.address) else { return false }
        engine.send(.replaceMapping(mapping))
        log("matd: mapping \(answer)")
        return true
    }

    private func updateDiversion() {
        let peerMoAs = config.peers.flatMap(\.mobileAddresses) + learned.values.flatMap { $0.mapping.moas.map(\.address) }
        do {
            try host.divertInbound(addresses: addresses, peerMoAs: peerMoAs)
        } catch {
            log("matd: updating the inbound diversion failed: \(error)")
        }
    }

    /// Reads the node's TSIG key, refusing a file others can read: the key is what lets
    /// anyone move this node's traffic.
    static func loadKey(_ path: String) throws -> TSIGKey {
        var info = stat()
        guard stat(path, &info) == 0 else { throw SystemError("read key file \(path)", errno: errno) }
        guard info.st_mode & 0o077 == 0 else {
            throw SystemError("key file \(path)", detail: "readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SystemError("read key file \(path)", detail: "cannot read")
        }
        let keys = try TSIGKeyFile.parse(String(decoding: data, as: UTF8.self))
        guard let key = keys.first else { throw SystemError("key file \(path)", detail: "holds no key") }
        return key
    }
}
