/// The pieces the programs of ``TranslationPrograms`` share, emitted for either family:
/// where the fields of the packet's IP header are (``Layout``), which transport it
/// carries and how its checksum is fixed, map lookups, counters, the noted times of the
/// heard and flow maps, and the MoA-to-MoA guard.
///
/// Register use, as in every program here: r6 the context, r7 the packet's data, r8 its
/// end (r7 and r8 stay valid across map lookups: only helpers that change the packet
/// invalidate them), r9 the transport checksum's offset (0: none to fix).
extension TranslationPrograms {
    /// Where the IP header's fields are, for a header at `ip` in the packet.
    struct Layout {
        let ip: Int16
        let v6: Bool

        var version: Int32 { v6 ? 6 : 4 }
        var addressLength: Int16 { v6 ? 16 : 4 }
        var source: Int16 { ip + (v6 ? 8 : 12) }
        var destination: Int16 { ip + (v6 ? 24 : 16) }
        var protocolField: Int16 { ip + (v6 ? 6 : 9) }
        var transport: Int16 { ip + (v6 ? 40 : 20) }
        var icmp: Int32 { v6 ? 58 : 1 }
        var echoRequest: Int32 { v6 ? 128 : 8 }
        var echoReply: Int32 { v6 ? 129 : 0 }
        /// The EtherType as __sk_buff's protocol holds it.
        var etherType: UInt16 { v6 ? 0x86dd : 0x0800 }
    }

    // struct __sk_buff offsets (uapi/linux/bpf.h).
    static let skbLength: Int16 = 0, skbMark: Int16 = 8, skbProtocol: Int16 = 16, skbIngressIndex: Int16 = 36
    static let skbData: Int16 = 76, skbDataEnd: Int16 = 80
    // Helper flags: BPF_F_PSEUDO_HDR, BPF_F_MARK_MANGLED_0, BPF_F_IPV6 (the field size 0,
    // a bpf_csum_diff result, is every fix's mode).
    static let pseudoHeader: Int32 = 0x10, mangledZero: Int32 = 0x20, ipv6Checksum: Int32 = 0x80
    static let etherHeader: Int16 = 14

    /// The size of a counter map's value (``count(_:map:index:scratch:)``): packets, then
    /// bytes, 64 bits each in host order.
    public static let counterValueSize = 16

    /// A 32-bit value as a compare or store immediate of a packet word: the packet holds
    /// it in network order, the machine loads it little endian.
    static func wire(_ value: UInt32) -> Int32 { Int32(bitPattern: value.byteSwapped) }
    static func wire(_ value: UInt16) -> Int32 { Int32(value.byteSwapped) }

    /// r6 = the context; the packet's protocol must be `layout`'s, else to `orElse`;
    /// r7, r8 = the packet's data and end.
    static func start(_ a: inout Assembler, _ layout: Layout, orElse: Assembler.Label) {
        a.emit(.mov(.r6, .r1))
        a.emit(.load(.word, .r2, .r6, skbProtocol))
        a.emit(.jump32(.ne, .r2, wire(layout.etherType), offset: 0), to: orElse)
        a.emit(.load(.word, .r7, .r6, skbData))
        a.emit(.load(.word, .r8, .r6, skbDataEnd))
    }

    /// A whole IP header of `layout`'s family at its place: IPv4 of 20 bytes (no options)
    /// and, unless `firstFragments`, not a fragment (with it: the first fragment, which
    /// holds the ports, passes too); IPv6 of version 6. Else to `orElse`.
    static func ipHeader(_ a: inout Assembler, _ layout: Layout, firstFragments: Bool = false, orElse: Assembler.Label) {
        a.emit(.mov(.r2, .r7))
        a.emit(.alu64(.add, .r2, Int32(layout.transport)))
        a.emit(.jump(.gt, .r2, .r8, offset: 0), to: orElse)
        a.emit(.load(.byte, .r2, .r7, layout.ip))
        if layout.v6 {
            a.emit(.alu32(.and, .r2, 0xf0))
            a.emit(.jump(.ne, .r2, 0x60, offset: 0), to: orElse)
        } else {
            a.emit(.jump(.ne, .r2, 0x45, offset: 0), to: orElse)   // version 4, no options
            a.emit(.load(.half, .r2, .r7, layout.ip + 6))
            a.emit(.alu32(.and, .r2, wire(UInt16(firstFragments ? 0x1fff : 0x3fff))))   // (more fragments,) offset
            a.emit(.jump(.ne, .r2, 0, offset: 0), to: orElse)
        }
    }

    /// The address at `offset` in the packet must be `address` (network order bytes, one
    /// word compare each 4), else to `orElse`.
    static func expect(_ a: inout Assembler, at offset: Int16, _ address: [UInt8], orElse: Assembler.Label) {
        for word in stride(from: 0, to: address.count, by: 4) {
            a.emit(.load(.word, .r2, .r7, offset + Int16(word)))
            a.emit(.jump32(.ne, .r2, wireWord(address, word), offset: 0), to: orElse)
        }
    }

    /// The word at `index` of network-order `bytes` as the machine loads it.
    static func wireWord(_ bytes: [UInt8], _ index: Int) -> Int32 {
        Int32(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[index + $1]) << (8 * $1) })
    }

    /// Copies `length` bytes (a multiple of 4) from `base`+`from` to `base2`+`to`.
    static func copy(_ a: inout Assembler, _ length: Int16, from: (Register, Int16), to: (Register, Int16)) {
        for word in stride(from: Int16(0), to: length, by: 4) {
            a.emit(.load(.word, .r2, from.0, from.1 + word))
            a.emit(.store(.word, to.0, to.1 + word, .r2))
        }
    }

    /// Stores network-order `bytes` at fp+`at`, a word at a time.
    static func storeAddress(_ a: inout Assembler, _ bytes: [UInt8], at: Int16) {
        for word in stride(from: 0, to: bytes.count, by: 4) { a.emit(.store(.word, .r10, at + Int16(word), immediate: wireWord(bytes, word))) }
    }

    /// The one dispatch on the transport protocol: r9 = the offset of its checksum (0: no
    /// checksum to fix, ICMP echo), and the flags of its fix at fp+`flagsAt`: `base` (the
    /// diff mode, BPF_F_PSEUDO_HDR where the checksum covers the addresses),
    /// and for UDP BPF_F_MARK_MANGLED_0 (IPv4: a zero checksum means none and stays zero;
    /// IPv6 refuses a zero one: it goes to the engine). TCP, UDP and ICMP echo go on; with
    /// `localPorts`, UDP to one of them (matd's own) does not; everything else, ICMP
    /// errors among it, goes to `orElse`.
    static func transport(_ a: inout Assembler, _ layout: Layout, localPorts: [UInt16], base: Int32,
                          flagsAt: Int16, orElse: Assembler.Label) {
        let udp = a.label(), icmp = a.label(), found = a.label()
        let t = Int32(layout.transport)
        a.emit(.load(.byte, .r2, .r7, layout.protocolField))
        a.emit(.mov(.r9, t + 16))                             // TCP: checksum at 16
        a.emit(.mov(.r5, base))
        a.emit(.jump(.eq, .r2, 6, offset: 0), to: found)
        a.emit(.jump(.eq, .r2, 17, offset: 0), to: udp)
        a.emit(.jump(.eq, .r2, layout.icmp, offset: 0), to: icmp)
        a.jump(to: orElse)
        a.place(udp)
        if layout.v6 || !localPorts.isEmpty {
            a.emit(.mov(.r3, .r7))
            a.emit(.alu64(.add, .r3, t + (layout.v6 ? 8 : 4)))
            a.emit(.jump(.gt, .r3, .r8, offset: 0), to: orElse)
        }
        if !localPorts.isEmpty {
            a.emit(.load(.half, .r3, .r7, layout.transport + 2))   // matd's own ports stay with matd
            for port in localPorts { a.emit(.jump(.eq, .r3, wire(port), offset: 0), to: orElse) }
        }
        if layout.v6 {
            a.emit(.load(.half, .r3, .r7, layout.transport + 6))
            a.emit(.jump(.eq, .r3, 0, offset: 0), to: orElse)
        }
        a.emit(.mov(.r9, t + 6))
        a.emit(.mov(.r5, base | mangledZero))
        a.jump(to: found)
        a.place(icmp)
        // An echo request or reply: the two types differ in one bit.
        a.emit(.mov(.r3, .r7))
        a.emit(.alu64(.add, .r3, t + 1))
        a.emit(.jump(.gt, .r3, .r8, offset: 0), to: orElse)
        a.emit(.load(.byte, .r3, .r7, layout.transport))
        a.emit(.alu32(.or, .r3, layout.echoRequest ^ layout.echoReply))
        a.emit(.jump(.ne, .r3, layout.echoRequest | layout.echoReply, offset: 0), to: orElse)
        a.emit(.mov(.r9, layout.v6 ? t + 2 : 0))              // ICMPv6 covers the addresses
        a.place(found)
        a.emit(.store(.word, .r10, flagsAt, .r5))
    }

    /// r0 = the value of `map` for the key at fp+`key`; none: to `orElse`.
    static func lookup(_ a: inout Assembler, map: Int32, key: Int16, orElse: Assembler.Label) {
        a.emit(Instruction.loadMap(.r1, fd: map))
        a.emit(.mov(.r2, .r10))
        a.emit(.alu64(.add, .r2, Int32(key)))
        a.emit(.call(.mapLookupElement))
        a.emit(.jump(.eq, .r0, 0, offset: 0), to: orElse)
    }

    /// Counts the packet in element `index` of the per-CPU array `map`, whose values are
    /// ``counterValueSize`` bytes: one more packet in the first 8, its length (`skb->len`)
    /// in bytes added to the next 8 (the 4 bytes at fp+`scratch` hold the key).
    static func count(_ a: inout Assembler, map: Int32, index: Int32, scratch: Int16 = -20) {
        let done = a.label()
        a.emit(.store(.word, .r10, scratch, immediate: index))
        lookup(&a, map: map, key: scratch, orElse: done)
        a.emit(.load(.double, .r1, .r0, 0))
        a.emit(.alu64(.add, .r1, 1))
        a.emit(.store(.double, .r0, 0, .r1))
        a.emit(.load(.word, .r2, .r6, skbLength))
        a.emit(.load(.double, .r1, .r0, 8))
        a.emit(.alu64(.add, .r1, .r2))
        a.emit(.store(.double, .r0, 8, .r1))
        a.place(done)
    }

    /// Sets the translated bit in the packet's mark.
    static func markTranslated(_ a: inout Assembler) {
        a.emit(.load(.word, .r2, .r6, skbMark))
        a.emit(.alu32(.or, .r2, Int32(bitPattern: translatedMark)))
        a.emit(.store(.word, .r6, skbMark, .r2))
    }

    /// `map`[key at fp+`key`] = now (bpf_ktime_get_coarse_ns, CLOCK_MONOTONIC ns at the
    /// last tick: no clock read per packet, which bpf_ktime_get_ns costs; the times are
    /// read to the second), unless the time it holds is less than `spacing` ns old: a
    /// steady flow writes once per spacing, not once per packet (a store per packet would
    /// move the value's cache line between the CPUs that receive the flow). An element that is there is written in place (an
    /// aligned 8-byte store, never torn); a new one is added (BPF_ANY). A full map takes
    /// no new element (the packet goes on: the map holds a time, not the translation).
    /// Uses r9 and the 8 bytes at fp+`scratch`.
    static func noteTime(_ a: inout Assembler, map: Int32, key: Int16, spacing: UInt64, scratch: Int16) {
        let add = a.label(), done = a.label()
        a.emit(.call(.ktimeGetCoarseNanoseconds))
        a.emit(.mov(.r9, .r0))
        lookup(&a, map: map, key: key, orElse: add)
        a.emit(.load(.double, .r1, .r0, 0))
        a.emit(.mov(.r2, .r9))
        a.emit(.alu64(.sub, .r2, .r1))
        a.emit(Instruction.loadImmediate64(.r3, spacing))
        a.emit(.jump(.lt, .r2, .r3, offset: 0), to: done)
        a.emit(.store(.double, .r0, 0, .r9))
        a.jump(to: done)
        a.place(add)
        a.emit(.store(.double, .r10, scratch, .r9))
        a.emit(Instruction.loadMap(.r1, fd: map))
        a.emit(.mov(.r2, .r10))
        a.emit(.alu64(.add, .r2, Int32(key)))
        a.emit(.mov(.r3, .r10))
        a.emit(.alu64(.add, .r3, Int32(scratch)))
        a.emit(.mov(.r4, 0))
        a.emit(.call(.mapUpdateElement))
        a.place(done)
    }

    /// The flow key of ``MoAGuard`` at fp+`key` (aligned to 8) for a packet whose peer MoA
    /// is already there: the protocol, then the peer's and the own port (`inbound`: the
    /// source and destination ports; else the other way round), or for ICMP the echo's
    /// identifier as the own port. The protocol byte at `layout.protocolField` must be
    /// TCP, UDP or ICMP echo (checked before); a cut transport header goes to `orElse`.
    static func flowKey(_ a: inout Assembler, _ layout: Layout, key: Int16, inbound: Bool, orElse: Assembler.Label) {
        let icmp = a.label(), done = a.label()
        let protocolAt = key + layout.addressLength
        a.emit(.mov(.r3, .r7))
        a.emit(.alu64(.add, .r3, Int32(layout.transport) + 8))
        a.emit(.jump(.gt, .r3, .r8, offset: 0), to: orElse)
        a.emit(.load(.byte, .r2, .r7, layout.protocolField))
        a.emit(.store(.word, .r10, protocolAt, .r2))
        a.emit(.jump(.eq, .r2, layout.icmp, offset: 0), to: icmp)
        a.emit(.load(.half, .r3, .r7, layout.transport + (inbound ? 0 : 2)))
        a.emit(.store(.half, .r10, protocolAt + 4, .r3))
        a.emit(.load(.half, .r3, .r7, layout.transport + (inbound ? 2 : 0)))
        a.emit(.store(.half, .r10, protocolAt + 6, .r3))
        a.jump(to: done)
        a.place(icmp)
        a.emit(.store(.half, .r10, protocolAt + 4, immediate: 0))
        a.emit(.load(.half, .r3, .r7, layout.transport + 4))
        a.emit(.store(.half, .r10, protocolAt + 6, .r3))
        a.place(done)
    }

    /// The MoA-to-MoA guard of the inbound program (``MoAGuard``), for a packet from a
    /// peer's MoA (its address at fp+`peerAt`) to the own MoA whose transport passed
    /// ``transport(_:_:localPorts:base:flagsAt:orElse:)``: a packet of a flow the host
    /// opened from its MoA to the peer's (TCP, UDP, an echo reply to its echo request), or
    /// to a service bound to the MoA, goes to `leave` untouched. With the guard's state
    /// map, a lookup whose map holds nothing (no flow ever noted, no service) is skipped.
    /// Uses 40 bytes at fp+`scratch` (aligned to 8).
    static func guardInbound(_ a: inout Assembler, _ layout: Layout, _ guarded: MoAGuard, peerAt: Int16, scratch: Int16,
                             leave: Assembler.Label) {
        let translate = a.label(), notEcho = a.label(), done = a.label()
        // The state map's two elements as read at the start (1 without it: look up both).
        let flowsNoted = scratch + 32, servicesBound = scratch + 28
        a.emit(.store(.word, .r10, flowsNoted, immediate: 1))
        a.emit(.store(.word, .r10, servicesBound, immediate: 1))
        if let state = guarded.stateMap {
            for (element, at) in [(MoAGuard.flowsNoted, flowsNoted), (MoAGuard.servicesBound, servicesBound)] {
                let kept = a.label()
                a.emit(.store(.word, .r10, at, immediate: Int32(element)))
                lookup(&a, map: state, key: at, orElse: kept)
                a.emit(.load(.word, .r2, .r0, 0))
                a.emit(.store(.word, .r10, at, .r2))
                a.place(kept)
            }
        }
        // Everything read below is in the first 8 bytes of the transport header, which any
        // TCP, UDP or echo packet has (the verifier wants it checked once, up front).
        a.emit(.mov(.r3, .r7))
        a.emit(.alu64(.add, .r3, Int32(layout.transport) + 8))
        a.emit(.jump(.gt, .r3, .r8, offset: 0), to: leave)
        copy(&a, layout.addressLength, from: (.r10, peerAt), to: (.r10, scratch))
        a.emit(.load(.byte, .r2, .r7, layout.protocolField))
        a.emit(.jump(.ne, .r2, layout.icmp, offset: 0), to: notEcho)
        a.emit(.load(.byte, .r3, .r7, layout.transport))
        a.emit(.jump(.ne, .r3, layout.echoReply, offset: 0), to: done)   // the peer's echo requests are HoA traffic
        a.place(notEcho)
        a.emit(.load(.word, .r2, .r10, flowsNoted))
        a.emit(.jump(.eq, .r2, 0, offset: 0), to: translate)
        flowKey(&a, layout, key: scratch, inbound: true, orElse: leave)
        lookup(&a, map: guarded.flowMap, key: scratch, orElse: translate)
        a.jump(to: leave)                                                  // a flow of the host's MoA
        a.place(translate)
        a.emit(.load(.byte, .r2, .r7, layout.protocolField))
        a.emit(.jump(.eq, .r2, layout.icmp, offset: 0), to: done)
        a.emit(.load(.word, .r3, .r10, servicesBound))
        a.emit(.jump(.eq, .r3, 0, offset: 0), to: done)
        let service = scratch + 24
        a.emit(.store(.byte, .r10, service, .r2))
        a.emit(.store(.byte, .r10, service + 1, immediate: layout.version))
        a.emit(.load(.half, .r3, .r7, layout.transport + 2))
        a.emit(.store(.half, .r10, service + 2, .r3))
        lookup(&a, map: guarded.serviceMap, key: service, orElse: done)
        a.jump(to: leave)                                                  // a service bound to the MoA
        a.place(done)
    }

    /// The common ends: `notMine` returns ``notMine``, `drop` returns ``drop``.
    static func ends(_ a: inout Assembler, notMine: Assembler.Label, drop: Assembler.Label) {
        a.place(notMine)
        a.emit(.mov(.r0, Self.notMine))
        a.emit(.exit)
        a.place(drop)
        a.emit(.mov(.r0, Self.drop))
        a.emit(.exit)
    }
}
