/// Why the packet core refused a packet. Each case is small and stable so a counter array
/// indexed by `rawValue` can count drops without allocation.
public enum DropReason: UInt8, Error, CaseIterable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the smallest header of the claimed protocol.
    case truncated = 0
    /// The version nibble is neither 4 nor 6.
    case unsupportedVersion
    /// IPv4 IHL below 5 or past the end of the packet.
    case badIPv4HeaderLength
    /// IPv4 total length shorter than the header or longer than the bytes received.
    case badIPv4TotalLength
    /// An IPv4 option whose length is below 2 or runs past the header.
    case badIPv4Options
    /// IPv6 payload length runs past the bytes received, or is zero (jumbograms are not supported).
    case badIPv6PayloadLength
    /// An IPv6 extension header runs past the end of the packet.
    case extensionHeaderTruncated
    /// More IPv6 extension headers than any legitimate packet carries.
    case tooManyExtensionHeaders
    /// A hop-by-hop options header anywhere but first (RFC 8200 section 4.1).
    case misplacedHopByHop
    /// The transport header (or the part holding its checksum) is cut short.
    case transportTruncated
    /// TCP data offset below 5 words or past the end of the segment.
    case badTCPHeaderLength
    /// An ICMP or ICMPv6 error whose quoted packet is too short or malformed to translate.
    case badICMPQuote
    /// A rewrite of one family applied to a packet of the other.
    case addressFamilyMismatch
    /// A partial-checksum location (virtio `csum_start` + `csum_offset`) outside the packet.
    case badPartialChecksumOffset

    /// A short, stable name for logs and metrics (`snake_case`).
    public var description: String {
        switch self {
        case .truncated: "truncated"
        case .unsupportedVersion: "unsupported_version"
        case .badIPv4HeaderLength: "bad_ipv4_header_length"
        case .badIPv4TotalLength: "bad_ipv4_total_length"
        case .badIPv4Options: "bad_ipv4_options"
        case .badIPv6PayloadLength: "bad_ipv6_payload_length"
        case .extensionHeaderTruncated: "extension_header_truncated"
        case .tooManyExtensionHeaders: "too_many_extension_headers"
        case .misplacedHopByHop: "misplaced_hop_by_hop"
        case .transportTruncated: "transport_truncated"
        case .badTCPHeaderLength: "bad_tcp_header_length"
        case .badICMPQuote: "bad_icmp_quote"
        case .addressFamilyMismatch: "address_family_mismatch"
        case .badPartialChecksumOffset: "bad_partial_checksum_offset"
        }
    }
}
