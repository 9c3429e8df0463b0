/// The IPv6 programs of the BPF datapath: what ``TranslationPrograms`` does for IPv4, for
/// packets whose next header is TCP, UDP or ICMPv6 echo (request 128, reply 129) with no
/// extension header: those (a fragment header among them), ICMPv6 errors, neighbour
/// discovery, UDP with a zero checksum (which IPv6 forbids: the engine decides) and
/// everything not between the node's and a known peer's addresses are left alone
/// (``TranslationPrograms/notMine``), as the nftables path's `ip6 nexthdr` rules do.
///
/// IPv6 has no header checksum; every transport checksum it carries, ICMPv6's too, covers
/// the pseudo-header's addresses. The 32 bytes of source and destination change at once:
/// bpf_csum_diff of the old and new pair, then one bpf_l4_csum_replace with that
/// difference (BPF_F_PSEUDO_HDR: right for a packet whose checksum the stack or a NIC
/// completes later, too) and one bpf_skb_store_bytes: three helper calls where IPv4's
/// word-by-word replacement would take nine.
public enum TranslationPrograms6 {
    /// The outbound map's value: where a peer HoA's packets go.
    public struct OutboundValue: Equatable, Sendable {
        /// The peer's MoA (16 bytes, network order).
        public var mobile: [UInt8]
        /// The next hop out of the uplink towards it (its MoA itself when on the link; a
        /// link-local router address works: the uplink's index goes with it).
        public var nextHop: [UInt8]
        /// The uplink's interface index.
        public var interfaceIndex: UInt32

        public init(mobile: [UInt8], nextHop: [UInt8], interfaceIndex: UInt32) {
            self.mobile = mobile
            self.nextHop = nextHop
            self.interfaceIndex = interfaceIndex
        }

        /// Size of the value in the map.
        public static let size = 36

        /// The bytes the map holds: the two addresses in network order, the index in host order.
        public var bytes: [UInt8] { mobile + nextHop + withUnsafeBytes(of: interfaceIndex.littleEndian) { Array($0) } }
    }

    /// What a program needs to know; addresses are 16 bytes in network order, and map keys
    /// and values hold them so.
    public struct Parameters: Equatable, Sendable {
        /// The own HoA and MoA.
        public var home: [UInt8]
        public var mobile: [UInt8]
        /// matd's own UDP ports, never rewritten inbound.
        public var localPorts: [UInt16]
        /// Peer HoA (16 bytes) -> ``OutboundValue`` (36 bytes). BPF_MAP_TYPE_HASH.
        public var outboundMap: Int32
        /// Peer MoA (16 bytes) -> peer HoA (16 bytes). BPF_MAP_TYPE_HASH.
        public var inboundMap: Int32
        /// A per-CPU array of four counters (``TranslationPrograms/counterValueSize`` bytes
        /// each: packets, bytes): the IPv6 programs count into 2 (outbound) and 3 (inbound),
        /// so one map of four serves both families (IPv4: 0, 1).
        public var counterMap: Int32
        /// As IPv4's (`heard6`): key the peer's HoA (16 bytes), value CLOCK_MONOTONIC ns
        /// (8 bytes, host order). nil: nothing noted.
        public var heardMap: Int32?
        /// The guard's maps (``MoAGuard``: the IPv6 flow map, the shared service map); nil:
        /// no guard.
        public var moaGuard: MoAGuard?
        /// As IPv4's: how old a noted time may grow before a packet writes it again, ns.
        public var noteSpacing: UInt64
        /// Pass BPF_F_IPV6 to bpf_l4_csum_replace (Linux 6.16 and later): a packet whose
        /// checksum the receiving NIC summed (CHECKSUM_COMPLETE) keeps a right sum, where
        /// without it the stack finds the sum wrong, sums the packet again in software and
        /// logs "hw csum failure". Kernels before 6.16 refuse the flag (EINVAL: every
        /// translated packet would be dropped): false there.
        public var completeChecksumFlag: Bool

        public init(home: [UInt8], mobile: [UInt8], localPorts: [UInt16], outboundMap: Int32, inboundMap: Int32, counterMap: Int32,
                    heardMap: Int32? = nil, moaGuard: MoAGuard? = nil, noteSpacing: UInt64 = 1_000_000_000,
                    completeChecksumFlag: Bool = true) {
            precondition(home.count == 16 && mobile.count == 16, "IPv6 addresses are 16 bytes")
            self.home = home
            self.mobile = mobile
            self.localPorts = localPorts
            self.outboundMap = outboundMap
            self.inboundMap = inboundMap
            self.counterMap = counterMap
            self.heardMap = heardMap
            self.moaGuard = moaGuard
            self.noteSpacing = noteSpacing
            self.completeChecksumFlag = completeChecksumFlag
        }

        var checksumBase: Int32 {
            TranslationPrograms.pseudoHeader | (completeChecksumFlag ? TranslationPrograms.ipv6Checksum : 0)
        }
    }

    // The stack: the old address pair (source, destination) and the new one, 32 bytes
    // each, the checksum fix's flags, the counter's key, the guard's and the noted time's
    // scratch, and bpf_redir_neigh's argument.
    static let oldPair: Int16 = -64, newPair: Int16 = -32, flags: Int16 = -72, counterKey: Int16 = -76
    static let guardScratch: Int16 = -136, timeScratch: Int16 = -144, neighbour: Int16 = -168

    /// The egress program of the TUN device: a packet from the own HoA to a peer HoA of the
    /// outbound map leaves from the own MoA to the peer's MoA, out of the uplink to its
    /// next hop (bpf_redirect_neigh). With a guard, it carries the translated bit in its
    /// mark (for ``MoAGuard/flows6(_:)``).
    public static func outbound(_ p: Parameters) throws(Assembler.Failure) -> [Instruction] {
        typealias T = TranslationPrograms
        var a = Assembler()
        let notMine = a.label(), drop = a.label()
        let layout = T.Layout(ip: 0, v6: true)
        T.start(&a, layout, orElse: notMine)
        T.ipHeader(&a, layout, orElse: notMine)
        T.expect(&a, at: layout.source, p.home, orElse: notMine)
        T.copy(&a, 32, from: (.r7, layout.source), to: (.r10, oldPair))
        T.transport(&a, layout, localPorts: [], base: p.checksumBase, flagsAt: flags, orElse: notMine)
        T.lookup(&a, map: p.outboundMap, key: oldPair + 16, orElse: notMine)   // the peer's HoA
        a.emit(.mov(.r7, .r0))                                                  // r7: the OutboundValue
        T.storeAddress(&a, p.mobile, at: newPair)
        T.copy(&a, 16, from: (.r7, 0), to: (.r10, newPair + 16))
        rewrite(&a, ip: layout.ip, orElse: drop)
        if p.moaGuard != nil { T.markTranslated(&a) }
        T.count(&a, map: p.counterMap, index: 2, scratch: counterKey)
        // A link header in front for bpf_redirect_neigh, zeroed by the kernel (see the IPv4 program).
        a.emit(.mov(.r1, .r6))
        a.emit(.mov(.r2, Int32(T.etherHeader)))
        a.emit(.mov(.r3, 0))
        a.emit(.call(.skbChangeHead))
        a.emit(.jump(.ne, .r0, 0, offset: 0), to: drop)
        // struct bpf_redir_neigh { nh_family; ipv6_nh[4] } of 20 bytes.
        a.emit(.store(.word, .r10, neighbour, immediate: 10))    // AF_INET6
        T.copy(&a, 16, from: (.r7, 16), to: (.r10, neighbour + 4))
        a.emit(.load(.word, .r1, .r7, 32))
        a.emit(.mov(.r2, .r10))
        a.emit(.alu64(.add, .r2, Int32(neighbour)))
        a.emit(.mov(.r3, 20))
        a.emit(.mov(.r4, 0))
        a.emit(.call(.redirectNeighbour))
        a.emit(.exit)
        T.ends(&a, notMine: notMine, drop: drop)
        return try a.finish()
    }

    /// The ingress program of the uplink: a packet to the own MoA from a MoA of the inbound
    /// map goes on from the peer's HoA to the own HoA, with the translated bit in its
    /// mark; with a heard map, the peer's time is noted; with a guard, MoA-to-MoA traffic
    /// is left alone.
    public static func inbound(_ p: Parameters) throws(Assembler.Failure) -> [Instruction] {
        typealias T = TranslationPrograms
        var a = Assembler()
        let notMine = a.label(), drop = a.label()
        let layout = T.Layout(ip: T.etherHeader, v6: true)
        T.start(&a, layout, orElse: notMine)
        T.ipHeader(&a, layout, orElse: notMine)
        T.expect(&a, at: layout.destination, p.mobile, orElse: notMine)
        T.copy(&a, 32, from: (.r7, layout.source), to: (.r10, oldPair))
        T.transport(&a, layout, localPorts: p.localPorts, base: p.checksumBase, flagsAt: flags, orElse: notMine)
        T.lookup(&a, map: p.inboundMap, key: oldPair, orElse: notMine)        // the peer's MoA
        T.copy(&a, 16, from: (.r0, 0), to: (.r10, newPair))
        T.storeAddress(&a, p.home, at: newPair + 16)
        if let guarded = p.moaGuard { T.guardInbound(&a, layout, guarded, peerAt: oldPair, scratch: guardScratch, leave: notMine) }
        rewrite(&a, ip: layout.ip, orElse: drop)
        T.markTranslated(&a)
        T.count(&a, map: p.counterMap, index: 3, scratch: counterKey)
        if let heard = p.heardMap { T.noteTime(&a, map: heard, key: newPair, spacing: p.noteSpacing, scratch: timeScratch) }
        a.emit(.mov(.r0, T.pass))
        a.emit(.exit)
        T.ends(&a, notMine: notMine, drop: drop)
        return try a.finish()
    }

    /// The transport checksum (at r9, flags at fp+``flags``) fixed by the difference of the
    /// old and new address pair, then the new pair written at `ip` + 8.
    private static func rewrite(_ a: inout Assembler, ip: Int16, orElse: Assembler.Label) {
        a.emit(.mov(.r1, .r10))
        a.emit(.alu64(.add, .r1, Int32(oldPair)))
        a.emit(.mov(.r2, 32))
        a.emit(.mov(.r3, .r10))
        a.emit(.alu64(.add, .r3, Int32(newPair)))
        a.emit(.mov(.r4, 32))
        a.emit(.mov(.r5, 0))
        a.emit(.call(.checksumDifference))
        a.emit(.mov(.r4, .r0))
        a.emit(.mov(.r1, .r6))
        a.emit(.mov(.r2, .r9))
        a.emit(.mov(.r3, 0))
        a.emit(.load(.word, .r5, .r10, flags))
        a.emit(.call(.l4ChecksumReplace))
        a.emit(.jump(.ne, .r0, 0, offset: 0), to: orElse)
        a.emit(.mov(.r1, .r6))
        a.emit(.mov(.r2, Int32(ip) + 8))
        a.emit(.mov(.r3, .r10))
        a.emit(.alu64(.add, .r3, Int32(newPair)))
        a.emit(.mov(.r4, 32))
        a.emit(.mov(.r5, 0))
        a.emit(.call(.skbStoreBytes))
        a.emit(.jump(.ne, .r0, 0, offset: 0), to: orElse)
    }
}
