#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATLog
import MATPacket
import MATSystem
import Synchronization

/// What matd does about the host's firewall as it changes under a running matd (ufw
/// enabled, Docker started, an admin's `nft -f`): a forward chain that drops by default
/// drops what the engine writes back, an input chain that drops by default without
/// accepting ``FastPathFirewall/mark`` drops what the kernel fast path delivers. Each
/// reading of the firewall (nftables' ``HostFirewall`` and legacy iptables'
/// ``LegacyFirewall``) is compared with the last one: an input
/// chain that starts dropping the fast path's packets moves that family's inbound to the
/// engine (as a finding at start does), one that stops dropping them moves it back, and
/// every change is said once in the log, with the rule to add. Pure: the driver
/// (``HostFirewallWatcher``) reads, times and logs.
struct HostFirewallWatch: Sendable {
    /// What one reading found.
    struct Reading: Equatable, Sendable {
        var input: [FastPathFirewall.Finding]
        var forward: [ForwardFirewall.Finding]
        /// The families (`ip`, `ip6`) with a legacy iptables `filter` table (x_tables, not
        /// nftables) that could not be read, with why (``LegacyFirewall/Reading/unreadable``).
        var legacy: [String: String] = [:]
    }

    /// A change worth a line in the log.
    enum Note: Equatable, Sendable {
        /// An input chain drops the fast path's packets: its families' inbound goes to the engine.
        case inputDrops(FastPathFirewall.Finding)
        /// An input chain no longer drops them (gone, or it accepts them now).
        case inputAccepts(place: String)
        /// A forward chain drops what the engine writes back.
        case forwardDrops(ForwardFirewall.Finding)
        case forwardAccepts(place: String)
        /// A legacy iptables `filter` table could not be read (at start or since): its
        /// policies are unknown to matd, so the log says which rules it may need.
        case legacyUnreadable(family: String, error: String)
        /// The firewall could not be read (the decisions stay as they were); said again
        /// only when the error changes.
        case readFailed(String)
        /// It can be read again after a failure.
        case readWorks
    }

    /// Milliseconds between readings while a reading is cheap (listing the chains and the
    /// rules of the host's input and forward chains: a few milliseconds).
    static let interval: UInt64 = 5_000
    /// A reading takes at most 1/`share` of the time: a host table with large sets makes nft
    /// read them for every listing of its chains, so the interval grows with the reading.
    static let share: UInt64 = 100

    /// Whether the kernel fast path is on: input chains matter only then.
    let fastPath: Bool
    /// The families whose inbound the engine keeps (``FastPathRuleset/Placement/engineInbound``).
    private(set) var engineInbound: Set<AddressFamily> = []
    /// When the next reading is due (monotonic milliseconds).
    private(set) var nextReading: UInt64 = 0
    private var last: Reading?
    private var lastError: String?

    init(fastPath: Bool) { self.fastPath = fastPath }

    /// Takes a reading made at `now` that took `took` milliseconds (or the error that made
    /// it fail) and returns what changed. The first reading (matd's start) reports every finding.
    mutating func observe(_ reading: Result<Reading, SystemError>, took: UInt64, at now: UInt64) -> [Note] {
        nextReading = now + max(Self.interval, took * Self.share)
        var notes: [Note] = []
        let found: Reading
        switch reading {
        case .failure(let error):
            let text = "\(error)"
            if text != lastError { notes.append(.readFailed(text)) }
            lastError = text
            return notes
        case .success(let value):
            if lastError != nil { notes.append(.readWorks) }
            lastError = nil
            found = Reading(input: fastPath ? value.input : [], forward: value.forward, legacy: value.legacy)
        }
        let before = last ?? Reading(input: [], forward: [])
        last = found
        notes += found.input.filter { !before.input.contains($0) }.map(Note.inputDrops)
        notes += before.input.filter { old in !found.input.contains { Self.same($0, old) } }
            .map { Note.inputAccepts(place: $0.place) }
        notes += found.forward.filter { !before.forward.contains($0) }.map(Note.forwardDrops)
        notes += before.forward.filter { old in !found.forward.contains { Self.same($0, old) } }
            .map { Note.forwardAccepts(place: $0.place) }
        notes += found.legacy.filter { before.legacy[$0.key] == nil }.sorted { $0.key < $1.key }
            .map { Note.legacyUnreadable(family: $0.key, error: $0.value) }
        engineInbound = found.input.reduce(into: Set<AddressFamily>()) { $0.formUnion($1.families) }
        return notes
    }

    private static func same(_ a: FastPathFirewall.Finding, _ b: FastPathFirewall.Finding) -> Bool {
        a.place == b.place
    }

    private static func same(_ a: ForwardFirewall.Finding, _ b: ForwardFirewall.Finding) -> Bool {
        a.place == b.place
    }

    /// The log line for `note`, and its level.
    static func message(_ note: Note, tun: String) -> (LogLevel, String) {
        let every = "matd reads the firewall every \(interval / 1_000) s"
        switch note {
        case .inputDrops(let finding):
            return (.warning, "matd: warning: the host firewall's input chain \(finding.place) "
                + "drops by default and does not accept the kernel fast path's packets (mark \(FastPathFirewall.mark)), "
                + "so inbound \(names(finding.families)) HoA traffic goes through the engine (\(tun)) and the fast path "
                + "carries it only outbound. Allow it with: \(finding.fix) (\(every))")
        case .inputAccepts(let place):
            return (.notice, "matd: the host firewall's input chain \(place) no longer drops the kernel fast path's packets")
        case .forwardDrops(let finding):
            return (.warning, "matd: warning: the host firewall's forward chain \(finding.place) "
                + "drops by default, so HoA traffic the engine sends out of \(tun) is dropped. Allow it with: \(finding.fix)")
        case .forwardAccepts(let place):
            return (.notice, "matd: the host firewall's forward chain \(place) no longer drops what \(tun) forwards")
        case .legacyUnreadable(let family, let error):
            let tool = family == "ip" ? "iptables-legacy" : "ip6tables-legacy"
            return (.warning, "matd: warning: a legacy iptables filter table (\(family), not nftables) is loaded and could "
                + "not be read (\(error)). If its INPUT chain drops by default, add: \(tool) -I INPUT -m mark --mark "
                + "\(FastPathFirewall.mark)/\(FastPathFirewall.mark) -j ACCEPT (or set kernel-fast-path = off); if its "
                + "FORWARD chain does: \(tool) -I FORWARD -i \(tun) -j ACCEPT")
        case .readFailed(let error):
            return (.warning, "matd: could not read the host firewall's chains (\(error)); if an input or forward chain "
                + "drops by default, HoA traffic may be dropped. Tried again every \(interval / 1_000) s")
        case .readWorks:
            return (.notice, "matd: the host firewall's chains can be read again")
        }
    }

    /// "IPv4", "IPv6" or "IPv4 and IPv6".
    static func names(_ families: Set<AddressFamily>) -> String {
        families.map { $0 == .ipv4 ? "IPv4" : "IPv6" }.sorted().joined(separator: " and ")
    }
}

/// Reads the host's firewall at start and then every ``HostFirewallWatch/interval`` on a
/// thread of its own (with its own nftables context), logs what changed, and when the
/// families whose inbound the engine must keep change, tells the kernel fast path through
/// `onInboundChange` (the engine writes its rules again).
final class HostFirewallWatcher: @unchecked Sendable {
    // @unchecked: `watch` is touched by the starting thread before the thread starts and by
    // the thread after; others read `published`.
    private let uplinks: [String]
    private let tun: String
    private let ipv6Path: IPv6OutboundPath
    private var watch: HostFirewallWatch
    private let published = Mutex<Set<AddressFamily>>([])
    private let onInboundChange: @Sendable () -> Void
    private let thread = WatcherThread()
    private var nftables: Nftables?

    init(uplinks: [String], tun: String, ipv6Path: IPv6OutboundPath, fastPath: Bool,
         onInboundChange: @escaping @Sendable () -> Void) {
        self.uplinks = uplinks
        self.tun = tun
        self.ipv6Path = ipv6Path
        watch = HostFirewallWatch(fastPath: fastPath)
        self.onInboundChange = onInboundChange
    }

    /// The families whose inbound the engine keeps now (any thread).
    var engineInbound: Set<AddressFamily> { published.withLock { $0 } }

    /// Reads the firewall once (before the engine writes the fast path's first rules), then
    /// keeps reading on a thread. Without a thread the first reading stays in force, logged.
    func start() {
        do {
            nftables = try Nftables()
        } catch {
            log(.warning, "matd: the host firewall cannot be read: \(error); if an input or forward chain drops by default, "
                + "HoA traffic may be dropped")
            return
        }
        read()
        if !thread.start(name: "matd-firewall", { [self] in run() }) {
            log(.warning, "matd: the host firewall is read only at start: no thread; restart matd after changing it")
        }
    }

    /// Stops the thread and waits for it.
    func stop() { thread.stop() }

    private func run() {
        while !thread.isStopping {
            let now = MonotonicClock.milliseconds()
            if now >= watch.nextReading {
                read()
                continue
            }
            thread.sleep(milliseconds: watch.nextReading - now)
        }
    }

    private func read() {
        guard let nftables else { return }
        let started = MonotonicClock.milliseconds()
        let reading: Result<HostFirewallWatch.Reading, SystemError>
        do {
            let legacy = LegacyFirewall.read()
            let input = watch.fastPath ? try FastPathFirewall.findings(uplinks: uplinks, nftables: nftables, legacy: legacy) : []
            let forward = try ForwardFirewall.findings(tun: tun, ipv6Path: ipv6Path, nftables: nftables, legacy: legacy)
            reading = .success(HostFirewallWatch.Reading(input: input, forward: forward, legacy: legacy.unreadable))
        } catch let error as SystemError {
            reading = .failure(error)
        } catch {
            reading = .failure(SystemError("read the host firewall", detail: "\(error)"))
        }
        let now = MonotonicClock.milliseconds()
        let before = watch.engineInbound
        for note in watch.observe(reading, took: now - started, at: now) {
            let (level, text) = HostFirewallWatch.message(note, tun: tun)
            log(level, text)
        }
        guard watch.engineInbound != before else { return }
        let families = watch.engineInbound
        published.withLock { $0 = families }
        onInboundChange()
    }
}
