/// How the transport checksum of a packet is to be kept right.
public enum ChecksumMode: Sendable, Equatable {
    /// The checksum is complete, as on the wire: update it with RFC 1624.
    case complete
    /// The packet came with a virtio net header flagged `NEEDS_CSUM`: the field at
    /// `start + offset` holds the uncomplemented pseudo-header sum, which the device (or
    /// the kernel) completes over the data later. Only the pseudo-header part changes.
    case partial(start: Int, offset: Int)
}

/// New addresses for a packet's source and destination; nil leaves a field as it is.
public struct AddressRewrite<Address: PacketAddress>: Sendable, Equatable {
    /// The new source address, or nil to keep the current one.
    public var source: Address?
    /// The new destination address, or nil to keep the current one.
    public var destination: Address?

    /// A rewrite of either or both addresses.
    @inlinable
    public init(source: Address? = nil, destination: Address? = nil) {
        self.source = source
        self.destination = destination
    }

    /// Leaves both addresses alone.
    @inlinable
    public static var unchanged: Self { Self() }
}

/// Rewrites the addresses of a parsed packet in place and keeps every checksum valid
/// with incremental updates: the IPv4 header checksum, TCP, UDP, UDP-Lite, DCCP and
/// ICMPv6 through the pseudo-header, and for ICMP errors the quoted packet's addresses,
/// its IPv4 header checksum, its transport checksum and the outer ICMP checksum.
///
/// Packets are translated once per buffer, so a GSO super-packet costs the same as a
/// small one: the payload is never read.
public enum Translator {
    /// Applies `rewrite` to the packet and `quoteRewrite` to the packet an ICMP error quotes.
    ///
    /// Throws, before changing any byte, when the rewrite's family is not the packet's
    /// or a partial-checksum location lies outside the packet.
    // Transparent, not just inlinable: the optimizer judged the specialized body too big to
    // inline into the engine's loop, and the call then cost 2.4x the C reference
    // (docs/benchmarks.md, "why the attributes").
    @_transparent
    public static func translate<Address: PacketAddress>(
        _ base: UnsafeMutableRawPointer,
        layout: PacketLayout,
        rewrite: AddressRewrite<Address>,
        quoteRewrite: AddressRewrite<Address> = .unchanged,
        checksum: ChecksumMode = .complete
    ) throws(DropReason) {
        guard Address.family == layout.family else { throw .addressFamilyMismatch }
        var partialField = -1
        if case .partial(let start, let offset) = checksum {
            guard start >= 0, offset >= 0, start + offset + 2 <= layout.packetLength else {
                throw .badPartialChecksumOffset
            }
            partialField = start + offset
        }

        let sourceDelta = replace(base, at: layout.sourceOffset, with: rewrite.source)
        let destinationDelta = replace(base, at: layout.destinationOffset, with: rewrite.destination)
        if Address.family == .ipv4 && sourceDelta | destinationDelta != 0 {
            updateChecksumField(base, at: 10, delta: sourceDelta &+ destinationDelta, zeroMeansNone: false)
        }
        let pseudoDelta = sourceDelta &+ (layout.pseudoHeaderHasDestination ? destinationDelta : 0)

        var quoteDelta: UInt64 = 0
        if let quote = layout.quote {
            quoteDelta = translateQuote(base, quote: quote, rewrite: quoteRewrite)
        }
        // A partial sum covers only the pseudo-header; the data, quote included, is
        // summed later by whoever completes it.
        if partialField >= 0 {
            if pseudoDelta != 0 {
                let field = loadField(base, at: partialField)
                storeField(base, at: partialField, InternetChecksum.updatePartial(field, delta: pseudoDelta))
            }
            return
        }
        guard let transport = layout.transportOffset else { return }
        let proto = layout.transportProtocol
        if let checksumOffset = TransportRules.pseudoHeaderChecksumOffset(proto) {
            updateChecksumField(
                base, at: transport + checksumOffset, delta: pseudoDelta &+ quoteDelta,
                zeroMeansNone: proto == IPProtocolNumber.udp)
        } else if quoteDelta != 0 {
            updateChecksumField(base, at: transport + 2, delta: quoteDelta, zeroMeansNone: false)
        }
    }

    /// Parses the packet in `buffer` and applies `rewrite` to it (and `quoteRewrite` to
    /// the packet an ICMP error quotes). Returns the layout it found.
    @inlinable
    @discardableResult
    public static func translate<Address: PacketAddress>(
        _ buffer: UnsafeMutableRawBufferPointer,
        rewrite: AddressRewrite<Address>,
        quoteRewrite: AddressRewrite<Address> = .unchanged,
        checksum: ChecksumMode = .complete
    ) throws(DropReason) -> PacketLayout {
        guard let base = buffer.baseAddress else { throw .truncated }
        let layout = try PacketLayout.parse(UnsafeRawPointer(base), length: buffer.count)
        try translate(base, layout: layout, rewrite: rewrite, quoteRewrite: quoteRewrite, checksum: checksum)
        return layout
    }

    /// Rewrites the quoted packet of an ICMP error and returns what its changed bytes add
    /// to the outer ICMP checksum.
    @inlinable
    static func translateQuote<Address: PacketAddress>(
        _ base: UnsafeMutableRawPointer, quote: QuotedPacket, rewrite: AddressRewrite<Address>
    ) -> UInt64 {
        let v4 = Address.family == .ipv4
        let start = quote.offset
        let sourceDelta = replace(base, at: start + (v4 ? 12 : 8), with: rewrite.source)
        let destinationDelta = replace(base, at: start + (v4 ? 16 : 24), with: rewrite.destination)
        guard sourceDelta | destinationDelta != 0 else { return 0 }
        var outerDelta = sourceDelta &+ destinationDelta
        if v4 {
            outerDelta &+= updateChecksumField(
                base, at: start + 10, delta: sourceDelta &+ destinationDelta, zeroMeansNone: false)
        }
        if let checksumOffset = quote.transportChecksumOffset {
            let pseudoDelta = sourceDelta &+ (quote.pseudoHeaderHasDestination ? destinationDelta : 0)
            outerDelta &+= updateChecksumField(
                base, at: checksumOffset, delta: pseudoDelta, zeroMeansNone: quote.transportIsUDP)
        }
        return outerDelta
    }

    /// Writes `new` over the address at `offset` and returns the checksum delta of the
    /// change, or 0 when there is nothing to change. Skipping equal addresses matters:
    /// RFC 1624's erratum 4782 turns a zero checksum into 0xFFFF on a no-op update.
    @inlinable @inline(__always)
    static func replace<Address: PacketAddress>(
        _ base: UnsafeMutableRawPointer, at offset: Int, with new: Address?
    ) -> UInt64 {
        guard let new else { return 0 }
        let old = Address(loadingFrom: UnsafeRawPointer(base), offset: offset)
        guard old != new else { return 0 }
        new.store(to: base, offset: offset)
        return InternetChecksum.delta(replacing: old.wordSum, with: new.wordSum)
    }

    /// Applies `delta` to the complete checksum at `offset` and returns the delta of the
    /// field's own change, for a checksum that covers this one. A UDP checksum of zero
    /// means "none" and stays zero; a UDP result of zero is sent as 0xFFFF (RFC 768).
    @inlinable @inline(__always) @discardableResult
    static func updateChecksumField(
        _ base: UnsafeMutableRawPointer, at offset: Int, delta: UInt64, zeroMeansNone: Bool
    ) -> UInt64 {
        guard delta != 0 else { return 0 }
        let old = loadField(base, at: offset)
        if zeroMeansNone && old == 0 { return 0 }
        var new = InternetChecksum.update(old, delta: delta)
        if zeroMeansNone && new == 0 { new = 0xFFFF }
        storeField(base, at: offset, new)
        return InternetChecksum.delta(replacing: UInt64(old), with: UInt64(new))
    }

    @inlinable @inline(__always)
    static func loadField(_ base: UnsafeMutableRawPointer, at offset: Int) -> UInt16 {
        UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable @inline(__always)
    static func storeField(_ base: UnsafeMutableRawPointer, at offset: Int, _ value: UInt16) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }
}
