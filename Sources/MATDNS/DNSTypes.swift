/// A resource record TYPE (or QTYPE).
///
/// A struct rather than an enum so that types this codec does not know survive a round
/// trip unchanged (RFC 3597).
public struct DNSType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 16-bit value on the wire.
    public var rawValue: UInt16
    /// Wraps a wire value.
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Wraps a wire value.
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    /// IPv4 address.
    public static let a = DNSType(1)
    /// Authoritative name server.
    public static let ns = DNSType(2)
    /// Canonical name (alias).
    public static let cname = DNSType(5)
    /// Start of authority.
    public static let soa = DNSType(6)
    /// Domain name pointer.
    public static let ptr = DNSType(12)
    /// Mail exchange.
    public static let mx = DNSType(15)
    /// Text strings.
    public static let txt = DNSType(16)
    /// IPv6 address.
    public static let aaaa = DNSType(28)
    /// Service locator.
    public static let srv = DNSType(33)
    /// EDNS(0) pseudo-record.
    public static let opt = DNSType(41)
    /// Transaction signature (RFC 8945).
    public static let tsig = DNSType(250)
    /// Incremental zone transfer.
    public static let ixfr = DNSType(251)
    /// Full zone transfer.
    public static let axfr = DNSType(252)
    /// Mailbox-related records (obsolete QTYPE).
    public static let mailb = DNSType(253)
    /// Mail agent records (obsolete QTYPE).
    public static let maila = DNSType(254)
    /// All records (QTYPE `*`).
    public static let any = DNSType(255)

    /// Whether this is a QTYPE or meta-type (RFC 6895 §3.1: 128-255, and OPT), which may
    /// never be stored in a zone, so an UPDATE must not add one.
    public var isMetaType: Bool { (128...255).contains(rawValue) || self == .opt }

    /// The mnemonic, or `TYPEnnn` (RFC 3597 §5) for types without one here.
    public var description: String {
        switch self {
        case .a: "A"
        case .ns: "NS"
        case .cname: "CNAME"
        case .soa: "SOA"
        case .ptr: "PTR"
        case .mx: "MX"
        case .txt: "TXT"
        case .aaaa: "AAAA"
        case .srv: "SRV"
        case .opt: "OPT"
        case .tsig: "TSIG"
        case .ixfr: "IXFR"
        case .axfr: "AXFR"
        case .mailb: "MAILB"
        case .maila: "MAILA"
        case .any: "ANY"
        default: "TYPE\(rawValue)"
        }
    }
}

/// A resource record CLASS (or QCLASS).
public struct DNSClass: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 16-bit value on the wire.
    public var rawValue: UInt16
    /// Wraps a wire value.
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Wraps a wire value.
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    /// The Internet.
    public static let `in` = DNSClass(1)
    /// Chaos.
    public static let ch = DNSClass(3)
    /// Hesiod.
    public static let hs = DNSClass(4)
    /// NONE (RFC 2136): in UPDATE, "delete this exact record" or "must not exist".
    public static let none = DNSClass(254)
    /// ANY: in UPDATE, "delete the RRset" or "must exist"; also the class of TSIG records.
    public static let any = DNSClass(255)

    /// The mnemonic, or `CLASSnnn` (RFC 3597 §5).
    public var description: String {
        switch self {
        case .in: "IN"
        case .ch: "CH"
        case .hs: "HS"
        case .none: "NONE"
        case .any: "ANY"
        default: "CLASS\(rawValue)"
        }
    }
}

/// The 4-bit header OPCODE.
public struct DNSOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The value, 0...15.
    public var rawValue: UInt8
    /// Wraps a value; only the low four bits reach the wire.
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x0F }
    /// Wraps a value; only the low four bits reach the wire.
    public init(_ rawValue: UInt8) { self.init(rawValue: rawValue) }

    /// Standard query.
    public static let query = DNSOpcode(0)
    /// Server status request.
    public static let status = DNSOpcode(2)
    /// Zone change notification (RFC 1996).
    public static let notify = DNSOpcode(4)
    /// Dynamic update (RFC 2136).
    public static let update = DNSOpcode(5)

    /// The mnemonic, or the number.
    public var description: String {
        switch self {
        case .query: "QUERY"
        case .status: "STATUS"
        case .notify: "NOTIFY"
        case .update: "UPDATE"
        default: "OPCODE\(rawValue)"
        }
    }
}

/// A response code: the 4-bit header RCODE, the 12-bit EDNS extended RCODE, or the
/// 16-bit TSIG error field, which share one IANA registry.
public struct DNSResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The value.
    public var rawValue: UInt16
    /// Wraps a value.
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Wraps a value.
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    /// No error.
    public static let noError = DNSResponseCode(0)
    /// The request could not be interpreted.
    public static let formErr = DNSResponseCode(1)
    /// The server failed to process the request.
    public static let servFail = DNSResponseCode(2)
    /// The name does not exist (in UPDATE: a "name in use" prerequisite failed).
    public static let nxDomain = DNSResponseCode(3)
    /// The operation is not implemented.
    public static let notImp = DNSResponseCode(4)
    /// The server refuses for policy reasons.
    public static let refused = DNSResponseCode(5)
    /// A name exists that should not (UPDATE).
    public static let yxDomain = DNSResponseCode(6)
    /// An RRset exists that should not (UPDATE).
    public static let yxRRset = DNSResponseCode(7)
    /// An RRset that should exist does not (UPDATE).
    public static let nxRRset = DNSResponseCode(8)
    /// Not authoritative for the zone, or (with TSIG) not authorized.
    public static let notAuth = DNSResponseCode(9)
    /// A name is outside the zone of the UPDATE.
    public static let notZone = DNSResponseCode(10)
    /// Unsupported EDNS version (shares 16 with BADSIG; context tells which).
    public static let badVers = DNSResponseCode(16)
    /// TSIG signature failure.
    public static let badSig = DNSResponseCode(16)
    /// TSIG key not recognized.
    public static let badKey = DNSResponseCode(17)
    /// TSIG signature outside the time window.
    public static let badTime = DNSResponseCode(18)
    /// TSIG MAC truncated below local policy.
    public static let badTrunc = DNSResponseCode(22)

    /// The mnemonic, or the number.
    public var description: String {
        switch rawValue {
        case 0: "NOERROR"
        case 1: "FORMERR"
        case 2: "SERVFAIL"
        case 3: "NXDOMAIN"
        case 4: "NOTIMP"
        case 5: "REFUSED"
        case 6: "YXDOMAIN"
        case 7: "YXRRSET"
        case 8: "NXRRSET"
        case 9: "NOTAUTH"
        case 10: "NOTZONE"
        case 16: "BADSIG"
        case 17: "BADKEY"
        case 18: "BADTIME"
        case 22: "BADTRUNC"
        default: "RCODE\(rawValue)"
        }
    }
}
