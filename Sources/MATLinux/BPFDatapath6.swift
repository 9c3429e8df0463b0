#if canImport(Glibc)
import Glibc
#endif
import MATBPF
import MATPacket

/// The BPF datapath of one node, IPv6 (docs/datapath.md, "The BPF datapath"): what
/// ``BPFDatapath`` is for IPv4, with the programs of ``TranslationPrograms6`` and maps of
/// their own (`mat_out6`, `mat_in6`, `mat_heard6`, `mat_counts6`), attached beside the IPv4
/// ones (each leaves the other family's packets to the next program).
public final class BPFDatapath6: @unchecked Sendable {
    // @unchecked: used by one thread at a time (its owner); the descriptors change only in init and close.
    private var descriptors: [Int32] = []
    private var attachments: [BPFAttachment] = []
    private let outboundMap: Int32, inboundMap: Int32, counterMap: Int32, heardMap: Int32
    /// Where the last ``heard(limit:)`` stopped in the heard map (nil: at its start).
    private var heardCursor: [UInt8]?

    /// Builds the maps and programs and attaches them (tcx, or tc filters): the outbound
    /// program at egress of `tun`, the inbound one at ingress of every interface of `uplinks`.
    /// `completeChecksumFlag`: ``TranslationPrograms6/Parameters/completeChecksumFlag``, on
    /// only where the kernel takes it (``BPFSystem/ipv6ChecksumFlagSupported``). Throws,
    /// closing what it made, when the kernel refuses a map, a program or a link.
    public init(home: IPv6Address, mobile: IPv6Address, localPorts: [UInt16], tun: String, uplinks: [String],
                completeChecksumFlag: Bool = BPFSystem.ipv6ChecksumFlagSupported, maxPeers: Int = 65_536) throws(SystemError) {
        let tunIndex = if_nametoindex(tun)
        guard tunIndex != 0 else { throw SystemError("BPF datapath: interface \(tun)", errno: errno) }
        var uplinkIndices: [UInt32] = []
        for uplink in uplinks {
            let index = if_nametoindex(uplink)
            guard index != 0 else { throw SystemError("BPF datapath: interface \(uplink)", errno: errno) }
            uplinkIndices.append(index)
        }
        var made: [Int32] = [], attached: [BPFAttachment] = []
        do throws(SystemError) {
            outboundMap = try BPFSystem.createMap(.hash, keySize: 16, valueSize: TranslationPrograms6.OutboundValue.size,
                                                  maxEntries: maxPeers, name: "mat_out6")
            made.append(outboundMap)
            inboundMap = try BPFSystem.createMap(.hash, keySize: 16, valueSize: 16, maxEntries: maxPeers, name: "mat_in6")
            made.append(inboundMap)
            // Four counters: the IPv6 programs count into 2 and 3 (0 and 1 are IPv4's where one map serves both).
            counterMap = try BPFSystem.createMap(.perCPUArray, keySize: 4, valueSize: TranslationPrograms.counterValueSize,
                                                 maxEntries: 4, name: "mat_counts6")
            made.append(counterMap)
            heardMap = try BPFSystem.createMap(.hash, keySize: 16, valueSize: 8, maxEntries: maxPeers, name: "mat_heard6")
            made.append(heardMap)
            let parameters = TranslationPrograms6.Parameters(
                home: home.bytes, mobile: mobile.bytes, localPorts: localPorts, outboundMap: outboundMap, inboundMap: inboundMap,
                counterMap: counterMap, heardMap: heardMap, completeChecksumFlag: completeChecksumFlag)
            let outbound: [Instruction], inbound: [Instruction]
            do {
                outbound = try TranslationPrograms6.outbound(parameters)
                inbound = try TranslationPrograms6.inbound(parameters)
            } catch {
                throw SystemError("BPF datapath: assemble", detail: "\(error)")
            }
            let outProgram = try BPFSystem.loadProgram(outbound, name: "mat_out6")
            made.append(outProgram)
            attached.append(try BPFSystem.attach(program: outProgram, name: "mat_out6", interfaceIndex: tunIndex, point: .tcxEgress))
            if !uplinkIndices.isEmpty {
                let inProgram = try BPFSystem.loadProgram(inbound, name: "mat_in6")
                made.append(inProgram)
                for index in uplinkIndices {
                    attached.append(try BPFSystem.attach(program: inProgram, name: "mat_in6", interfaceIndex: index, point: .tcxIngress))
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

    /// `home`'s packets go to `mobile`, handed to `nextHop` on the interface with index
    /// `interfaceIndex` (added or replaced).
    public func setOutbound(home: IPv6Address, mobile: IPv6Address, nextHop: IPv6Address, interfaceIndex: UInt32) throws(SystemError) {
        let value = TranslationPrograms6.OutboundValue(mobile: mobile.bytes, nextHop: nextHop.bytes, interfaceIndex: interfaceIndex)
        try BPFSystem.update(map: outboundMap, key: home.bytes, value: value.bytes)
    }

    /// Packets from `mobile` are `home`'s (added or replaced).
    public func setInbound(mobile: IPv6Address, home: IPv6Address) throws(SystemError) {
        try BPFSystem.update(map: inboundMap, key: mobile.bytes, value: home.bytes)
    }

    /// `home`'s packets go to the TUN device again; false when it was not in the map.
    @discardableResult
    public func removeOutbound(home: IPv6Address) throws(SystemError) -> Bool {
        try BPFSystem.delete(map: outboundMap, key: home.bytes)
    }

    /// Packets from `mobile` go up the stack untranslated again; false when it was not in the map.
    @discardableResult
    public func removeInbound(mobile: IPv6Address) throws(SystemError) -> Bool {
        try BPFSystem.delete(map: inboundMap, key: mobile.bytes)
    }

    /// The peers (HoAs) whose packets the inbound program translated, each with the
    /// CLOCK_MONOTONIC time (ns) of one at most a second before its last: `limit` of them
    /// at most, after those the last call returned, so a read costs `limit` lookups however
    /// many peers the map has, and the calls go round the map.
    public func heard(limit: Int = .max) throws(SystemError) -> [(home: IPv6Address, nanoseconds: UInt64)] {
        var heard: [(home: IPv6Address, nanoseconds: UInt64)] = []
        let keys = try BPFSystem.keys(map: heardMap, keySize: 16, after: heardCursor, limit: limit)
        // The next call goes on after the last key read, or from the start past the end.
        heardCursor = keys.count < limit ? nil : keys.last
        for key in keys {
            // Deleted since the walk (the peer left): not heard.
            guard let value = try BPFSystem.lookup(map: heardMap, key: key, valueSize: 8) else { continue }
            let home = key.withUnsafeBytes { IPv6Address(loadingFrom: $0.baseAddress!, offset: 0) }
            heard.append((home, (0..<8).reduce(UInt64(0)) { $0 | UInt64(value[$1]) << (8 * $1) }))
        }
        return heard
    }

    /// Forgets when `home` was heard (it left the maps); false when it was not noted.
    @discardableResult
    public func forgetHeard(home: IPv6Address) throws(SystemError) -> Bool {
        try BPFSystem.delete(map: heardMap, key: home.bytes)
    }

    /// Packets and bytes the programs translated, outbound and inbound, summed over the CPUs.
    public func counted() throws(SystemError) -> (outbound: BPFSystem.Count, inbound: BPFSystem.Count) {
        (try BPFSystem.count(map: counterMap, index: 2), try BPFSystem.count(map: counterMap, index: 3))
    }
}
