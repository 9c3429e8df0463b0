/// Where an IPv6 extension-header chain ends and what it said on the way.
@usableFromInline
struct IPv6ChainEnd {
    /// The first header that is not an extension header the core walks through.
    @usableFromInline var nextHeader: UInt8
    /// Offset of that header.
    @usableFromInline var offset: Int
    @usableFromInline var isFragment: Bool
    /// A fragment header with a non-zero offset: what follows is payload, not headers.
    @usableFromInline var isLaterFragment: Bool
    @usableFromInline var pseudoHeaderHasDestination: Bool

    @inlinable
    init(nextHeader: UInt8, offset: Int) {
        self.nextHeader = nextHeader
        self.offset = offset
        isFragment = false
        isLaterFragment = false
        pseudoHeaderHasDestination = true
    }
}

extension PacketLayout {
    /// No legitimate packet needs more; the bound keeps a hostile chain cheap to reject.
    @usableFromInline static let maximumExtensionHeaders = 16

    /// Parses an IPv6 header (RFC 8200) and whatever follows it.
    @usableFromInline @_transparent
    static func parseIPv6(_ base: UnsafeRawPointer, length: Int) throws(DropReason) -> PacketLayout {
        guard length >= 40 else { throw .truncated }
        let payloadLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
        let firstHeader = base.load(fromByteOffset: 6, as: UInt8.self)
        let packetLength = 40 + payloadLength
        // A zero payload length with a payload is a jumbogram, which no TUN path produces.
        guard packetLength <= length,
              payloadLength != 0 || firstHeader == IPProtocolNumber.noNextHeader else {
            throw .badIPv6PayloadLength
        }
        let end = try walkIPv6Chain(base, headerStart: 0, end: packetLength, firstHeader: firstHeader)
        var layout = PacketLayout(
            family: .ipv6,
            packetLength: packetLength,
            transportProtocol: end.nextHeader,
            isFragment: end.isFragment,
            pseudoHeaderHasDestination: end.pseudoHeaderHasDestination
        )
        let carriesTransport = !end.isLaterFragment
            && end.nextHeader != IPProtocolNumber.esp
            && end.nextHeader != IPProtocolNumber.noNextHeader
        if carriesTransport {
            try layout.parseTransport(base, at: end.offset)
        }
        return layout
    }

    /// Follows the extension headers of the IPv6 header at `headerStart`, reading nothing
    /// at or past `end`. Stops at the first header that is not hop-by-hop, routing,
    /// fragment, destination options or AH (so cleanly at ESP or anything unknown), and
    /// right after a non-first fragment's fragment header.
    @inlinable @inline(__always)
    static func walkIPv6Chain(
        _ base: UnsafeRawPointer, headerStart: Int, end: Int, firstHeader: UInt8
    ) throws(DropReason) -> IPv6ChainEnd {
        var chain = IPv6ChainEnd(nextHeader: firstHeader, offset: headerStart + 40)
        var headersSeen = 0
        while true {
            let offset = chain.offset
            let headerLength: Int
            switch chain.nextHeader {
            case IPProtocolNumber.hopByHop, IPProtocolNumber.routing, IPProtocolNumber.destinationOptions:
                if chain.nextHeader == IPProtocolNumber.hopByHop && offset != headerStart + 40 {
                    throw .misplacedHopByHop
                }
                guard offset + 8 <= end else { throw .extensionHeaderTruncated }
                headerLength = (Int(base.load(fromByteOffset: offset + 1, as: UInt8.self)) + 1) * 8
                if chain.nextHeader == IPProtocolNumber.routing,
                   base.load(fromByteOffset: offset + 3, as: UInt8.self) != 0 {
                    chain.pseudoHeaderHasDestination = false
                }
            case IPProtocolNumber.fragment:
                headerLength = 8
                guard offset + 8 <= end else { throw .extensionHeaderTruncated }
                let field = UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self))
                chain.isFragment = true
                chain.isLaterFragment = field >> 3 != 0
            case IPProtocolNumber.authentication:
                guard offset + 8 <= end else { throw .extensionHeaderTruncated }
                headerLength = (Int(base.load(fromByteOffset: offset + 1, as: UInt8.self)) + 2) * 4
            default:
                return chain
            }
            guard offset + headerLength <= end else { throw .extensionHeaderTruncated }
            headersSeen += 1
            guard headersSeen <= maximumExtensionHeaders else { throw .tooManyExtensionHeaders }
            chain.nextHeader = base.load(fromByteOffset: offset, as: UInt8.self)
            chain.offset = offset + headerLength
            if chain.isLaterFragment { return chain }
        }
    }
}
