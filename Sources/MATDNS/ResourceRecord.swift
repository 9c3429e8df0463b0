/// One entry of the question (or, in UPDATE, zone) section.
public struct DNSQuestion: Hashable, Sendable {
    /// The name asked about (in UPDATE: the zone).
    public var name: DNSName
    /// The QTYPE (in UPDATE: SOA).
    public var type: DNSType
    /// The QCLASS (in UPDATE: the zone's class).
    public var questionClass: DNSClass

    /// Creates a question; class IN unless stated.
    public init(name: DNSName, type: DNSType, class questionClass: DNSClass = .in) {
        self.name = name
        self.type = type
        self.questionClass = questionClass
    }
}

/// A resource record: owner, class, TTL and typed data. The TYPE comes from the data, so
/// a record can never claim one type and carry another's layout.
public struct DNSResourceRecord: Hashable, Sendable {
    /// The owner name.
    public var name: DNSName
    /// The CLASS; in UPDATE also ANY/NONE to express deletions and prerequisites.
    public var recordClass: DNSClass
    /// Time to live in seconds (must be 0 for UPDATE deletions and prerequisites).
    public var ttl: UInt32
    /// The typed RDATA.
    public var data: DNSRecordData

    /// The record's TYPE, taken from its data.
    public var type: DNSType { data.type }

    /// Creates a record; class IN unless stated.
    public init(name: DNSName, class recordClass: DNSClass = .in, ttl: UInt32, data: DNSRecordData) {
        self.name = name
        self.recordClass = recordClass
        self.ttl = ttl
        self.data = data
    }
}

/// The RDATA of a record, typed for the records this project uses and raw for the rest.
public enum DNSRecordData: Hashable, Sendable {
    /// An IPv4 address, first wire octet most significant (same layout as MATPacket's
    /// `IPv4Address.value`).
    case a(UInt32)
    /// An IPv6 address as two host-order halves (same layout as MATPacket's `IPv6Address`).
    case aaaa(high: UInt64, low: UInt64)
    /// A name server.
    case ns(DNSName)
    /// An alias target.
    case cname(DNSName)
    /// A pointer target.
    case ptr(DNSName)
    /// A mail exchange: preference and host.
    case mx(preference: UInt16, exchange: DNSName)
    /// One or more character-strings of at most 255 octets each.
    case txt([[UInt8]])
    /// Start of authority.
    case soa(DNSSOA)
    /// EDNS(0) options; the rest of EDNS lives in the record's class and TTL, see `EDNS`.
    case opt([EDNSOption])
    /// A transaction signature; see `TSIG`.
    case tsig(TSIGData)
    /// Zero-length RDATA of the given type: what UPDATE uses for "delete RRset" and for
    /// existence prerequisites (RFC 2136 §2.4-2.5). Any zero-length RDATA parses as this
    /// (OPT excepted), because for most types it is not a valid value anyway.
    case empty(DNSType)
    /// RDATA of a type (or class) this codec does not interpret, kept verbatim (RFC 3597).
    case unknown(DNSType, [UInt8])

    /// The TYPE this data belongs to.
    public var type: DNSType {
        switch self {
        case .a: .a
        case .aaaa: .aaaa
        case .ns: .ns
        case .cname: .cname
        case .ptr: .ptr
        case .mx: .mx
        case .txt: .txt
        case .soa: .soa
        case .opt: .opt
        case .tsig: .tsig
        case .empty(let type): type
        case .unknown(let type, _): type
        }
    }

    /// TXT data from text strings (encoded as UTF-8).
    public static func txt(strings: [String]) -> DNSRecordData {
        .txt(strings.map { Array($0.utf8) })
    }
}

/// SOA RDATA (RFC 1035 §3.3.13).
public struct DNSSOA: Hashable, Sendable {
    /// The primary server: where UPDATEs should go (RFC 2136 §4).
    public var primary: DNSName
    /// The responsible mailbox, encoded as a name.
    public var mailbox: DNSName
    /// Zone version; bumped by every successful UPDATE.
    public var serial: UInt32
    /// Secondary refresh interval.
    public var refresh: UInt32
    /// Secondary retry interval.
    public var retry: UInt32
    /// Secondary expiry.
    public var expire: UInt32
    /// Negative-caching TTL (RFC 2308): keep it low for a mapping zone.
    public var minimum: UInt32

    /// Creates SOA data.
    public init(primary: DNSName, mailbox: DNSName, serial: UInt32, refresh: UInt32,
                retry: UInt32, expire: UInt32, minimum: UInt32) {
        self.primary = primary
        self.mailbox = mailbox
        self.serial = serial
        self.refresh = refresh
        self.retry = retry
        self.expire = expire
        self.minimum = minimum
    }
}

/// One EDNS(0) option, kept raw: this project defines none of its own.
public struct EDNSOption: Hashable, Sendable {
    /// OPTION-CODE.
    public var code: UInt16
    /// OPTION-DATA.
    public var data: [UInt8]

    /// Creates an option.
    public init(code: UInt16, data: [UInt8]) {
        self.code = code
        self.data = data
    }
}

/// The EDNS(0) parameters (RFC 6891), which the OPT pseudo-record smuggles in its
/// CLASS (UDP payload size) and TTL (extended RCODE, version, DO flag) fields.
public struct EDNS: Hashable, Sendable {
    /// Largest UDP payload the sender can receive; 1232 avoids fragmentation on any path
    /// (DNS Flag Day 2020).
    public var udpPayloadSize: UInt16
    /// Upper eight bits of the 12-bit response code.
    public var extendedRCode: UInt8
    /// EDNS version; 0 is the only one defined.
    public var version: UInt8
    /// DNSSEC OK.
    public var dnssecOK: Bool
    /// Options, in order.
    public var options: [EDNSOption]

    /// Creates EDNS parameters.
    public init(udpPayloadSize: UInt16 = 1232, extendedRCode: UInt8 = 0, version: UInt8 = 0,
                dnssecOK: Bool = false, options: [EDNSOption] = []) {
        self.udpPayloadSize = udpPayloadSize
        self.extendedRCode = extendedRCode
        self.version = version
        self.dnssecOK = dnssecOK
        self.options = options
    }

    /// Reads the parameters from an OPT record; nil for any other record.
    public init?(record: DNSResourceRecord) {
        guard case .opt(let options) = record.data else { return nil }
        udpPayloadSize = record.recordClass.rawValue
        extendedRCode = UInt8(truncatingIfNeeded: record.ttl >> 24)
        version = UInt8(truncatingIfNeeded: record.ttl >> 16)
        dnssecOK = record.ttl & 0x8000 != 0
        self.options = options
    }

    /// The OPT record (owner root) carrying these parameters.
    public var record: DNSResourceRecord {
        let ttl = UInt32(extendedRCode) << 24 | UInt32(version) << 16 | (dnssecOK ? 0x8000 : 0)
        return DNSResourceRecord(name: .root, class: DNSClass(udpPayloadSize), ttl: ttl, data: .opt(options))
    }
}

/// TSIG RDATA (RFC 8945 §4.2). The key name is the record's owner, not part of this.
public struct TSIGData: Hashable, Sendable {
    /// The MAC algorithm, e.g. `hmac-sha256.`.
    public var algorithm: DNSName
    /// Seconds since the epoch when signed; 48 bits on the wire.
    public var timeSigned: UInt64
    /// Permitted clock skew in seconds either side of `timeSigned`.
    public var fudge: UInt16
    /// The MAC, possibly truncated (RFC 8945 §5.2.2.1), empty in unsigned error replies.
    public var mac: [UInt8]
    /// The message ID when it was signed, so forwarders may renumber messages.
    public var originalID: UInt16
    /// The TSIG error (BADSIG, BADKEY, BADTIME, BADTRUNC) or NOERROR.
    public var error: DNSResponseCode
    /// Extra data; with BADTIME, the server's 48-bit clock.
    public var otherData: [UInt8]

    /// Creates TSIG data.
    public init(algorithm: DNSName, timeSigned: UInt64, fudge: UInt16, mac: [UInt8],
                originalID: UInt16, error: DNSResponseCode = .noError, otherData: [UInt8] = []) {
        self.algorithm = algorithm
        self.timeSigned = timeSigned
        self.fudge = fudge
        self.mac = mac
        self.originalID = originalID
        self.error = error
        self.otherData = otherData
    }
}
