import MATNode
import MATPacket
import Testing

@Suite struct PacketProcessorTests {
    static let hoaMe = IPv4Address(198, 51, 100, 10), moaMe = IPv4Address(192, 0, 2, 10)
    static let hoaPeer = IPv4Address(198, 51, 100, 20), moaPeer = IPv4Address(192, 0, 2, 130)
    static let plainHost = IPv4Address(192, 0, 2, 131)

    func processor() throws -> PacketProcessor {
        var table = MappingTable(hashSeed: 1)
        try table.insert(PeerMapping(hoa: .v4(Self.hoaPeer), moas: [MoABinding(address: .v4(Self.moaPeer))]))
        return PacketProcessor(table: table, addresses: NodeAddresses(home4: Self.hoaMe, mobile4: Self.moaMe))
    }

    /// A UDP datagram with a correct checksum, built by hand here.
    func udp(_ source: IPv4Address, _ destination: IPv4Address, sourcePort: UInt16 = 5000) -> [UInt8] {
        var packet: [UInt8] = [0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0] + source.bytes + destination.bytes
            + [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xff), 0x13, 0x89, 0, 12, 0, 0, 1, 2, 3, 4]
        packet.withUnsafeMutableBytes { buffer in
            let header = ~InternetChecksum.sum(buffer.baseAddress!, count: 20)
            buffer.storeBytes(of: header.bigEndian, toByteOffset: 10, as: UInt16.self)
            let pseudo = source.bytes + destination.bytes + [0, 17, 0, 12]
            let pseudoSum = pseudo.withUnsafeBytes { InternetChecksum.sum($0.baseAddress!, count: 12) }
            let dataSum = InternetChecksum.sum(buffer.baseAddress! + 20, count: 12)
            let udpChecksum = InternetChecksum.finish(UInt64(pseudoSum) + UInt64(dataSum))
            buffer.storeBytes(of: udpChecksum.bigEndian, toByteOffset: 26, as: UInt16.self)
        }
        return packet
    }

    /// A destination-unreachable with code `code` quoting `quote`, checksums computed here.
    func icmpError(code: UInt8, _ source: IPv4Address, _ destination: IPv4Address, quote: [UInt8]) -> [UInt8] {
        var message: [UInt8] = [3, code, 0, 0, 0, 0, 0x05, 0x78] + quote
        message.withUnsafeMutableBytes { buffer in
            let sum = ~InternetChecksum.sum(buffer.baseAddress!, count: buffer.count)
            buffer.storeBytes(of: sum.bigEndian, toByteOffset: 2, as: UInt16.self)
        }
        var packet: [UInt8] = [0x45, 0, 0, UInt8(20 + message.count), 0, 2, 0, 0, 64, 1, 0, 0]
            + source.bytes + destination.bytes
        packet.withUnsafeMutableBytes { buffer in
            let sum = ~InternetChecksum.sum(buffer.baseAddress!, count: 20)
            buffer.storeBytes(of: sum.bigEndian, toByteOffset: 10, as: UInt16.self)
        }
        return packet + message
    }

    func run(_ processor: inout PacketProcessor, _ packet: inout [UInt8], _ direction: PacketProcessor.Direction) -> Bool {
        let count = packet.count
        return packet.withUnsafeMutableBytes {
            processor.process($0.baseAddress!, length: count, direction: direction, checksum: .complete)
        }
    }

    @Test func outboundRewritesToMobileAddresses() throws {
        var processor = try processor()
        var packet = udp(Self.hoaMe, Self.hoaPeer)
        #expect(run(&processor, &packet, .outbound))
        #expect(packet == udp(Self.moaMe, Self.moaPeer))
        #expect(processor.counters.outboundPackets == 1)
        #expect(processor.counters.outboundBytes == 32)
    }

    @Test func inboundRewritesToHomeAddresses() throws {
        var processor = try processor()
        var packet = udp(Self.moaPeer, Self.moaMe)
        #expect(run(&processor, &packet, .inbound))
        #expect(packet == udp(Self.hoaPeer, Self.hoaMe))
        #expect(processor.counters.inboundPackets == 1)
    }

    @Test func atHomeOnlyThePeerSideChanges() throws {
        var processor = try processor()
        processor.addresses.mobile4 = Self.hoaMe
        var packet = udp(Self.hoaMe, Self.hoaPeer)
        #expect(run(&processor, &packet, .outbound))
        #expect(packet == udp(Self.hoaMe, Self.moaPeer))
    }

    @Test func refusalsAreCountedByReason() throws {
        var processor = try processor()
        var unknownPeer = udp(Self.hoaMe, IPv4Address(198, 51, 100, 99))
        #expect(!run(&processor, &unknownPeer, .outbound))
        var notMine = udp(IPv4Address(198, 51, 100, 11), Self.hoaPeer)
        #expect(!run(&processor, &notMine, .outbound))
        // The receive rule: a non-MAT source is never translated.
        var fromPlainHost = udp(Self.plainHost, Self.moaMe)
        let untouched = fromPlainHost
        #expect(!run(&processor, &fromPlainHost, .inbound))
        #expect(fromPlainHost == untouched)
        var garbage: [UInt8] = [0x45, 0, 0]
        #expect(!run(&processor, &garbage, .inbound))
        let counters = processor.counters
        #expect(counters.engineDrops[Int(EngineDropReason.noMapping.rawValue)] == 1)
        #expect(counters.engineDrops[Int(EngineDropReason.notFromHomeAddress.rawValue)] == 1)
        #expect(counters.engineDrops[Int(EngineDropReason.unknownPeer.rawValue)] == 1)
        #expect(counters.packetDrops[Int(DropReason.truncated.rawValue)] == 1)
        #expect(counters.totalDrops == 4)
        #expect(counters.outboundPackets == 0 && counters.inboundPackets == 0)
    }

    @Test func noMobileAddressIsCounted() throws {
        var processor = try processor()
        processor.addresses.mobile4 = nil
        var packet = udp(Self.hoaMe, Self.hoaPeer)
        #expect(!run(&processor, &packet, .outbound))
        #expect(processor.counters.engineDrops[Int(EngineDropReason.noMobileAddress.rawValue)] == 1)
    }

    /// Our kernel's port-unreachable to the peer quotes the peer's datagram, which ran
    /// peer HoA -> our HoA: the quote must leave as peer MoA -> our MoA.
    @Test func outboundICMPErrorMirrorsTheQuote() throws {
        var processor = try processor()
        let quoted = udp(Self.hoaPeer, Self.hoaMe)
        var packet = icmpError(code: 3, Self.hoaMe, Self.hoaPeer, quote: quoted)
        #expect(run(&processor, &packet, .outbound))
        #expect(packet == icmpError(code: 3, Self.moaMe, Self.moaPeer, quote: udp(Self.moaPeer, Self.moaMe)))
    }
}

extension PacketProcessorTests {
    /// A router's "fragmentation needed" about our datagram to the peer (MoA -> MoA) must
    /// reach the HoA socket as an error about HoA -> HoA, or path MTU discovery stalls.
    @Test func inboundICMPErrorFromRouterIsTranslated() throws {
        var processor = try processor()
        let router = IPv4Address(203, 0, 113, 1)
        var packet = icmpError(code: 4, router, Self.moaMe, quote: udp(Self.moaMe, Self.moaPeer))
        #expect(run(&processor, &packet, .inbound))
        #expect(packet == icmpError(code: 4, router, Self.hoaMe, quote: udp(Self.hoaMe, Self.hoaPeer)))
        // The same error about traffic to a host that is not a peer is not ours to touch.
        var other = icmpError(code: 4, router, Self.moaMe, quote: udp(Self.moaMe, Self.plainHost))
        #expect(!run(&processor, &other, .inbound))
    }
}
