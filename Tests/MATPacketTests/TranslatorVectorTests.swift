import MATPacket
import Testing

/// Each case builds a packet for the old addresses and for the new ones with checksums
/// computed from scratch, and requires the translator to turn the first into the second,
/// and back.
@Suite struct TranslatorVectorTests {
    let a = Addr.hoaA.bytes, b = Addr.hoaB.bytes, ma = Addr.moaA.bytes, mb = Addr.moaB.bytes
    let a6 = Addr.hoa6A.bytes, b6 = Addr.hoa6B.bytes, ma6 = Addr.moa6A.bytes, mb6 = Addr.moa6B.bytes
    let outbound = AddressRewrite(source: Addr.moaA, destination: Addr.moaB)
    let inbound = AddressRewrite(source: Addr.hoaA, destination: Addr.hoaB)
    let outbound6 = AddressRewrite(source: Addr.moa6A, destination: Addr.moa6B)
    let inbound6 = AddressRewrite(source: Addr.hoa6A, destination: Addr.hoa6B)
    let payload: [UInt8] = Array("the quick brown fox jumps over the lazy dog".utf8)

    func check4(_ build: ([UInt8], [UInt8]) -> [UInt8]) throws {
        let home = build(a, b)
        let away = build(ma, mb)
        #expect(try translated(home, outbound).hex == away.hex)
        #expect(try translated(away, inbound).hex == home.hex)
    }

    func check6(_ build: ([UInt8], [UInt8]) -> [UInt8]) throws {
        let home = build(a6, b6)
        let away = build(ma6, mb6)
        #expect(try translated(home, outbound6).hex == away.hex)
        #expect(try translated(away, inbound6).hex == home.hex)
    }

    @Test func ipv4TCP() throws {
        try check4 { s, d in Build.ipv4(s, d, proto: 6, payload: Build.tcp(s, d, payload: payload)) }
    }

    /// A literal TCP SYN 198.51.100.10:12345 -> 198.51.100.20:80 and the same segment
    /// between the MoAs. Both checksums of both packets were computed outside this project
    /// (a ten-line Python RFC 1071 sum), not by the code under test.
    @Test func ipv4TCPLiteral() throws {
        let home = [UInt8](hex: "45000028abcd000040067a7dc633640ac6336414"
                                + "3039005000000000000000005002ffff2ad40000")
        let away = [UInt8](hex: "45000028abcd00004006d0afc000024dcb007105"
                                + "3039005000000000000000005002ffff81060000")
        #expect(try translated(home, outbound).hex == away.hex)
        #expect(try translated(away, inbound).hex == home.hex)
    }

    @Test func ipv4UDP() throws {
        try check4 { s, d in Build.ipv4(s, d, proto: 17, payload: Build.udp(s, d, payload: payload)) }
    }

    @Test func ipv4UDPZeroChecksumStaysZero() throws {
        try check4 { s, d in
            Build.ipv4(s, d, proto: 17, payload: Build.udp(s, d, payload: payload, zeroChecksum: true))
        }
    }

    /// A UDP checksum that computes to zero after translation is sent as 0xFFFF.
    @Test func ipv4UDPComputedZeroBecomesAllOnes() throws {
        // Choose the last payload word so that the checksum for the new addresses is 0.
        var data = payload + [0, 0, 0]  // 46 bytes: the adjusted word is word-aligned
        let probe = Build.udp(ma, mb, payload: data)
        let sumWithoutAdjust = Build.foldedSum(
            Build.pseudoHeader(source: ma, destination: mb, proto: 17, length: probe.count)
                + Build.udpHeader(length: probe.count) + data)
        let adjust = ~sumWithoutAdjust
        data[data.count - 2] = UInt8(adjust >> 8)
        data[data.count - 1] = UInt8(adjust & 0xFF)
        let away = Build.ipv4(ma, mb, proto: 17, payload: Build.udp(ma, mb, payload: data))
        #expect(away[20 + 6] == 0xFF && away[20 + 7] == 0xFF)
        let home = Build.ipv4(a, b, proto: 17, payload: Build.udp(a, b, payload: data))
        #expect(try translated(home, outbound).hex == away.hex)
    }

    @Test func ipv4ICMPEchoKeepsICMPChecksum() throws {
        try check4 { s, d in Build.ipv4(s, d, proto: 1, payload: Build.icmpEcho(payload: payload)) }
    }

    @Test func ipv4WithOptions() throws {
        // Router alert + NOP padding: a header of 24 bytes.
        try check4 { s, d in
            Build.ipv4(s, d, proto: 6, payload: Build.tcp(s, d, payload: payload), options: [0x94, 0x04, 0, 0])
        }
    }

    @Test func ipv4SourceRouteKeepsTransportChecksum() throws {
        // An unfinished loose source route: the transport pseudo-header used the final hop,
        // so rewriting the header's destination must not touch the TCP checksum.
        let route: [UInt8] = [0x83, 7, 4] + [203, 0, 113, 99] + [1]
        let finalHop: [UInt8] = [203, 0, 113, 99]
        let home = Build.ipv4(a, b, proto: 6, payload: Build.tcp(a, finalHop, payload: payload), options: route)
        let away = Build.ipv4(ma, mb, proto: 6, payload: Build.tcp(ma, finalHop, payload: payload), options: route)
        #expect(try translated(home, outbound).hex == away.hex)
    }

    @Test func ipv4FirstFragmentCarriesTransportChecksum() throws {
        try check4 { s, d in
            let segment = Build.udp(s, d, payload: payload + payload)
            return Build.ipv4(s, d, proto: 17, payload: Array(segment[0..<32]), moreFragments: true)
        }
    }

    @Test func ipv4LaterFragmentChangesHeaderOnly() throws {
        let tail = Array(payload[0..<24])
        try check4 { s, d in Build.ipv4(s, d, proto: 17, payload: tail, fragmentOffset: 4) }
    }

    @Test func ipv6TCP() throws {
        try check6 { s, d in Build.ipv6(s, d, proto: 6, payload: Build.tcp(s, d, payload: payload)) }
    }

    @Test func ipv6UDP() throws {
        try check6 { s, d in Build.ipv6(s, d, proto: 17, payload: Build.udp(s, d, payload: payload)) }
    }

    @Test func ipv6ICMPv6Echo() throws {
        try check6 { s, d in Build.ipv6(s, d, proto: 58, payload: Build.icmpv6Echo(s, d, payload: payload)) }
    }

    @Test func ipv6ExtensionChain() throws {
        let hopByHop: [UInt8] = [0, 0, 1, 4, 0, 0, 0, 0]            // PadN
        let destination: [UInt8] = [0, 1, 1, 12] + [UInt8](repeating: 0, count: 12)
        let routingDone: [UInt8] = [0, 2, 0, 0, 0, 0, 0, 0] + a6     // type 0, segments left 0
        let auth: [UInt8] = [0, 4, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1] + [UInt8](repeating: 0xAA, count: 12)
        try check6 { s, d in
            Build.ipv6(s, d, proto: 6, payload: Build.tcp(s, d, payload: payload),
                       extensions: [(0, hopByHop), (60, destination), (43, routingDone), (51, auth)])
        }
    }

    @Test func ipv6RoutingHeaderWithSegmentsLeftKeepsTransportChecksum() throws {
        let finalHop = IPv6Address("2001:db8:ffff::1")!.bytes
        let routing: [UInt8] = [0, 2, 0, 1, 0, 0, 0, 0] + finalHop
        let home = Build.ipv6(a6, b6, proto: 17, payload: Build.udp(a6, finalHop, payload: payload),
                              extensions: [(43, routing)])
        let away = Build.ipv6(ma6, mb6, proto: 17, payload: Build.udp(ma6, finalHop, payload: payload),
                              extensions: [(43, routing)])
        #expect(try translated(home, outbound6).hex == away.hex)
    }

    @Test func ipv6FirstFragment() throws {
        try check6 { s, d in
            let segment = Build.udp(s, d, payload: payload + payload)
            return Build.ipv6(s, d, proto: 17, payload: Array(segment[0..<40]),
                              extensions: [(44, [0, 0, 0x00, 0x01, 0xDE, 0xAD, 0xBE, 0xEF])])
        }
    }

    @Test func ipv6LaterFragment() throws {
        try check6 { s, d in
            Build.ipv6(s, d, proto: 17, payload: Array(payload[0..<16]),
                       extensions: [(44, [0, 0, 0x00, 0x29, 0xDE, 0xAD, 0xBE, 0xEF])])
        }
    }

    @Test func ipv6ESPIsPassedWithAddressesOnly() throws {
        try check6 { s, d in Build.ipv6(s, d, proto: 50, payload: [0, 0, 1, 0] + payload) }
    }

    /// A port-unreachable from the peer about a datagram we sent: the outer and the
    /// quoted addresses are translated, and the quoted UDP checksum, the quoted IPv4
    /// header checksum and the outer ICMP checksum all stay right.
    @Test func ipv4ICMPErrorWithQuote() throws {
        func build(_ me: [UInt8], _ peer: [UInt8], quoteLength: Int) -> [UInt8] {
            let invoking = Build.ipv4(me, peer, proto: 17, payload: Build.udp(me, peer, payload: payload))
            let quote = Array(invoking.prefix(quoteLength))
            return Build.ipv4(peer, me, proto: 1,
                              payload: Build.icmpError(type: 3, code: 3, quote: quote, v6: false,
                                                       source: peer, destination: me))
        }
        for quoteLength in [28, 30, 60] {
            let away = build(ma, mb, quoteLength: quoteLength)
            let home = build(a, b, quoteLength: quoteLength)
            let rewrite = AddressRewrite(source: Addr.hoaB, destination: Addr.hoaA)
            let quoteRewrite = AddressRewrite(source: Addr.hoaA, destination: Addr.hoaB)
            #expect(try translated(away, rewrite, quote: quoteRewrite).hex == home.hex, "quote \(quoteLength)")
        }
    }

    /// A time-exceeded from a router (not a MAT peer) quoting our TCP segment: only the
    /// outer destination and the quote change.
    @Test func ipv4ICMPErrorFromRouter() throws {
        let router: [UInt8] = [203, 0, 113, 1]
        func build(_ me: [UInt8], _ peer: [UInt8]) -> [UInt8] {
            let invoking = Build.ipv4(me, peer, proto: 6, payload: Build.tcp(me, peer, payload: payload))
            return Build.ipv4(router, me, proto: 1,
                              payload: Build.icmpError(type: 11, code: 0, quote: Array(invoking.prefix(48)),
                                                       v6: false, source: router, destination: me))
        }
        let translatedBack = try translated(
            build(ma, mb), AddressRewrite(destination: Addr.hoaA),
            quote: AddressRewrite(source: Addr.hoaA, destination: Addr.hoaB))
        #expect(translatedBack.hex == build(a, b).hex)
    }

    @Test func ipv6ICMPv6ErrorWithQuote() throws {
        func build(_ me: [UInt8], _ peer: [UInt8], quoteLength: Int) -> [UInt8] {
            let invoking = Build.ipv6(me, peer, proto: 6, payload: Build.tcp(me, peer, payload: payload))
            return Build.ipv6(peer, me, proto: 58,
                              payload: Build.icmpError(type: 1, code: 4, quote: Array(invoking.prefix(quoteLength)),
                                                       v6: true, source: peer, destination: me))
        }
        for quoteLength in [48, 58, 60, 100] {
            let away = build(ma6, mb6, quoteLength: quoteLength)
            let home = build(a6, b6, quoteLength: quoteLength)
            #expect(try translated(away, AddressRewrite(source: Addr.hoa6B, destination: Addr.hoa6A),
                                   quote: AddressRewrite(source: Addr.hoa6A, destination: Addr.hoa6B)).hex
                    == home.hex, "quote \(quoteLength)")
        }
    }

    /// A GSO super-packet read with `NEEDS_CSUM`: the TCP field holds the folded pseudo-header
    /// sum, uncomplemented. After translation it must hold the new addresses' partial sum,
    /// and completing it over the data must give the full checksum for the new addresses.
    @Test(arguments: [false, true])
    func partialChecksum(v6: Bool) throws {
        let big = [UInt8]((0..<60_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        func build(_ s: [UInt8], _ d: [UInt8]) -> [UInt8] {
            var segment = Build.tcpHeader() + big
            let pseudo = Build.pseudoHeader(source: s, destination: d, proto: 6, length: segment.count)
            Build.put16(&segment, 16, Build.foldedSum(pseudo))
            return v6 ? Build.ipv6(s, d, proto: 6, payload: segment) : Build.ipv4(s, d, proto: 6, payload: segment)
        }
        let start = v6 ? 40 : 20
        let result: [UInt8]
        let expected: [UInt8]
        if v6 {
            result = try translated(build(a6, b6), outbound6, checksum: .partial(start: start, offset: 16))
            expected = build(ma6, mb6)
        } else {
            result = try translated(build(a, b), outbound, checksum: .partial(start: start, offset: 16))
            expected = build(ma, mb)
        }
        #expect(result.hex == expected.hex)
        // Finish the checksum the way the device would: sum from csum_start, complement.
        let completed = ~Build.foldedSum(Array(result[start...]))
        let full = v6 ? Build.ipv6(ma6, mb6, proto: 6, payload: Build.tcp(ma6, mb6, payload: big))
                      : Build.ipv4(ma, mb, proto: 6, payload: Build.tcp(ma, mb, payload: big))
        #expect(completed == UInt16(full[start + 16]) << 8 | UInt16(full[start + 17]))
    }

    /// At home (MoA == HoA) the rewrite is a no-op: nothing changes, not even a 0 checksum.
    @Test func rewriteToSameAddressesChangesNothing() throws {
        let packet = Build.ipv4(a, b, proto: 17, payload: Build.udp(a, b, payload: payload, zeroChecksum: true))
        #expect(try translated(packet, inbound) == packet)
        let tcp = Build.ipv4(a, b, proto: 6, payload: Build.tcp(a, b, payload: payload))
        #expect(try translated(tcp, AddressRewrite<IPv4Address>.unchanged) == tcp)
    }

    @Test func sourceOnlyAndDestinationOnly() throws {
        let home = Build.ipv4(a, b, proto: 6, payload: Build.tcp(a, b, payload: payload))
        #expect(try translated(home, AddressRewrite(source: Addr.moaA)).hex
                == Build.ipv4(ma, b, proto: 6, payload: Build.tcp(ma, b, payload: payload)).hex)
        #expect(try translated(home, AddressRewrite(destination: Addr.moaB)).hex
                == Build.ipv4(a, mb, proto: 6, payload: Build.tcp(a, mb, payload: payload)).hex)
    }

    @Test func familyMismatchIsRefusedUntouched() {
        let packet = Build.ipv4(a, b, proto: 6, payload: Build.tcp(a, b, payload: payload))
        #expect(throws: DropReason.addressFamilyMismatch) { try translated(packet, outbound6) }
    }

    @Test func partialOffsetOutsidePacketIsRefused() {
        let packet = Build.ipv4(a, b, proto: 6, payload: Build.tcp(a, b, payload: payload))
        #expect(throws: DropReason.badPartialChecksumOffset) {
            try translated(packet, outbound, checksum: .partial(start: packet.count - 1, offset: 0))
        }
    }
}
