extension PacketLayout {
    /// Checks the transport header at `offset` and, for an ICMP error, the packet it quotes.
    @inlinable @inline(__always)
    mutating func parseTransport(_ base: UnsafeRawPointer, at offset: Int) throws(DropReason) {
        let proto = transportProtocol
        let available = packetLength - offset
        guard available >= TransportRules.minimumHeader(proto) else { throw .transportTruncated }
        if proto == IPProtocolNumber.tcp {
            let dataOffset = Int(base.load(fromByteOffset: offset + 12, as: UInt8.self) >> 4) * 4
            guard dataOffset >= 20, dataOffset <= available else { throw .badTCPHeaderLength }
        }
        transportOffset = offset
        let isICMP = family == .ipv4 ? proto == IPProtocolNumber.icmp : proto == IPProtocolNumber.icmpv6
        if isICMP {
            let type = base.load(fromByteOffset: offset, as: UInt8.self)
            if TransportRules.isError(icmpType: type, icmpv6: family == .ipv6) {
                quote = try Self.parseQuote(base, family: family, at: offset + 8, end: packetLength)
            }
        }
    }

    /// Parses the invoking packet that an ICMP error quotes (RFC 792, RFC 4443). The quote
    /// is usually cut short, so only its IP header must be whole; the transport checksum
    /// is located only when the quote still holds it.
    @inlinable
    static func parseQuote(
        _ base: UnsafeRawPointer, family: AddressFamily, at start: Int, end: Int
    ) throws(DropReason) -> QuotedPacket {
        let length = end - start
        var quote = QuotedPacket(offset: start, length: length)
        let transportStart: Int
        let proto: UInt8
        if family == .ipv4 {
            guard length >= 20, base.load(fromByteOffset: start, as: UInt8.self) >> 4 == 4 else {
                throw .badICMPQuote
            }
            let headerLength = Int(base.load(fromByteOffset: start, as: UInt8.self) & 0x0F) * 4
            guard headerLength >= 20, headerLength <= length,
                  let keepsDestination = ipv4OptionsKeepDestination(
                      UnsafeRawPointer(base + start), headerLength: headerLength) else {
                throw .badICMPQuote
            }
            quote.pseudoHeaderHasDestination = keepsDestination
            let fragmentField = UInt16(bigEndian: base.loadUnaligned(fromByteOffset: start + 6, as: UInt16.self))
            if fragmentField & 0x1FFF != 0 { return quote }
            transportStart = start + headerLength
            proto = base.load(fromByteOffset: start + 9, as: UInt8.self)
        } else {
            guard length >= 40, base.load(fromByteOffset: start, as: UInt8.self) >> 4 == 6 else {
                throw .badICMPQuote
            }
            // A quote cut inside its extension headers is normal: translate its addresses only.
            guard let chain = try? walkIPv6Chain(
                base, headerStart: start, end: end,
                firstHeader: base.load(fromByteOffset: start + 6, as: UInt8.self)) else {
                return quote
            }
            quote.pseudoHeaderHasDestination = chain.pseudoHeaderHasDestination
            if chain.isLaterFragment { return quote }
            transportStart = chain.offset
            proto = chain.nextHeader
        }
        if let checksumOffset = TransportRules.pseudoHeaderChecksumOffset(proto),
           transportStart + checksumOffset + 2 <= end {
            quote.transportChecksumOffset = transportStart + checksumOffset
            quote.transportIsUDP = proto == IPProtocolNumber.udp
        }
        return quote
    }
}
