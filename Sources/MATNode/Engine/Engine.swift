#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket
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

    private let tun: TunDevice
    private var processor: PacketProcessor
    private let buffer: UnsafeMutableRawPointer
    private let bufferSize = VirtioNetHeader.size + 65_536
    private let wakeup: Wakeup
    private let commands = Mutex<[Command]>([])
    private let published = Mutex(EngineCounters())
    private let stopped = Mutex(false)
    private var thread: Thread?
    private let missHandler: @Sendable (IPAddress) -> Void
    /// When each unknown HoA was last reported, so a flow to it asks once per second.
    private var reportedMisses: [IPAddress: UInt64] = [:]
    /// Peers whose outbound packets wait until they confirm this node's new mapping.
    private var held: Set<IPAddress> = []

    /// A change the engine thread applies between packets.
    public enum Command: Sendable {
        case setAddresses(NodeAddresses)
        case replaceMapping(PeerMapping)
        case removeMapping(IPAddress)
        /// Drop outbound packets to this HoA until `.release` (counted as awaiting_binding).
        case hold(IPAddress)
        case release(IPAddress)
    }

    /// Takes over `tun` and the initial mappings; call `start()` to begin. `onMiss` is
    /// called on the engine thread with a HoA that packets are sent to but that has no
    /// mapping (at most once per second per HoA); it must return quickly.
    public init(tun: TunDevice, table: consuming MappingTable, addresses: NodeAddresses,
                onMiss: @escaping @Sendable (IPAddress) -> Void = { _ in }) throws(SystemError) {
        missHandler = onMiss
        self.tun = tun
        processor = PacketProcessor(table: table, addresses: addresses)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
        wakeup = try Wakeup()
    }

    deinit { buffer.deallocate() }

    /// Starts the engine thread.
    public func start() {
        let thread = Thread { [self] in self.loop() }
        thread.name = "matd-engine"
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
    }

    /// Asks the engine thread to apply `command` and returns at once.
    public func send(_ command: Command) {
        commands.withLock { $0.append(command) }
        wakeup.signal()
    }

    /// Stops the engine thread and waits for it to finish.
    public func stop() {
        stopped.withLock { $0 = true }
        wakeup.signal()
        while thread?.isFinished == false { usleep(1_000) }
    }

    /// The counters as of the last publication (at most ~100 ms or 64 packets old).
    public var counters: EngineCounters { published.withLock { $0 } }

    /// A mapping the engine holds and the MoA it sends to now.
    public struct MappingState: Sendable {
        public var mapping: PeerMapping
        public var preferred: IPAddress?
    }

    /// The mappings as of the last change, copied by the engine thread.
    public var mappings: [MappingState] { mappingSnapshot.withLock { $0 } }
    private let mappingSnapshot = Mutex<[MappingState]>([])

    private func loop() {
        var descriptors = [pollfd(fd: tun.fileDescriptor, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)]
        var sincePublish = 0
        applyCommands()
        while !stopped.withLock({ $0 }) {
            let ready = poll(&descriptors, 2, 100)
            if ready < 0 && errno != EINTR { break }
            if descriptors[1].revents != 0 {
                wakeup.drain()
                applyCommands()
            }
            if descriptors[0].revents != 0 {
                // Drain what is waiting, then go back to poll for commands.
                for _ in 0..<64 {
                    guard let length = try? tun.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: bufferSize)),
                          length > 0 else { break }
                    handle(length: length)
                    sincePublish += 1
                }
            }
            if sincePublish >= 64 || ready == 0 {
                publish()
                sincePublish = 0
            }
        }
        publish()
    }

    private func handle(length: Int) {
        guard length > VirtioNetHeader.size else {
            processor.counters.engineDrops[Int(EngineDropReason.badVirtioHeader.rawValue)] &+= 1
            return
        }
        let header = VirtioNetHeader(loadingFrom: UnsafeRawPointer(buffer))
        let packet = buffer + VirtioNetHeader.size
        let packetLength = length - VirtioNetHeader.size
        let direction: PacketProcessor.Direction = isInbound(packet, length: packetLength) ? .inbound : .outbound
        if direction == .outbound && !held.isEmpty && isHeld(packet, length: packetLength) {
            processor.counters.engineDrops[Int(EngineDropReason.awaitingBinding.rawValue)] &+= 1
            return
        }
        guard processor.process(packet, length: packetLength, direction: direction, checksum: header.checksumMode) else {
            if let miss = processor.lastMiss {
                processor.lastMiss = nil
                report(miss)
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
        let now = UInt64(time(nil))
        if let last = reportedMisses[miss], now < last + 1 { return }
        if reportedMisses.count > 4096 { reportedMisses.removeAll(keepingCapacity: true) }
        reportedMisses[miss] = now
        missHandler(miss)
    }

    /// Applications send from the HoA; a packet from elsewhere to this node's MoA was
    /// diverted from the uplink. At home (MoA == HoA) the source alone tells them apart.
    @inline(__always)
    private func isInbound(_ packet: UnsafeMutableRawPointer, length: Int) -> Bool {
        let addresses = processor.addresses
        switch packet.load(as: UInt8.self) >> 4 {
        case 4 where length >= 20:
            let source = IPv4Address(loadingFrom: UnsafeRawPointer(packet), offset: 12)
            let destination = IPv4Address(loadingFrom: UnsafeRawPointer(packet), offset: 16)
            return source != addresses.home4 && destination == addresses.mobile4
        case 6 where length >= 40:
            let source = IPv6Address(loadingFrom: UnsafeRawPointer(packet), offset: 8)
            let destination = IPv6Address(loadingFrom: UnsafeRawPointer(packet), offset: 24)
            return source != addresses.home6 && destination == addresses.mobile6
        default:
            return false
        }
    }

    private func isHeld(_ packet: UnsafeMutableRawPointer, length: Int) -> Bool {
        switch packet.load(as: UInt8.self) >> 4 {
        case 4 where length >= 20:
            held.contains(.v4(IPv4Address(loadingFrom: UnsafeRawPointer(packet), offset: 16)))
        case 6 where length >= 40:
            held.contains(.v6(IPv6Address(loadingFrom: UnsafeRawPointer(packet), offset: 24)))
        default:
            false
        }
    }

    private func applyCommands() {
        let pending = commands.withLock { queue -> [Command] in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        guard !pending.isEmpty || mappingSnapshot.withLock({ $0.isEmpty }) else { return }
        for command in pending {
            switch command {
            case .setAddresses(let addresses):
                processor.addresses = addresses
            case .replaceMapping(let mapping):
                try? processor.table.replace(mapping)
            case .removeMapping(let hoa):
                _ = processor.table.remove(hoa: hoa)
            case .hold(let hoa):
                held.insert(hoa)
            case .release(let hoa):
                held.remove(hoa)
            }
        }
        let snapshot = processor.table.mappings.map {
            MappingState(mapping: $0, preferred: processor.table.preferredMoA(forHoA: $0.hoa))
        }
        mappingSnapshot.withLock { $0 = snapshot }
    }

    /// Copies the counters field by field into preallocated storage, so publishing never
    /// makes the engine's own arrays shared (which would cost a copy on the next drop).
    private func publish() {
        let counters = processor.counters
        published.withLock { shared in
            shared.outboundPackets = counters.outboundPackets
            shared.outboundBytes = counters.outboundBytes
            shared.inboundPackets = counters.inboundPackets
            shared.inboundBytes = counters.inboundBytes
            shared.superPackets = counters.superPackets
            for index in shared.packetDrops.indices { shared.packetDrops[index] = counters.packetDrops[index] }
            for index in shared.engineDrops.indices { shared.engineDrops[index] = counters.engineDrops[index] }
        }
    }
}
