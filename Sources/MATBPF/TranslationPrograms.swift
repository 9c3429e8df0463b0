/// The tc programs of the BPF datapath (docs/datapath.md; docs/benchmarks.md, "udp64 with a
/// tc/BPF datapath"), IPv4, emitted without a compiler: what Tools/lab/tc-datapath's C
/// prototype does, instruction for instruction where it matters.
///
/// - ``outbound(_:)`` runs at tc egress of the TUN device, where the HoA route puts the
///   application's packet (no link header): a plain TCP, UDP or ICMP echo packet from the
///   own HoA to a peer HoA in the outbound map gets the own MoA as source and the peer's MoA
///   as destination (checksums fixed incrementally: one bpf_csum_diff applied by
///   bpf_l4/l3_csum_replace) and is sent out of the uplink to the peer's next hop from the
///   map (bpf_redirect_neigh with the next hop: no route lookup, no output chain, no TUN
///   wakeup).
/// - ``inbound(_:)`` runs at tc ingress of the uplink (Ethernet): a plain TCP, UDP (not to
///   matd's own ports) or ICMP echo packet to the own MoA from a MoA in the inbound map gets
///   the peer's HoA as source and the own HoA as destination, and the fast path's mark bit.
///   With a heard map it notes when each peer's packets were last translated
///   (``Parameters/heardMap``); with a ``MoAGuard`` it leaves MoA-to-MoA traffic alone.
///
/// IPv6: ``TranslationPrograms6``; the guard's flow-noting program at the uplink's egress:
/// ``MoAGuard/flows(_:)``; what the programs share (one transport dispatch for both
/// directions and families): ProgramPieces.swift.
///
/// Anything else (another source or destination, a peer not in the map, options,
/// fragments, other protocols, ICMP errors) is left as it was: the program ends with
/// ``notMine`` and the packet goes on to the TUN device (outbound) or up the stack to
/// the engine's diversion (inbound), as without the program.
public enum TranslationPrograms {
    /// tc's verdict for a packet left alone (TC_ACT_UNSPEC: tcx runs the next program).
    public static let notMine: Int32 = -1
    /// tc's verdict for a translated inbound packet (TC_ACT_OK).
    public static let pass: Int32 = 0
    /// tc's verdict when a rewrite failed half way (TC_ACT_SHOT): the packet is wrong now.
    public static let drop: Int32 = 2
    /// The bit a translated packet carries in its mark (``FastPathRuleset.translatedMark``).
    public static let translatedMark: UInt32 = 0x1000_0000

    /// The outbound map's value: where a peer HoA's packets go.
    public struct OutboundValue: Equatable, Sendable {
        /// The peer's MoA (host order, first wire byte most significant).
        public var mobile: UInt32
        /// The next hop out of the uplink towards it (its MoA itself when on the link).
        public var nextHop: UInt32
        /// The uplink's interface index.
        public var interfaceIndex: UInt32

        public init(mobile: UInt32, nextHop: UInt32, interfaceIndex: UInt32) {
            self.mobile = mobile
            self.nextHop = nextHop
            self.interfaceIndex = interfaceIndex
        }

        /// Size of the value in the map.
        public static let size = 12

        /// The bytes the map holds: the two addresses in network order, the index in host order.
        public var bytes: [UInt8] {
            TranslationPrograms.key(mobile) + TranslationPrograms.key(nextHop) + withUnsafeBytes(of: interfaceIndex.littleEndian) { Array($0) }
        }
    }

    /// An IPv4 address as a map key or value: its four bytes in network order.
    public static func key(_ address: UInt32) -> [UInt8] { withUnsafeBytes(of: address.bigEndian) { Array($0) } }

    /// What a program needs to know: the own addresses (immediates in its code) and the
    /// maps' file descriptors. The heard map and the guard are optional: without them the
    /// programs are as they were before either existed.
    public struct Parameters: Equatable, Sendable {
        /// The own HoA and MoA (host order, first wire byte most significant).
        public var home: UInt32
        public var mobile: UInt32
        /// matd's own UDP ports, never rewritten inbound.
        public var localPorts: [UInt16]
        /// Peer HoA (4 bytes) -> ``OutboundValue``.
        public var outboundMap: Int32
        /// Peer MoA (4 bytes) -> peer HoA (4 bytes).
        public var inboundMap: Int32
        /// A per-CPU array of two counters (``counterValueSize`` bytes each: packets, bytes):
        /// outbound (0), inbound (1).
        public var counterMap: Int32
        /// When each peer's packets were last translated inbound (``FastPathHeard``'s
        /// `heard4` set, as a map): BPF_MAP_TYPE_HASH, key the peer's HoA (4 bytes, network
        /// order), value CLOCK_MONOTONIC ns (8 bytes, host order: bpf_ktime_get_coarse_ns,
        /// the last tick's) of a packet at most ``noteSpacing`` before the last one. Only a translated packet
        /// writes it, so only peers of the inbound map are keys: as many entries as that
        /// map suffice; whoever reads it deletes the removed peers' keys. nil: nothing noted.
        public var heardMap: Int32?
        /// The MoA-to-MoA guard's maps; nil: no guard (as before it existed).
        public var moaGuard: MoAGuard?
        /// How old a noted time (heard map, flow map) may grow before a packet writes it
        /// again, ns: the times' resolution, and at most one map write per peer (flow) per
        /// spacing. 1 s: FastPathHeard reads to the second.
        public var noteSpacing: UInt64

        public init(home: UInt32, mobile: UInt32, localPorts: [UInt16], outboundMap: Int32, inboundMap: Int32, counterMap: Int32,
                    heardMap: Int32? = nil, moaGuard: MoAGuard? = nil, noteSpacing: UInt64 = 1_000_000_000) {
            self.home = home
            self.mobile = mobile
            self.localPorts = localPorts
            self.outboundMap = outboundMap
            self.inboundMap = inboundMap
            self.counterMap = counterMap
            self.heardMap = heardMap
            self.moaGuard = moaGuard
            self.noteSpacing = noteSpacing
        }
    }

    /// The egress program of the TUN device. With a guard, a translated packet carries
    /// the translated bit in its mark, so the uplink's ``MoAGuard/flows(_:)`` does not take
    /// it for a flow of the host's own MoA.
    public static func outbound(_ p: Parameters) throws(Assembler.Failure) -> [Instruction] {
        var a = Assembler()
        let notMine = a.label(), drop = a.label()
        let layout = Layout(ip: 0, v6: false)
        start(&a, layout, orElse: notMine)
        ipHeader(&a, layout, orElse: notMine)
        a.emit(.load(.word, .r2, .r7, 12))
        a.emit(.jump32(.ne, .r2, wire(p.home), offset: 0), to: notMine)
        a.emit(.load(.word, .r2, .r7, 16))
        a.emit(.store(.word, .r10, -4, .r2))                 // key: the peer's HoA
        copy(&a, 8, from: (.r7, 12), to: (.r10, oldPair))
        transport(&a, layout, localPorts: [], base: pseudoHeader, flagsAt: -8, orElse: notMine)
        lookup(&a, map: p.outboundMap, key: -4, orElse: notMine)
        a.emit(.mov(.r7, .r0))                                // r7: the OutboundValue
        a.emit(.load(.word, .r2, .r7, 0))
        a.emit(.store(.word, .r10, -12, .r2))                 // new destination: the peer's MoA
        a.emit(.store(.word, .r10, -16, immediate: wire(p.mobile))) // new source: the own MoA
        rewrite(&a, ip: 0, newPair: -16, orElse: drop)
        if p.moaGuard != nil { markTranslated(&a) }
        count(&a, map: p.counterMap, index: 0)
        // bpf_redirect_neigh takes a packet with a link header, which it pulls off again
        // before the neighbour output (the kernel drops one without): 14 bytes go in
        // front of the TUN device's bare IP packet. The kernel zeroes them (a unicast
        // destination is all it looks at), so nothing is written there.
        a.emit(.mov(.r1, .r6))
        a.emit(.mov(.r2, Int32(etherHeader)))
        a.emit(.mov(.r3, 0))
        a.emit(.call(.skbChangeHead))
        a.emit(.jump(.ne, .r0, 0, offset: 0), to: drop)
        // struct bpf_redir_neigh { nh_family; ipv4_nh; ... } of 20 bytes at fp-40.
        a.emit(.store(.word, .r10, -40, immediate: 2))        // AF_INET
        a.emit(.load(.word, .r2, .r7, 4))
        a.emit(.store(.word, .r10, -36, .r2))
        for offset in stride(from: Int16(-32), through: -24, by: 4) { a.emit(.store(.word, .r10, offset, immediate: 0)) }
        a.emit(.load(.word, .r1, .r7, 8))
        a.emit(.mov(.r2, .r10))
        a.emit(.alu64(.add, .r2, -40))
        a.emit(.mov(.r3, 20))
        a.emit(.mov(.r4, 0))
        a.emit(.call(.redirectNeighbour))
        a.emit(.exit)
        ends(&a, notMine: notMine, drop: drop)
        return try a.finish()
    }

    /// The ingress program of the uplink. With a heard map, a translated packet notes its
    /// peer's time there; with a guard, MoA-to-MoA traffic is left alone.
    public static func inbound(_ p: Parameters) throws(Assembler.Failure) -> [Instruction] {
        var a = Assembler()
        let notMine = a.label(), drop = a.label()
        let ip = etherHeader
        let layout = Layout(ip: ip, v6: false)
        start(&a, layout, orElse: notMine)
        ipHeader(&a, layout, orElse: notMine)
        a.emit(.load(.word, .r2, .r7, ip + 16))
        a.emit(.jump32(.ne, .r2, wire(p.mobile), offset: 0), to: notMine)
        a.emit(.load(.word, .r2, .r7, ip + 12))
        a.emit(.store(.word, .r10, -4, .r2))                 // key: the peer's MoA
        copy(&a, 8, from: (.r7, ip + 12), to: (.r10, oldPair))
        transport(&a, layout, localPorts: p.localPorts, base: pseudoHeader, flagsAt: -8, orElse: notMine)
        lookup(&a, map: p.inboundMap, key: -4, orElse: notMine)
        a.emit(.load(.word, .r2, .r0, 0))
        a.emit(.store(.word, .r10, -16, .r2))                 // new source: the peer's HoA
        a.emit(.store(.word, .r10, -12, immediate: wire(p.home))) // new destination: the own HoA
        if let guarded = p.moaGuard { guardInbound(&a, layout, guarded, peerAt: -4, scratch: -96, leave: notMine) }
        rewrite(&a, ip: ip, newPair: -16, orElse: drop)
        markTranslated(&a)
        count(&a, map: p.counterMap, index: 1)
        if let heard = p.heardMap { noteTime(&a, map: heard, key: -16, spacing: p.noteSpacing, scratch: -56) }
        a.emit(.mov(.r0, pass))
        a.emit(.exit)
        ends(&a, notMine: notMine, drop: drop)
        return try a.finish()
    }

    /// Where both programs keep the packet's address pair as it came (8 bytes).
    static let oldPair: Int16 = -32

    /// The checksum fixes and the new source and destination (8 bytes at fp+`newPair`)
    /// written at `ip` + 12: one bpf_csum_diff of the old pair (at fp+``oldPair``) and the
    /// new, applied to the transport checksum (at r9 when not 0, flags at fp-8: field size
    /// 0, the diff mode) and to the IP header's, instead of a replace per address and
    /// checksum (four helper calls; docs/benchmarks.md, "Where the BPF datapath's time
    /// goes"). Uses r8 (the packet's end is not needed after it).
    private static func rewrite(_ a: inout Assembler, ip: Int16, newPair: Int16, orElse: Assembler.Label) {
        let noTransport = a.label()
        a.emit(.mov(.r1, .r10))
        a.emit(.alu64(.add, .r1, Int32(oldPair)))
        a.emit(.mov(.r2, 8))
        a.emit(.mov(.r3, .r10))
        a.emit(.alu64(.add, .r3, Int32(newPair)))
        a.emit(.mov(.r4, 8))
        a.emit(.mov(.r5, 0))
        a.emit(.call(.checksumDifference))
        a.emit(.mov(.r8, .r0))
        a.emit(.jump(.eq, .r9, 0, offset: 0), to: noTransport)
        a.emit(.mov(.r1, .r6))
        a.emit(.mov(.r2, .r9))
        a.emit(.mov(.r3, 0))
        a.emit(.mov(.r4, .r8))
        a.emit(.load(.word, .r5, .r10, -8))
        a.emit(.call(.l4ChecksumReplace))
        a.emit(.jump(.ne, .r0, 0, offset: 0), to: orElse)
        a.place(noTransport)
        a.emit(.mov(.r1, .r6))
        a.emit(.mov(.r2, Int32(ip) + 10))
        a.emit(.mov(.r3, 0))
        a.emit(.mov(.r4, .r8))
        a.emit(.mov(.r5, 0))
        a.emit(.call(.l3ChecksumReplace))
        a.emit(.jump(.ne, .r0, 0, offset: 0), to: orElse)
        a.emit(.mov(.r1, .r6))
        a.emit(.mov(.r2, Int32(ip) + 12))
        a.emit(.mov(.r3, .r10))
        a.emit(.alu64(.add, .r3, Int32(newPair)))
        a.emit(.mov(.r4, 8))
        a.emit(.mov(.r5, 0))
        a.emit(.call(.skbStoreBytes))
        a.emit(.jump(.ne, .r0, 0, offset: 0), to: orElse)
    }
}
