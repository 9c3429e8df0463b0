/// Why a byte sequence could not be read as a DNS message.
///
/// Every parse failure is one of these, so a server can answer FORMERR (or drop the packet)
/// without ever trapping on hostile input. Offsets are from the start of the message, to
/// make captures easy to diagnose.
public enum DNSParseError: Error, Hashable, Sendable {
    /// The input ended before a field that the format requires.
    case truncated(offset: Int)
    /// A label length byte in 64...191: longer than the 63-octet limit, or one of the
    /// extended label types (RFC 6891 §5) that nobody deploys and this codec rejects.
    case labelTooLong(offset: Int)
    /// A name whose uncompressed form exceeds 255 octets.
    case nameTooLong(offset: Int)
    /// A compression pointer that does not point strictly backwards, which is what
    /// rules out loops without any bookkeeping beyond the last jump target.
    case badPointer(offset: Int)
    /// More compression jumps in one name than a legal name can need.
    case tooManyPointers(offset: Int)
    /// The header's counts promise more records than the remaining bytes could hold,
    /// so the message is rejected before anything is allocated for them.
    case countsExceedData
    /// RDATA that does not match its RDLENGTH or the layout of its type.
    case badRData(type: DNSType, offset: Int)
    /// Bytes left over after the last record the header announced.
    case trailingData(offset: Int)
}

/// Why a name given as presentation text or labels was refused.
public enum DNSNameError: Error, Hashable, Sendable {
    /// Two dots in a row, or a leading dot before other labels.
    case emptyLabel
    /// A label longer than 63 octets.
    case labelTooLong
    /// A name longer than 255 octets in wire form.
    case nameTooLong
    /// A backslash escape that is incomplete or out of range (`\256`).
    case badEscape
    /// Text that is not a valid address where one was expected.
    case badAddress
}

/// Why a message could not be encoded.
public enum DNSEncodeError: Error, Hashable, Sendable {
    /// More than 65535 entries in one section.
    case tooManyRecords
    /// A TXT character-string longer than 255 octets.
    case characterStringTooLong
    /// RDATA longer than 65535 octets.
    case rdataTooLong
    /// The encoded message would exceed 65535 octets.
    case messageTooLong
    /// Bytes handed to the TSIG signer are not a DNS message (shorter than a header,
    /// or the additional count is already at its maximum).
    case notAMessage
    /// A requested MAC length outside what RFC 8945 §5.2.2.1 allows for the algorithm.
    case badMACLength
    /// A 48-bit time field was given a value that does not fit.
    case timeOutOfRange
}
