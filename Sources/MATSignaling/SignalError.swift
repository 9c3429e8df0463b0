/// Why bytes were refused as a signaling message, or a key as a key.
///
/// Every refusal is one of these, so the daemon drops a hostile datagram without ever
/// trapping on it. The framing errors (``truncated`` to ``familyMismatch``) come from
/// `SignalCodec.open`; body errors (``badBody`` to ``unknownStatus(_:)``, and
/// ``familyMismatch`` for a MoA) only ever come after the signature has verified, from
/// ``UnverifiedSignal/verify(with:)``, which is also where ``badSignature`` comes from.
public enum SignalError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the header, or than the header's body length plus the signature.
    case truncated
    /// More than ``SignalCodec/maximumLength`` bytes.
    case tooLong
    /// The first four bytes are not `MATs`.
    case badMagic
    /// A protocol version this implementation does not speak.
    case unsupportedVersion(UInt8)
    /// A type byte outside 1...4.
    case unknownType(UInt8)
    /// Non-zero flags: no flags are defined in version 1.
    case badFlags
    /// A body length that does not fit the type, or bytes after the signature other than
    /// a 16-byte cookie.
    case badLength
    /// An address whose family byte is not 4 or 6, or an IPv4 address whose 12 padding
    /// bytes are not zero.
    case badAddress
    /// Sender and receiver HoAs of different families, or a MoA not of the HoA's family.
    case familyMismatch
    /// A binding update whose address count does not match its body length.
    case badBody
    /// A binding update with no MoA.
    case noAddresses
    /// A binding update with more than ``SignalCodec/maximumMoAs`` MoAs.
    case tooManyAddresses
    /// A binding acknowledgement status other than 0 and 1.
    case unknownStatus(UInt8)
    /// The signature does not verify with the key given.
    case badSignature
    /// Key bytes that are not a 32-byte Ed25519 key.
    case badKey

    public var description: String {
        switch self {
        case .truncated: "message truncated"
        case .tooLong: "message longer than \(SignalCodec.maximumLength) bytes"
        case .badMagic: "not a MAT signaling message (bad magic)"
        case .unsupportedVersion(let version): "unsupported signaling version \(version)"
        case .unknownType(let type): "unknown signaling message type \(type)"
        case .badFlags: "non-zero flags"
        case .badLength: "body length does not match the message type or the datagram"
        case .badAddress: "malformed address (family byte or IPv4 padding)"
        case .familyMismatch: "addresses of different families"
        case .badBody: "binding update address count does not match its length"
        case .noAddresses: "binding update without a MoA"
        case .tooManyAddresses: "binding update with more than \(SignalCodec.maximumMoAs) MoAs"
        case .unknownStatus(let status): "unknown acknowledgement status \(status)"
        case .badSignature: "signature does not verify"
        case .badKey: "not a 32-byte Ed25519 key"
        }
    }
}
