/// The MoA-to-MoA guard of the BPF datapath: traffic between the own MoA and a peer's MoA
/// that is not HoA traffic (a flow the host opened from its MoA to the peer's MoA, a
/// service bound to the MoA) is never rewritten inbound, as PeerMoATraffic's nftables sets
/// keep it from the nftables path (docs/datapath.md). On the wire such a packet looks like
/// HoA traffic (peer MoA to own MoA), so the inbound program decides from two maps:
///
/// - The flow map (BPF_MAP_TYPE_LRU_HASH, written by ``flows(_:)``, the program at tc
///   egress of the uplink): key ``flowKey(peer:protocol:peerPort:ownPort:)``, 12 bytes
///   (IPv4) or 24 (IPv6): the peer's MoA (network order), the protocol (one byte, then
///   three zero bytes), the peer's port and the own port (network order); an ICMP echo
///   request the host sent is protocol 1 (58), peer port 0 and its identifier as own port.
///   Value: CLOCK_MONOTONIC ns (8 bytes, host order) of the flow's last packet out, at most
///   the parameters' `noteSpacing` old. LRU: the least recently used flows make room (an
///   inbound lookup counts as a use), as the nftables sets' one-hour timeout does; whoever
///   wants the timeout exactly deletes what is older. Both families' programs may share
///   nothing here: a map per family.
/// - The service map (BPF_MAP_TYPE_HASH, kept by matd as MoAServiceWatch keeps the
///   `listen4`/`listen6` sets): key ``serviceKey(protocol:version:port:)``, 4 bytes: the
///   protocol (6 or 17), the IP version (4 or 6), the port (network order), for a TCP
///   listener or UDP socket bound to the MoA itself; value 4 bytes, ignored. One map
///   serves both families.
///
/// - The state map (BPF_MAP_TYPE_ARRAY of two 4-byte elements, optional): element 0 is
///   non-zero once ``flows(_:)`` has noted a flow (it writes 1 with its first note; nothing
///   clears it), element 1 the number of services in the service map (written by matd with
///   the map). The inbound program skips the flow map's lookup while element 0 is 0 and the
///   service map's while element 1 is 0: a host that never opened a flow from its MoA to a
///   peer's and has no service bound to its MoA pays neither hash lookup per packet
///   (docs/benchmarks.md, "Where the BPF datapath's time goes"). Without it both are
///   looked up for every packet.
///
/// ``flows(_:)`` notes only packets the host itself sends (no ingress interface: not
/// forwarded, so not the engine's HoA traffic written into the TUN device) that do not
/// carry the translated bit (the outbound program's redirected HoA packets, marked when
/// the guard is on) from the own MoA to a MoA of the inbound map: TCP, UDP and ICMP echo
/// requests, first fragments included, but not UDP from matd's own ports (its signaling:
/// the inbound program never rewrites what comes to them). What the inbound program
/// leaves alone goes on to the nftables diversion and PeerMoATraffic's chains, which know
/// the rest (ICMP errors quoting such flows, which the programs never rewrite anyway).
public struct MoAGuard: Equatable, Sendable {
    /// The flow map (see above).
    public var flowMap: Int32
    /// The service map (see above).
    public var serviceMap: Int32
    /// The state map (see above); nil: none.
    public var stateMap: Int32?

    public init(flowMap: Int32, serviceMap: Int32, stateMap: Int32? = nil) {
        self.flowMap = flowMap
        self.serviceMap = serviceMap
        self.stateMap = stateMap
    }

    /// The state map's elements: flows noted, services bound.
    public static let flowsNoted: UInt32 = 0, servicesBound: UInt32 = 1

    /// Size of a flow key for an address of `addressLength` bytes.
    public static func flowKeySize(addressLength: Int) -> Int { addressLength + 8 }

    /// A flow map's key: `peer` (the peer's MoA, network order bytes, 4 or 16), the
    /// protocol, the peer's and the own port (host order here, network order in the key).
    public static func flowKey(peer: [UInt8], protocol proto: UInt8, peerPort: UInt16, ownPort: UInt16) -> [UInt8] {
        peer + [proto, 0, 0, 0, UInt8(peerPort >> 8), UInt8(peerPort & 0xff), UInt8(ownPort >> 8), UInt8(ownPort & 0xff)]
    }

    /// A service map's key: a socket of `proto` (6, 17) bound to the own MoA of IP
    /// `version` (4, 6) at `port`.
    public static func serviceKey(protocol proto: UInt8, version: UInt8, port: UInt16) -> [UInt8] {
        [proto, version, UInt8(port >> 8), UInt8(port & 0xff)]
    }

    /// The program at tc egress of the uplink that notes the host's own flows from its
    /// IPv4 MoA to peers' MoAs in the flow map (`p.moaGuard`, which must be set: a
    /// precondition;
    /// `p.inboundMap` tells the peers' MoAs). It never changes a packet and always ends
    /// with ``TranslationPrograms/notMine``.
    public static func flows(_ p: TranslationPrograms.Parameters) throws(Assembler.Failure) -> [Instruction] {
        try flows(layout: .init(ip: TranslationPrograms.etherHeader, v6: false), mobile: TranslationPrograms.key(p.mobile),
                  localPorts: p.localPorts, inboundMap: p.inboundMap, guarded: p.moaGuard, spacing: p.noteSpacing)
    }

    /// The same for the IPv6 MoA (``TranslationPrograms6``).
    public static func flows6(_ p: TranslationPrograms6.Parameters) throws(Assembler.Failure) -> [Instruction] {
        try flows(layout: .init(ip: TranslationPrograms.etherHeader, v6: true), mobile: p.mobile,
                  localPorts: p.localPorts, inboundMap: p.inboundMap, guarded: p.moaGuard, spacing: p.noteSpacing)
    }

    private static func flows(layout: TranslationPrograms.Layout, mobile: [UInt8], localPorts: [UInt16], inboundMap: Int32,
                              guarded: MoAGuard?, spacing: UInt64) throws(Assembler.Failure) -> [Instruction] {
        typealias T = TranslationPrograms
        var a = Assembler()
        precondition(guarded != nil, "flows: no guard in the parameters")
        let notMine = a.label(), echo = a.label(), noted = a.label()
        let key: Int16 = -40, scratch: Int16 = -8
        a.emit(.load(.word, .r2, .r1, T.skbMark))
        a.emit(.alu32(.and, .r2, Int32(bitPattern: T.translatedMark)))
        a.emit(.jump(.ne, .r2, 0, offset: 0), to: notMine)
        a.emit(.load(.word, .r2, .r1, T.skbIngressIndex))
        a.emit(.jump(.ne, .r2, 0, offset: 0), to: notMine)
        T.start(&a, layout, orElse: notMine)
        T.ipHeader(&a, layout, firstFragments: true, orElse: notMine)
        T.expect(&a, at: layout.source, mobile, orElse: notMine)
        let udp = a.label()
        a.emit(.load(.byte, .r2, .r7, layout.protocolField))
        a.emit(.jump(.eq, .r2, 6, offset: 0), to: noted)
        a.emit(.jump(.eq, .r2, 17, offset: 0), to: udp)
        a.emit(.jump(.eq, .r2, layout.icmp, offset: 0), to: echo)
        a.jump(to: notMine)
        a.place(udp)
        if !localPorts.isEmpty {
            a.emit(.mov(.r3, .r7))
            a.emit(.alu64(.add, .r3, Int32(layout.transport) + 2))
            a.emit(.jump(.gt, .r3, .r8, offset: 0), to: notMine)
            a.emit(.load(.half, .r3, .r7, layout.transport))     // from matd's own port: its signaling
            for port in localPorts { a.emit(.jump(.eq, .r3, T.wire(port), offset: 0), to: notMine) }
        }
        a.jump(to: noted)
        a.place(echo)
        a.emit(.mov(.r3, .r7))
        a.emit(.alu64(.add, .r3, Int32(layout.transport) + 1))
        a.emit(.jump(.gt, .r3, .r8, offset: 0), to: notMine)
        a.emit(.load(.byte, .r3, .r7, layout.transport))
        a.emit(.jump(.ne, .r3, layout.echoRequest, offset: 0), to: notMine)
        a.place(noted)
        T.copy(&a, layout.addressLength, from: (.r7, layout.destination), to: (.r10, key))
        T.lookup(&a, map: inboundMap, key: key, orElse: notMine)          // not a peer's MoA
        T.flowKey(&a, layout, key: key, inbound: false, orElse: notMine)
        if let state = guarded!.stateMap {
            let stateKept = a.label()
            a.emit(.store(.word, .r10, scratch, immediate: Int32(flowsNoted)))
            T.lookup(&a, map: state, key: scratch, orElse: stateKept)
            a.emit(.load(.word, .r2, .r0, 0))
            a.emit(.jump(.ne, .r2, 0, offset: 0), to: stateKept)    // written once, then only read
            a.emit(.store(.word, .r0, 0, immediate: 1))
            a.place(stateKept)
        }
        T.noteTime(&a, map: guarded!.flowMap, key: key, spacing: spacing, scratch: scratch)
        a.place(notMine)
        a.emit(.mov(.r0, T.notMine))
        a.emit(.exit)
        return try a.finish()
    }
}
