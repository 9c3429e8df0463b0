#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket
import MATSignaling
import Synchronization

/// The packet engine: one thread that reads packets (GSO super-packets included) from the
/// TUN device, translates each once in its buffer and writes it back.
///
/// Packets of both directions come out of the same device: applications' packets (routed
/// into it by the domain-prefix routes) and peers' packets diverted from the uplink by the
/// nftables ingress rule. A packet to this node's MoA is inbound; anything else outbound.
/// Written back, the kernel delivers the first kind locally and forwards the second out of
/// the uplink.
public final class Engine: @unchecked Sendable {
    // @unchecked: `processor` and `buffer` are touched only by the engine thread; other
    // threads reach the engine through `commands`, `published` and `wakeup` only.

    let tun: TunDevice
    var processor: PacketProcessor
    /// Where packets are read to: `storage` after room for an encapsulation header, so a
    /// packet that goes in UDP is sent from where it was read.
    let buffer: UnsafeMutableRawPointer
    private let storage: UnsafeMutableRawPointer
    private let bufferSize = VirtioNetHeader.size + 65_536
    let wakeup: Wakeup
    private let commands = Mutex<[Command]>([])
    private let published = Mutex(EngineCounters())
    private let stopped = Mutex(false)
    private var thread: SystemThread?
    private let missHandler: @Sendable (IPAddress) -> Void
    private let refusalHandler: @Sendable (PacketProcessor.Refusal) -> Void
    /// Unknown HoAs are reported at most once a second each.
    private var missReports = AddressThrottle(interval: 1_000)
    /// Listing requests (`matctl peers`) waiting for the engine thread.
    let snapshotRequests = Mutex<[MappingSnapshotTicket]>([])
    /// The listing under way, read a part per turn (Engine+Listing.swift).
    var listingRun: ListingRun?
    let publishedListing = Mutex<ListingFigures?>(nil)
    private let publishedMappingCount: Mutex<Int>
    /// Failed TUN reads: counted, logged once a second, each followed by a pause.
    private var readFailures = ReadFailures()
    /// When to poll without sleeping (after traffic) and when to block (idle).
    private var busyPoll: BusyPollPolicy
    /// The UDP encapsulation (nil: `udp-encapsulation = off`), whether any peer's traffic
    /// goes in it now, the service's changes to it, and what the service is told.
    let encap: EncapPath?
    var encapActive = false
    let encapCommands = Mutex<[EncapCommand]>([])
    let publishedEncap = Mutex(EncapCounters())
    /// The relay's counters and bindings (`[relay] serve = on`), as of the last publication.
    let publishedRelay = Mutex<(counters: RelayForwarder.Counters, bindings: Int)?>(nil)
    /// The MoAs in UDP that changed since the service last took them, for the service.
    let publishedEncapMoAs = Mutex(EncapMoAChanges())
    let probeAnswerHandler: @Sendable (IPAddress, [UInt8]) -> Void
    var lastEncapExpiry: UInt64 = 0
    /// The kernel fast path (nil: off); set before `start()`. Its rules are derived from
    /// this thread's state after every change (``FastPathRuleset``).
    public var fastPath: KernelFastPath?
    private var fastPathStale = true
    /// Set by another thread to have the fast path's rules written again (``refreshFastPathRules()``).
    private let fastPathRequested = Atomic<Bool>(false)

    /// Asks the engine thread to write the kernel fast path's rules again at once: what they
    /// depend on outside the engine changed (the host firewall's input chains,
    /// ``HostFirewallWatcher``).
    func refreshFastPathRules() {
        fastPathRequested.store(true, ordering: .releasing)
        wakeup.signal()
    }

    /// A change the engine thread applies between packets.
    public typealias Command = PacketProcessor.Command

    /// Takes over `tun` and the initial mappings; call `start()` to begin. `onMiss` is
    /// called on the engine thread with a HoA that packets are sent to but that has no
    /// mapping (at most once per second per HoA); `onRefusal` with a mapping the table
    /// refused. Both must return quickly.
    public init(tun: TunDevice, table: consuming MappingTable, addresses: NodeAddresses,
                onMiss: @escaping @Sendable (IPAddress) -> Void = { _ in },
                onRefusal: @escaping @Sendable (PacketProcessor.Refusal) -> Void = { _ in },
                encap: EncapPath? = nil,
                onProbeAnswer: @escaping @Sendable (IPAddress, [UInt8]) -> Void = { _, _ in }) throws(SystemError) {
        missHandler = onMiss
        refusalHandler = onRefusal
        self.encap = encap
        probeAnswerHandler = onProbeAnswer
        self.tun = tun
        publishedMappingCount = Mutex(table.count)
        processor = PacketProcessor(table: table, addresses: addresses)
        busyPoll = BusyPollPolicy(windowMicroseconds: BusyPollPolicy.windowMicroseconds(
            fromEnvironment: ProcessInfo.processInfo.environment[BusyPollPolicy.environmentVariable]))
        storage = UnsafeMutableRawPointer.allocate(byteCount: EncapWire.headerLength + bufferSize, alignment: 16)
        buffer = storage + EncapWire.headerLength
        let slotSize = VirtioNetHeader.size + 65_536
        heldBuffers = (0..<PacketHolds.slotCount).map { _ in UnsafeMutableRawPointer.allocate(byteCount: slotSize, alignment: 16) }
        wakeup = try Wakeup()
    }

    deinit {
        storage.deallocate()
        for bytes in heldBuffers { bytes.deallocate() }
    }

    /// The packets kept while their peer is held or their path unvalidated
    /// (``PacketHolds``), buffer `i` holding the packet of `holds.slots[i]`.
    private var holds = PacketHolds()
    private let heldBuffers: [UnsafeMutableRawPointer]

    /// Starts the engine thread.
    /// Throws when the system gives no thread.
    public func start() throws(SystemError) {
        guard let thread = SystemThread.start(name: "matd-engine", stackSize: 1 << 20, { [self] in self.loop() }) else {
            throw SystemError("start the engine thread", detail: "no thread to be had")
        }
        self.thread = thread
    }

    /// Asks the engine thread to apply `command` and returns at once.
    public func send(_ command: Command) {
        commands.withLock { $0.append(command) }
        wakeup.signal()
    }

    /// Asks the engine thread to apply `commands` in order, with one wakeup (a move holds
    /// every peer at once).
    public func send(_ batch: [Command]) {
        guard !batch.isEmpty else { return }
        commands.withLock { $0.append(contentsOf: batch) }
        wakeup.signal()
    }

    /// Stops the engine thread and waits for it to finish.
    public func stop() {
        stopped.withLock { $0 = true }
        wakeup.signal()
        thread?.join()
        thread = nil
    }

    /// The counters as of the last publication (at most ~100 ms or 64 packets old).
    public var counters: EngineCounters { published.withLock { $0 } }

    /// The peers (HoAs) whose packets the engine translated inbound or delivered from a
    /// carried (encapsulated) packet since the last call, as of its last publication: what
    /// idle probing counts as hearing from them. The kernel fast path's packets are not among them.
    public func takeInboundPeers() -> Set<IPAddress> {
        publishedInbound.withLock { peers in
            defer { peers.removeAll(keepingCapacity: true) }
            return peers
        }
    }
    private let publishedInbound = Mutex<Set<IPAddress>>([])

    /// A mapping the engine holds and the MoA it sends to now.
    public struct MappingState: Sendable {
        public var mapping: PeerMapping
        public var preferred: IPAddress?
        /// Whether its traffic goes in UDP (docs/datapath.md, "Behind NAT").
        public var encapsulated = false
        /// Whether that traffic goes through the relay (docs/signaling.md, "Relay").
        public var relayed = false
        /// Whether the kernel translates its packets (docs/datapath.md, "Kernel fast path").
        public var fastPath = false
    }

    /// When the engine thread last came round its loop (monotonic milliseconds): at least
    /// every 100 ms while it is healthy, for the service manager's watchdog.
    public var lastTurn: UInt64 { turned.withLock { $0 } }
    private let turned = Mutex(MonotonicClock.milliseconds())
    private var lastTurnShown: UInt64 = 0

    /// The number of mappings in the table as of the last change.
    public var mappingCount: Int { publishedMappingCount.withLock { $0 } }

    private func loop() {
        var descriptors = [pollfd(fd: tun.fileDescriptor, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)]
            + (encap?.fileDescriptors ?? []).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        var sincePublish = 0
        var timeout = BusyPollPolicy.idleTimeoutMilliseconds
        applyCommands()
        while !stopped.withLock({ $0 }) {
            let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
            if ready < 0 && errno != EINTR { break }
            if descriptors[1].revents != 0 {
                wakeup.drain()
                applyCommands()
            } else if hasCommandBacklog {
                applyCommands()
            }
            var handled = 0
            if ready > 0 && descriptors[0].revents != 0 {
                // Drain what is waiting, then go back to poll for commands.
                for _ in 0..<64 {
                    let length: Int?
                    do {
                        length = try tun.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: bufferSize))
                    } catch {
                        readFailed(error)
                        break
                    }
                    guard let length, length > 0 else { break }
                    handle(length: length)
                    handled += 1
                }
            }
            if ready > 0 && descriptors.count > 2 {
                for index in 2..<descriptors.count where descriptors[index].revents != 0 {
                    handled += receiveEncapsulated(descriptor: descriptors[index].fd)
                }
                // A peer's first keepalive puts its traffic in UDP here, not through a
                // command: its kernel fast-path elements must go before its next packet.
                if let encap, !encap.endpoints.changed.isEmpty {
                    let changed = publishEncapMoAs(encap)
                    if fastPath != nil { refreshFastPath(encapsulationChanged: changed) }
                }
            }
            // Encapsulated packets count too: a peer's steady flow in UDP never leaves a
            // poll empty, and its marks and counters must not wait for one.
            sincePublish += handled
            let nanoseconds = MonotonicClock.nanoseconds()
            if handled > 0 { busyPoll.trafficSeen(at: nanoseconds) }
            timeout = busyPoll.pollTimeout(at: nanoseconds)
            // Peers joining the kernel fast path are written a part at a time, every few
            // milliseconds, not one transaction per command.
            if let fastPath, fastPath.hasBacklog {
                if fastPath.backlogDue(at: nanoseconds / 1_000_000) { refreshFastPath() }
                timeout = min(timeout, KernelFastPath.backlogIntervalMilliseconds)
            }
            // A listing of the table reads a part per turn and comes back at once for the
            // next, as do commands left for the next turn.
            if hasCommandBacklog { timeout = 0 }
            if listingRun != nil {
                continueListing()
                timeout = 0
            }
            if timeout == 0 && handled == 0 {
                // An empty turn of the spin: let a thread this one woke on its CPU (the
                // peer's engine, the application the packet went to) run first.
                sched_yield()
            }
            let now = nanoseconds / 1_000_000
            if now >= lastTurnShown + 100 {
                turned.withLock { $0 = now }
                lastTurnShown = now
            }
            // Every 64 packets, and when a poll finds nothing and the next one will sleep
            // (an idle timeout, the end of a spin); not on every empty turn of a spin.
            if sincePublish >= 64 || (ready == 0 && timeout != 0) {
                publish()
                sincePublish = 0
            }
        }
        publish()
    }

    /// Copies the packet in `buffer` (virtio header included) into the slot ``PacketHolds``
    /// gives its flow. Runs only for packets a hold or an unvalidated path's budget dropped.
    private func keepHeld(_ peer: IPAddress, waitingFor moa: IPAddress?, length: Int) {
        let flow = PacketFlow(packet: UnsafeRawPointer(buffer + VirtioNetHeader.size),
                              length: length - VirtioNetHeader.size, peer: peer)
        let index = holds.keep(flow, waitingFor: moa, length: length)
        heldBuffers[index].copyMemory(from: buffer, byteCount: length)
    }

    /// Translates and writes the kept packets of `slots`, in that order.
    private func sendKept(_ slots: [Int]) {
        for index in slots {
            let bytes = heldBuffers[index]
            let length = holds.slots[index].length
            let header = VirtioNetHeader(loadingFrom: UnsafeRawPointer(bytes))
            guard processor.handle(bytes + VirtioNetHeader.size, length: length - VirtioNetHeader.size,
                                   checksum: header.checksumMode) else {
                // Refused again (held anew, another unvalidated path): gone, not kept for
                // later, and no note of it may be taken for the next packet read.
                processor.lastHeld = nil
                processor.lastLimited = nil
                processor.lastMiss = nil
                continue
            }
            do {
                try tun.write(UnsafeRawBufferPointer(start: bytes, count: length))
                processor.counters.heldPacketsSent &+= 1
            } catch {
                processor.counters.engineDrops[Int(EngineDropReason.writeFailed.rawValue)] &+= 1
            }
        }
    }

    /// A failed read is counted and logged (once a second at most); a device that keeps
    /// failing is polled again after a pause instead of in a busy loop.
    private func readFailed(_ error: SystemError) {
        let decision = readFailures.failed(now: MonotonicClock.milliseconds())
        processor.counters.tunReadErrors = decision.count
        if decision.log { log("matd: engine: \(error) (\(decision.count) failed reads so far)") }
        usleep(decision.pauseMicroseconds)
    }

    private func handle(length: Int) {
        guard length > VirtioNetHeader.size else {
            processor.counters.engineDrops[Int(EngineDropReason.badVirtioHeader.rawValue)] &+= 1
            return
        }
        if encapActive && sendEncapsulated(length: length) { return }
        let header = VirtioNetHeader(loadingFrom: UnsafeRawPointer(buffer))
        guard processor.handle(buffer + VirtioNetHeader.size, length: length - VirtioNetHeader.size,
                               checksum: header.checksumMode) else {
            if let miss = processor.lastMiss {
                processor.lastMiss = nil
                report(miss)
            }
            if let peer = processor.lastHeld {
                processor.lastHeld = nil
                keepHeld(peer, waitingFor: nil, length: length)
            }
            if let limited = processor.lastLimited {
                processor.lastLimited = nil
                keepHeld(limited.peer, waitingFor: limited.moa, length: length)
            }
            return
        }
        if header.gsoTypeRaw != 0 { processor.counters.superPackets &+= 1 }
        do {
            try tun.write(UnsafeRawBufferPointer(start: buffer, count: length))
        } catch {
            processor.counters.engineDrops[Int(EngineDropReason.writeFailed.rawValue)] &+= 1
        }
    }

    private func report(_ miss: IPAddress) {
        if missReports.take(miss, now: MonotonicClock.milliseconds()) { missHandler(miss) }
    }

    /// Commands taken from `commands` and not applied yet, from `commandBacklogNext` on: at
    /// most ``commandsPerTurn`` go per turn of the loop, so a move's 100,000 holds do not
    /// keep packets waiting for all of them (docs/benchmarks.md, "Scale").
    private var commandBacklog: [Command] = []
    private var commandBacklogNext = 0
    /// Commands applied per turn of the loop.
    public static let commandsPerTurn = 2_048
    var hasCommandBacklog: Bool { commandBacklogNext < commandBacklog.count }

    private func applyCommands() {
        let fromBacklog = hasCommandBacklog
        if !fromBacklog {
            commandBacklog.removeAll(keepingCapacity: true)
            commandBacklogNext = 0
            commands.withLock { swap(&$0, &commandBacklog) }
            // A move's batch holds every peer: room for them at once, or one turn would
            // rehash the set of held peers whole (O(peers), the turn's cost at 100,000).
            if commandBacklog.count > Self.commandsPerTurn {
                processor.held.reserveCapacity(processor.held.count + commandBacklog.count)
            }
        }
        let end = min(commandBacklog.count, commandBacklogNext + Self.commandsPerTurn)
        let pending = Array(commandBacklog[commandBacklogNext..<end])
        commandBacklogNext = end
        for command in pending {
            if let refusal = processor.apply(command) { refusalHandler(refusal) }
            sendKept(holds.ended(by: command))
        }
        // After every command sent before them, as when all went in one turn. What went in
        // or out of UDP comes from the endpoints' changes: O(them), not a diff of every MoA.
        let encapChanged = hasCommandBacklog ? [] : applyEncapCommands()
        // Commands sent while the backlog went had their wakeup taken by a turn that left
        // them queued: the next turn takes them.
        if fromBacklog && !hasCommandBacklog && commands.withLock({ !$0.isEmpty }) { wakeup.signal() }
        let requested = fastPathRequested.exchange(false, ordering: .acquiring)
        if requested || fastPathStale || !pending.isEmpty || !encapChanged.isEmpty || fastPath?.backlogFull == true {
            fastPathStale = false
            refreshFastPath(pending, encapsulationChanged: encapChanged)
        }
        if !pending.isEmpty {
            let count = processor.table.count
            publishedMappingCount.withLock { $0 = count }
        }
        startListingIfAsked()
    }

    /// Points the kernel fast path at what this thread's state allows now: run after every
    /// change, before the next packet is read, so a peer about to be held has no element
    /// left by the time the engine looks at its packets. Decides only for the HoAs that
    /// `commands` and the MoAs put in or taken out of UDP (`encapsulationChanged`) touched
    /// and the kernel's maps hold; a touched HoA not in them joins the backlog, whose next
    /// part is decided on when due (the whole table goes there once at start and after a
    /// failed write; the engine comes back at once while a full part waits).
    private func refreshFastPath(_ commands: [Command] = [], encapsulationChanged: Set<IPAddress> = []) {
        guard let fastPath else { return }
        if fastPath.wantsAllPeers { fastPath.restart(with: processor.table.mappings.map(\.hoa)) }
        var hoas: Set<IPAddress> = []
        var moas = encapsulationChanged
        for command in commands {
            switch command {
            case .replaceMapping(let mapping): hoas.insert(mapping.hoa)
            case .removeMapping(let hoa), .hold(let hoa), .release(let hoa): hoas.insert(hoa)
            case .limitUntilValidated(let moa, _), .limitUntilProven(let moa), .endLimit(let moa, _): moas.insert(moa)
            case .setAddresses, .holdFamily, .releaseFamily: break   // the rules' part (FastPathRuleset.families, .gated)
            }
        }
        for moa in moas {
            if let hoa = processor.table.hoa(forMoA: moa) { hoas.insert(hoa) }
            if let hoa = fastPath.owner(ofMoA: moa) { hoas.insert(hoa) }
        }
        for hoa in hoas where !fastPath.holds(hoa) {
            hoas.remove(hoa)
            fastPath.enqueue(hoa)
        }
        let now = MonotonicClock.milliseconds()
        if fastPath.backlogDue(at: now) { hoas.formUnion(fastPath.takeBacklog(at: now)) }
        let unvalidated = Set(processor.unvalidated.keys)
        // The engine's own set, passed by reference and never kept: no copy of it.
        let encapsulated = encap?.endpoints.moas ?? []
        var decisions: [IPAddress: FastPathRuleset.Peer?] = [:]
        for hoa in hoas {
            let peer = processor.table.mapping(for: hoa).flatMap {
                FastPathRuleset.peer(for: $0, preferred: processor.table.preferredMoA(forHoA: hoa), held: processor.held,
                                     unvalidated: unvalidated, encapsulated: encapsulated, domainPrefixes: fastPath.domainPrefixes)
            }
            decisions.updateValue(peer, forKey: hoa)   // nil kept: no peer on the fast path
        }
        var ruleset = FastPathRuleset(addresses: processor.addresses, domainPrefixes: fastPath.domainPrefixes)
        // A family a move holds: the kernel translates only the peers released from the
        // hold; the engine holds the others' packets.
        ruleset.gated = processor.familyHolds.families.intersection(ruleset.families)
        fastPath.update(ruleset, decisions: decisions, gated: FastPathGates.changes(commands, holds: processor.familyHolds))
        if fastPath.backlogFull { wakeup.signal() }
    }

    /// Copies the counters field by field into preallocated storage, so publishing never
    /// makes the engine's own arrays shared (which would cost a copy on the next drop).
    private func publish() {
        if !processor.inboundPeers.isEmpty {
            let peers = processor.inboundPeers.take()
            // Bounded even if nobody takes them: a busy node has more to do than grow this.
            publishedInbound.withLock { if $0.count < 4_096 { $0.formUnion(peers) } }
        }
        let counters = processor.counters
        published.withLock { shared in
            shared.outboundPackets = counters.outboundPackets
            shared.outboundBytes = counters.outboundBytes
            shared.inboundPackets = counters.inboundPackets
            shared.inboundBytes = counters.inboundBytes
            shared.superPackets = counters.superPackets
            shared.tunReadErrors = counters.tunReadErrors
            shared.refusedMappings = counters.refusedMappings
            shared.heldPacketsSent = counters.heldPacketsSent
            for index in shared.packetDrops.indices { shared.packetDrops[index] = counters.packetDrops[index] }
            for index in shared.engineDrops.indices { shared.engineDrops[index] = counters.engineDrops[index] }
        }
        if let encap {
            let counters = encap.counters
            publishedEncap.withLock { $0 = counters }
            if let relay = encap.relay { publishRelay(relay) }
        }
    }
}
