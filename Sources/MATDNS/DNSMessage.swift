import MATWire

/// The fixed 12-octet header, minus the section counts (those follow from the sections,
/// so they cannot disagree with them).
public struct DNSHeader: Hashable, Sendable {
    /// Matches a reply to its request.
    public var id: UInt16
    /// QR: set in responses.
    public var isResponse: Bool
    /// The kind of request.
    public var opcode: DNSOpcode
    /// AA: the answer comes from an authority for the zone.
    public var isAuthoritative: Bool
    /// TC: the reply did not fit; retry over TCP.
    public var isTruncated: Bool
    /// RD: recursion desired.
    public var recursionDesired: Bool
    /// RA: recursion available.
    public var recursionAvailable: Bool
    /// AD: authentic data (DNSSEC).
    public var authenticData: Bool
    /// CD: checking disabled (DNSSEC).
    public var checkingDisabled: Bool
    /// The low four bits of the response code; EDNS carries the upper eight.
    public var responseCode: DNSResponseCode

    /// Creates a header; everything off unless stated.
    public init(id: UInt16 = 0, isResponse: Bool = false, opcode: DNSOpcode = .query,
                isAuthoritative: Bool = false, isTruncated: Bool = false,
                recursionDesired: Bool = false, recursionAvailable: Bool = false,
                authenticData: Bool = false, checkingDisabled: Bool = false,
                responseCode: DNSResponseCode = .noError) {
        self.id = id
        self.isResponse = isResponse
        self.opcode = opcode
        self.isAuthoritative = isAuthoritative
        self.isTruncated = isTruncated
        self.recursionDesired = recursionDesired
        self.recursionAvailable = recursionAvailable
        self.authenticData = authenticData
        self.checkingDisabled = checkingDisabled
        self.responseCode = responseCode
    }

    /// Decodes the second 16-bit word of the header. The Z bit is dropped: it must be zero.
    public init(id: UInt16, flags: UInt16) {
        self.init(id: id,
                  isResponse: flags & 0x8000 != 0,
                  opcode: DNSOpcode(UInt8(truncatingIfNeeded: flags >> 11)),
                  isAuthoritative: flags & 0x0400 != 0,
                  isTruncated: flags & 0x0200 != 0,
                  recursionDesired: flags & 0x0100 != 0,
                  recursionAvailable: flags & 0x0080 != 0,
                  authenticData: flags & 0x0020 != 0,
                  checkingDisabled: flags & 0x0010 != 0,
                  responseCode: DNSResponseCode(flags & 0x000F))
    }

    /// The second 16-bit word of the header.
    public var flags: UInt16 {
        var f = UInt16(opcode.rawValue & 0x0F) << 11 | (responseCode.rawValue & 0x000F)
        if isResponse { f |= 0x8000 }
        if isAuthoritative { f |= 0x0400 }
        if isTruncated { f |= 0x0200 }
        if recursionDesired { f |= 0x0100 }
        if recursionAvailable { f |= 0x0080 }
        if authenticData { f |= 0x0020 }
        if checkingDisabled { f |= 0x0010 }
        return f
    }
}

/// A DNS message. For UPDATE (RFC 2136) the four sections are read as zone,
/// prerequisite, update and additional; the aliases below name them so.
public struct DNSMessage: Hashable, Sendable {
    /// Header fields.
    public var header: DNSHeader
    /// Question section (UPDATE: zone section).
    public var questions: [DNSQuestion]
    /// Answer section (UPDATE: prerequisites).
    public var answers: [DNSResourceRecord]
    /// Authority section (UPDATE: updates).
    public var authorities: [DNSResourceRecord]
    /// Additional section, where OPT and TSIG live.
    public var additionals: [DNSResourceRecord]

    /// Creates a message.
    public init(header: DNSHeader = DNSHeader(), questions: [DNSQuestion] = [],
                answers: [DNSResourceRecord] = [], authorities: [DNSResourceRecord] = [],
                additionals: [DNSResourceRecord] = []) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
    }

    /// UPDATE name of the answer section.
    public var prerequisites: [DNSResourceRecord] {
        get { answers }
        set { answers = newValue }
    }

    /// UPDATE name of the authority section.
    public var updates: [DNSResourceRecord] {
        get { authorities }
        set { authorities = newValue }
    }

    /// The first OPT record's parameters. Setting replaces all OPT records (nil removes
    /// them), keeping a TSIG record last where RFC 8945 needs it.
    public var edns: EDNS? {
        get { additionals.lazy.compactMap(EDNS.init(record:)).first }
        set {
            additionals.removeAll { $0.type == .opt }
            guard let newValue else { return }
            let at = additionals.last?.type == .tsig ? additionals.count - 1 : additionals.count
            additionals.insert(newValue.record, at: at)
        }
    }

    /// The full 12-bit response code: the header's four bits plus EDNS's upper eight.
    public var extendedResponseCode: DNSResponseCode {
        let upper = UInt16(edns?.extendedRCode ?? 0)
        return DNSResponseCode(upper << 4 | header.responseCode.rawValue & 0xF)
    }

    /// The key name and data of a TSIG record in last position, if there is one.
    public var tsig: (keyName: DNSName, data: TSIGData)? {
        guard let last = additionals.last, case .tsig(let data) = last.data else { return nil }
        return (last.name, data)
    }

    /// The skeleton of a reply: same ID, opcode, RD and question (zone) section, QR set,
    /// other sections empty. Echoing the question is what lets clients match the reply,
    /// and RFC 2136 §3.8 has UPDATE replies echo the zone section the same way.
    public func response(code: DNSResponseCode = .noError, authoritative: Bool = true) -> DNSMessage {
        let replyHeader = DNSHeader(id: header.id, isResponse: true, opcode: header.opcode,
                                    isAuthoritative: authoritative, recursionDesired: header.recursionDesired,
                                    responseCode: DNSResponseCode(code.rawValue & 0xF))
        var reply = DNSMessage(header: replyHeader, questions: questions)
        if code.rawValue > 0xF || edns != nil {
            // Codes above 15 need EDNS to carry their upper bits; otherwise answer EDNS
            // with EDNS, as RFC 6891 §7 asks.
            reply.edns = EDNS(extendedRCode: UInt8(truncatingIfNeeded: code.rawValue >> 4))
        }
        return reply
    }

    /// Parses a complete message (without the TCP length prefix).
    ///
    /// Cost stays proportional to the input: counts are checked against the bytes that
    /// could hold them before anything is reserved, and records are only allocated as
    /// they actually parse.
    public init(bytes: [UInt8]) throws(DNSParseError) {
        self = try bytes.withUnsafeBufferPointer { (buffer) throws(DNSParseError) -> DNSMessage in
            try DNSMessage.parse(buffer)
        }
    }

    static func parse(_ buffer: UnsafeBufferPointer<UInt8>) throws(DNSParseError) -> DNSMessage {
        var reader = WireReader(buffer)
        let id = try reader.u16()
        let flags = try reader.u16()
        let qd = try reader.u16(), an = try reader.u16(), ns = try reader.u16(), ar = try reader.u16()
        try checkCounts(qd: qd, an: an, ns: ns, ar: ar, remaining: reader.remaining)
        var message = DNSMessage(header: DNSHeader(id: id, flags: flags))
        message.questions.reserveCapacity(Int(qd))
        for _ in 0..<qd { message.questions.append(try reader.question()) }
        message.answers = try records(&reader, count: an)
        message.authorities = try records(&reader, count: ns)
        message.additionals = try records(&reader, count: ar)
        guard reader.position == buffer.count else { throw .trailingData(offset: reader.position) }
        return message
    }

    private static func records(_ reader: inout WireReader, count: UInt16) throws(DNSParseError) -> [DNSResourceRecord] {
        guard count > 0 else { return [] }
        var result: [DNSResourceRecord] = []
        result.reserveCapacity(Int(count))
        for _ in 0..<count { result.append(try reader.record()) }
        return result
    }

    /// Smallest question: root name (1) + type + class; smallest record: root name (1) +
    /// type, class, TTL, RDLENGTH (10).
    static func checkCounts(qd: UInt16, an: UInt16, ns: UInt16, ar: UInt16, remaining: Int) throws(DNSParseError) {
        let minimum = Int(qd) * 5 + (Int(an) + Int(ns) + Int(ar)) * 11
        guard minimum <= remaining else { throw .countsExceedData }
    }

    /// Encodes the message, compressing names unless told not to.
    public func encode(compress: Bool = true) throws(DNSEncodeError) -> [UInt8] {
        guard questions.count <= 0xFFFF, answers.count <= 0xFFFF,
              authorities.count <= 0xFFFF, additionals.count <= 0xFFFF else { throw .tooManyRecords }
        var writer = WireWriter(compress: compress)
        writer.u16(header.id)
        writer.u16(header.flags)
        writer.u16(UInt16(questions.count))
        writer.u16(UInt16(answers.count))
        writer.u16(UInt16(authorities.count))
        writer.u16(UInt16(additionals.count))
        for q in questions { writer.question(q) }
        for section in [answers, authorities, additionals] {
            for rr in section { try writer.record(rr) }
        }
        guard writer.bytes.count <= 0xFFFF else { throw .messageTooLong }
        return writer.bytes
    }
}

/// Where things are in an encoded message, found without allocating anything.
struct MessageLayout {
    var id: UInt16
    var flags: UInt16
    var arcount: UInt16
    /// End of the question section.
    var questionEnd: Int
    /// Start of the last additional record if it is a TSIG record.
    var tsigStart: Int?
    /// A TSIG record somewhere other than last in the additional section.
    var misplacedTSIG: Bool

    /// Walks every record's framing (names skipped, RDATA jumped over) so that a TSIG
    /// check can authenticate a message before anything in it is allocated.
    static func scan(_ buffer: UnsafeBufferPointer<UInt8>) throws(DNSParseError) -> MessageLayout {
        var reader = WireReader(buffer)
        let id = try reader.u16()
        let flags = try reader.u16()
        let qd = try reader.u16(), an = try reader.u16(), ns = try reader.u16(), ar = try reader.u16()
        try DNSMessage.checkCounts(qd: qd, an: an, ns: ns, ar: ar, remaining: reader.remaining)
        for _ in 0..<qd {
            try reader.skipName()
            try reader.skip(4)
        }
        var layout = MessageLayout(id: id, flags: flags, arcount: ar, questionEnd: reader.position,
                                   tsigStart: nil, misplacedTSIG: false)
        let total = Int(an) + Int(ns) + Int(ar)
        for index in 0..<total {
            let start = reader.position
            try reader.skipName()
            let type = DNSType(try reader.u16())
            try reader.skip(6)
            try reader.skip(Int(try reader.u16()))
            if type == .tsig {
                if index == total - 1 && ar > 0 {
                    layout.tsigStart = start
                } else {
                    layout.misplacedTSIG = true
                }
            }
        }
        guard reader.position == buffer.count else { throw .trailingData(offset: reader.position) }
        return layout
    }
}
