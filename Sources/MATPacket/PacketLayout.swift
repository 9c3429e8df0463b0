/// Where the parts of one IP packet sit in its buffer, found once by `PacketLayout.parse`
/// and then used by the translator without parsing again.
///
/// Offsets are byte offsets from the start of the IP header. The layout holds no pointer,
/// so it is a plain value: the caller keeps the buffer alive.
public struct PacketLayout: Sendable, Equatable {
    /// IPv4 or IPv6.
    public var family: AddressFamily
    /// Bytes of the IP packet proper (IPv4 total length, or 40 + IPv6 payload length).
    /// Bytes past it in the buffer are not part of the packet and are never touched.
    public var packetLength: Int
    /// Offset of the transport header, or nil when this packet carries none of its own
    /// (a non-first fragment, ESP, "no next header").
    public var transportOffset: Int?
    /// The protocol number of the transport header (the last "next header" for IPv6).
    public var transportProtocol: UInt8
    /// True for any fragment, first or not.
    public var isFragment: Bool
    /// False when a source route (IPv4 LSRR/SSRR, IPv6 routing header with segments left)
    /// puts a different final destination into the transport pseudo-header, so rewriting
    /// the header's destination leaves the transport checksum alone.
    public var pseudoHeaderHasDestination: Bool
    /// The packet quoted inside an ICMP or ICMPv6 error message, if this is one.
    public var quote: QuotedPacket?

    @inlinable
    init(
        family: AddressFamily, packetLength: Int, transportProtocol: UInt8,
        isFragment: Bool, pseudoHeaderHasDestination: Bool
    ) {
        self.family = family
        self.packetLength = packetLength
        self.transportOffset = nil
        self.transportProtocol = transportProtocol
        self.isFragment = isFragment
        self.pseudoHeaderHasDestination = pseudoHeaderHasDestination
        self.quote = nil
    }

    /// Offset of the source address field.
    @inlinable public var sourceOffset: Int { family == .ipv4 ? 12 : 8 }
    /// Offset of the destination address field.
    @inlinable public var destinationOffset: Int { family == .ipv4 ? 16 : 24 }

    /// Validates the packet at `base` (of `length` bytes in the buffer) and finds its parts.
    ///
    /// Reads only inside `base..<base+length`, whatever the bytes say.
    // Transparent so the layout stays in registers in the caller's loop instead of being
    // stored and reloaded (docs/benchmarks.md, "why the attributes").
    @_transparent
    public static func parse(_ base: UnsafeRawPointer, length: Int) throws(DropReason) -> PacketLayout {
        guard length >= 1 else { throw .truncated }
        switch base.load(as: UInt8.self) >> 4 {
        case 4: return try parseIPv4(base, length: length)
        case 6: return try parseIPv6(base, length: length)
        default: throw .unsupportedVersion
        }
    }
}

/// A packet quoted in an ICMP error: the invoking packet's header and as much of its
/// payload as the sender of the error kept.
public struct QuotedPacket: Sendable, Equatable {
    /// Offset of the quoted IP header within the outer packet.
    public var offset: Int
    /// Bytes of the quote present in the outer packet.
    public var length: Int
    /// Offset within the outer packet of the quoted transport header's checksum field,
    /// or nil when the quote stops before it, the quoted protocol has no pseudo-header
    /// checksum, or the quoted packet is a non-first fragment.
    public var transportChecksumOffset: Int?
    /// Whether the quoted transport protocol is UDP, whose zero checksum means "none".
    public var transportIsUDP: Bool
    /// As `PacketLayout.pseudoHeaderHasDestination`, for the quoted packet.
    public var pseudoHeaderHasDestination: Bool

    @inlinable
    init(offset: Int, length: Int) {
        self.offset = offset
        self.length = length
        transportChecksumOffset = nil
        transportIsUDP = false
        pseudoHeaderHasDestination = true
    }
}

/// IP protocol numbers the core treats specially.
public enum IPProtocolNumber {
    public static let hopByHop: UInt8 = 0
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let dccp: UInt8 = 33
    public static let routing: UInt8 = 43
    public static let fragment: UInt8 = 44
    public static let esp: UInt8 = 50
    public static let authentication: UInt8 = 51
    public static let icmpv6: UInt8 = 58
    public static let noNextHeader: UInt8 = 59
    public static let destinationOptions: UInt8 = 60
    public static let udpLite: UInt8 = 136
}

/// Facts about transport protocols that decide what translation must touch.
@usableFromInline
enum TransportRules {
    /// Smallest header the core needs to see for `proto`, up to and including its checksum.
    @inlinable @inline(__always)
    static func minimumHeader(_ proto: UInt8) -> Int {
        switch proto {
        case IPProtocolNumber.tcp: 20
        case IPProtocolNumber.udp, IPProtocolNumber.udpLite: 8
        case IPProtocolNumber.icmp, IPProtocolNumber.icmpv6: 8
        case IPProtocolNumber.dccp: 12
        default: 0
        }
    }

    /// Offset of the checksum within the transport header, for protocols whose checksum
    /// covers the IP pseudo-header and so changes with the addresses; nil otherwise.
    @inlinable @inline(__always)
    static func pseudoHeaderChecksumOffset(_ proto: UInt8) -> Int? {
        switch proto {
        case IPProtocolNumber.tcp: 16
        case IPProtocolNumber.udp, IPProtocolNumber.udpLite, IPProtocolNumber.dccp: 6
        case IPProtocolNumber.icmpv6: 2
        default: nil
        }
    }

    /// Whether an ICMP (`icmpv6 == false`) or ICMPv6 type is an error carrying a quote.
    @inlinable @inline(__always)
    static func isError(icmpType: UInt8, icmpv6: Bool) -> Bool {
        if icmpv6 { return icmpType < 128 }
        switch icmpType {
        case 3, 4, 5, 11, 12: return true
        default: return false
        }
    }
}
