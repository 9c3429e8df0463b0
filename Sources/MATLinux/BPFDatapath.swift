#if canImport(Glibc)
import Glibc
#endif
import MATBPF
import MATPacket

/// The BPF datapath of one node, IPv4 (docs/datapath.md, "The BPF datapath"): its maps,
/// the two programs of ``TranslationPrograms`` built for its own addresses, attached
/// (``BPFSystem/attach(program:name:interfaceIndex:point:)``: tcx, or tc filters) at
/// egress of the TUN device and ingress of each uplink given, in the
/// calling thread's network namespace. Peers are map elements, each direction on its own
/// (``setOutbound(home:mobile:nextHop:interfaceIndex:)``, ``setInbound(mobile:home:)``);
/// ``close()`` detaches the programs, and the maps go with the last reference.
public final class BPFDatapath: @unchecked Sendable {
    // @unchecked: used by one thread at a time (its owner); the descriptors change only in init and close.
    private var descriptors: [Int32] = []
    private var attachments: [BPFAttachment] = []
    private let outboundMap: Int32, inboundMap: Int32, counterMap: Int32, heardMap: Int32
    /// Where the last ``heard(limit:)`` stopped in the heard map (nil: at its start).
    private var heardCursor: [UInt8]?
    /// The MoA-to-MoA guard's maps (``MoAGuard``): flows the host opened from its MoA, and
    /// the services bound to the MoA as last written (``setServices(_:)``).
    private let flowMap: Int32, serviceMap: Int32
    /// The guard's state (``MoAGuard/stateMap``): a flow noted, the services bound.
    private let guardState: Int32
    private var services: Set<Service> = []
    private let uplinkIndex: UInt32

    /// The datapath of the one uplink `uplink`: peers' packets go out of it, and come in on it.
    public convenience init(home: IPv4Address, mobile: IPv4Address, localPorts: [UInt16], tun: String, uplink: String,
                            maxPeers: Int = 65_536) throws(SystemError) {
        try self.init(home: home, mobile: mobile, localPorts: localPorts, tun: tun, uplinks: [uplink], maxPeers: maxPeers)
    }

    /// A socket bound to the own MoA (``setServices(_:)``).
    public struct Service: Hashable, Sendable {
        /// 6 (a TCP listener) or 17 (a UDP socket).
        public var proto: UInt8
        /// The MoA's IP version, 4 or 6.
        public var version: UInt8
        public var port: UInt16

        public init(protocol proto: UInt8, version: UInt8, port: UInt16) {
            self.proto = proto
            self.version = version
            self.port = port
        }

        /// Its key in the guard's service map.
        var key: [UInt8] { MoAGuard.serviceKey(protocol: proto, version: version, port: port) }
    }

    /// Flows of the host's own MoA the guard remembers; the least recently used make room.
    public static let guardedFlows = 16_384
    /// Services bound to the MoA the guard's map holds (more are left to the engine: logged
    /// by ``setServices(_:)``'s caller).
    public static let boundServices = 1_024

    /// Builds the maps and programs and attaches them: the outbound program at egress of
    /// `tun`, the inbound one at ingress of every interface of `uplinks` and the
    /// MoA-to-MoA guard's flow program (``MoAGuard/flows(_:)``) at their egress (none:
    /// nothing is translated inbound; ``setPeer(home:mobile:nextHop:)`` sends out of the first).
    /// Throws (detaching and closing what it made) when the kernel refuses a program or its attach.
    public init(home: IPv4Address, mobile: IPv4Address, localPorts: [UInt16], tun: String, uplinks: [String],
                maxPeers: Int = 65_536) throws(SystemError) {
        let tunIndex = if_nametoindex(tun)
        guard tunIndex != 0 else { throw SystemError("BPF datapath: interface \(tun)", errno: errno) }
        var uplinkIndices: [UInt32] = []
        for uplink in uplinks {
            let index = if_nametoindex(uplink)
            guard index != 0 else { throw SystemError("BPF datapath: interface \(uplink)", errno: errno) }
            uplinkIndices.append(index)
        }
        self.uplinkIndex = uplinkIndices.first ?? 0
        var made: [Int32] = [], attached: [BPFAttachment] = []
        do throws(SystemError) {
            outboundMap = try BPFSystem.createMap(.hash, keySize: 4, valueSize: TranslationPrograms.OutboundValue.size,
                                                  maxEntries: maxPeers, name: "mat_out4")
            made.append(outboundMap)
            inboundMap = try BPFSystem.createMap(.hash, keySize: 4, valueSize: 4, maxEntries: maxPeers, name: "mat_in4")
            made.append(inboundMap)
            counterMap = try BPFSystem.createMap(.perCPUArray, keySize: 4, valueSize: TranslationPrograms.counterValueSize,
                                                 maxEntries: 2, name: "mat_counts")
            made.append(counterMap)
            heardMap = try BPFSystem.createMap(.hash, keySize: 4, valueSize: 8, maxEntries: maxPeers, name: "mat_heard4")
            made.append(heardMap)
            flowMap = try BPFSystem.createMap(.lruHash, keySize: MoAGuard.flowKeySize(addressLength: 4), valueSize: 8,
                                              maxEntries: Self.guardedFlows, name: "mat_flows4")
            made.append(flowMap)
            serviceMap = try BPFSystem.createMap(.hash, keySize: 4, valueSize: 4, maxEntries: Self.boundServices, name: "mat_services")
            made.append(serviceMap)
            guardState = try BPFSystem.createMap(.array, keySize: 4, valueSize: 4, maxEntries: 2, name: "mat_guard4")
            made.append(guardState)
            let parameters = TranslationPrograms.Parameters(home: home.value, mobile: mobile.value, localPorts: localPorts,
                                                            outboundMap: outboundMap, inboundMap: inboundMap, counterMap: counterMap,
                                                            heardMap: heardMap, moaGuard: MoAGuard(flowMap: flowMap, serviceMap: serviceMap,
                                                                                                   stateMap: guardState))
            let outbound: [Instruction], inbound: [Instruction], flows: [Instruction]
            do {
                outbound = try TranslationPrograms.outbound(parameters)
                inbound = try TranslationPrograms.inbound(parameters)
                flows = try MoAGuard.flows(parameters)
            } catch {
                throw SystemError("BPF datapath: assemble", detail: "\(error)")
            }
            let outProgram = try BPFSystem.loadProgram(outbound, name: "mat_out4")
            made.append(outProgram)
            attached.append(try BPFSystem.attach(program: outProgram, name: "mat_out4", interfaceIndex: tunIndex, point: .tcxEgress))
            if !uplinkIndices.isEmpty {
                let inProgram = try BPFSystem.loadProgram(inbound, name: "mat_in4")
                made.append(inProgram)
                let flowProgram = try BPFSystem.loadProgram(flows, name: "mat_flows4")
                made.append(flowProgram)
                for index in uplinkIndices {
                    // The flows first: a reply may come in as soon as the inbound program is there.
                    attached.append(try BPFSystem.attach(program: flowProgram, name: "mat_flows4", interfaceIndex: index, point: .tcxEgress))
                    attached.append(try BPFSystem.attach(program: inProgram, name: "mat_in4", interfaceIndex: index, point: .tcxIngress))
                }
            }
        } catch {
            for attachment in attached.reversed() { attachment.detach() }
            for fd in made.reversed() { Glibc.close(fd) }
            throw error
        }
        descriptors = made
        attachments = attached
    }

    deinit { close() }

    /// Detaches the programs (``BPFAttachment/detach()``) and lets go of the maps. Idempotent.
    public func close() {
        for attachment in attachments.reversed() { attachment.detach() }
        attachments = []
        for fd in descriptors.reversed() { Glibc.close(fd) }
        descriptors = []
    }

    /// `home`'s packets go to `mobile` via `nextHop` (its MoA itself when on the link) out
    /// of the first uplink, and packets from `mobile` are `home`'s.
    public func setPeer(home: IPv4Address, mobile: IPv4Address, nextHop: IPv4Address) throws(SystemError) {
        try setOutbound(home: home, mobile: mobile, nextHop: nextHop, interfaceIndex: uplinkIndex)
        try setInbound(mobile: mobile, home: home)
    }

    /// Takes `home` (at `mobile`) off the datapath: its packets go to the TUN device again.
    public func removePeer(home: IPv4Address, mobile: IPv4Address) throws(SystemError) {
        try removeOutbound(home: home)
        try removeInbound(mobile: mobile)
    }

    /// `home`'s packets go to `mobile`, handed to `nextHop` on the interface with index
    /// `interfaceIndex` (added or replaced).
    public func setOutbound(home: IPv4Address, mobile: IPv4Address, nextHop: IPv4Address, interfaceIndex: UInt32) throws(SystemError) {
        let value = TranslationPrograms.OutboundValue(mobile: mobile.value, nextHop: nextHop.value, interfaceIndex: interfaceIndex)
        try BPFSystem.update(map: outboundMap, key: TranslationPrograms.key(home.value), value: value.bytes)
    }

    /// Packets from `mobile` are `home`'s (added or replaced).
    public func setInbound(mobile: IPv4Address, home: IPv4Address) throws(SystemError) {
        try BPFSystem.update(map: inboundMap, key: TranslationPrograms.key(mobile.value), value: TranslationPrograms.key(home.value))
    }

    /// `home`'s packets go to the TUN device again; false when it was not in the map.
    @discardableResult
    public func removeOutbound(home: IPv4Address) throws(SystemError) -> Bool {
        try BPFSystem.delete(map: outboundMap, key: TranslationPrograms.key(home.value))
    }

    /// Packets from `mobile` go up the stack untranslated again; false when it was not in the map.
    @discardableResult
    public func removeInbound(mobile: IPv4Address) throws(SystemError) -> Bool {
        try BPFSystem.delete(map: inboundMap, key: TranslationPrograms.key(mobile.value))
    }

    /// The peers (HoAs) whose packets the inbound program translated, each with the
    /// CLOCK_MONOTONIC time (ns) of one at most a second before its last: `limit` of them
    /// at most, after those the last call returned, so a read costs `limit` lookups however
    /// many peers the map has, and the calls go round the map.
    public func heard(limit: Int = .max) throws(SystemError) -> [(home: IPv4Address, nanoseconds: UInt64)] {
        var heard: [(home: IPv4Address, nanoseconds: UInt64)] = []
        let keys = try BPFSystem.keys(map: heardMap, keySize: 4, after: heardCursor, limit: limit)
        // The next call goes on after the last key read, or from the start past the end.
        heardCursor = keys.count < limit ? nil : keys.last
        for key in keys {
            // Deleted since the walk (the peer left): not heard.
            guard let value = try BPFSystem.lookup(map: heardMap, key: key, valueSize: 8) else { continue }
            let home = IPv4Address(key.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            heard.append((home, (0..<8).reduce(UInt64(0)) { $0 | UInt64(value[$1]) << (8 * $1) }))
        }
        return heard
    }

    /// Makes the guard's service map hold `wanted` (only what changed is written): traffic
    /// from peers' MoAs to these sockets bound to the own MoA is left alone. Throws when
    /// the kernel refuses a write (the map full: ``boundServices``); what was written stays.
    public func setServices(_ wanted: Set<Service>) throws(SystemError) {
        // The guard's state says "services bound" before the first goes in and while any
        // may be there (a write that fails half way leaves it so).
        if !wanted.isEmpty { try setServicesBound(max(services.count, wanted.count)) }
        for service in services.subtracting(wanted) {
            try BPFSystem.delete(map: serviceMap, key: service.key)
            services.remove(service)
        }
        for service in wanted.subtracting(services) {
            try BPFSystem.update(map: serviceMap, key: service.key, value: [0, 0, 0, 0])
            services.insert(service)
        }
        try setServicesBound(services.count)
    }

    private func setServicesBound(_ count: Int) throws(SystemError) {
        try BPFSystem.update(map: guardState, key: withUnsafeBytes(of: MoAGuard.servicesBound.littleEndian) { Array($0) },
                             value: withUnsafeBytes(of: UInt32(count).littleEndian) { Array($0) })
    }

    /// Forgets when `home` was heard (it left the maps); false when it was not noted.
    @discardableResult
    public func forgetHeard(home: IPv4Address) throws(SystemError) -> Bool {
        try BPFSystem.delete(map: heardMap, key: TranslationPrograms.key(home.value))
    }

    /// Packets the programs translated: outbound and inbound, summed over the CPUs.
    public func translated() throws(SystemError) -> (outbound: UInt64, inbound: UInt64) {
        let counts = try counted()
        return (counts.outbound.packets, counts.inbound.packets)
    }

    /// Packets and bytes the programs translated, outbound and inbound, summed over the CPUs.
    public func counted() throws(SystemError) -> (outbound: BPFSystem.Count, inbound: BPFSystem.Count) {
        (try BPFSystem.count(map: counterMap, index: 0), try BPFSystem.count(map: counterMap, index: 1))
    }
}
