import MATWire

/// What a verified (or rejected) TSIG record said, kept for answering: a server needs the
/// key name and the request MAC to sign its response, and the rest to build error replies.
public struct TSIGContext: Hashable, Sendable {
    /// The TSIG owner name: which key signed.
    public var keyName: DNSName
    /// The TSIG RDATA as received.
    public var data: TSIGData
    /// The message's header ID (not the TSIG original ID), which the reply must echo.
    public var messageID: UInt16

    /// Creates a context.
    public init(keyName: DNSName, data: TSIGData, messageID: UInt16) {
        self.keyName = keyName
        self.data = data
        self.messageID = messageID
    }
}

/// The result of checking a message's TSIG, one case per answer a server must give
/// (RFC 8945 §5.2).
public enum TSIGOutcome: Hashable, Sendable {
    /// No TSIG record. Whether that is acceptable is the caller's policy.
    case unsigned
    /// MAC, time and length all check out.
    case verified(TSIGContext)
    /// Malformed message or TSIG (misplaced, duplicated, bad MAC size): answer FORMERR.
    case formErr
    /// Unknown key, or the key's algorithm differs: NOTAUTH + BADKEY, unsigned.
    case badKey(TSIGContext)
    /// The MAC does not match: NOTAUTH + BADSIG, unsigned.
    case badSig(TSIGContext)
    /// Authentic but outside Time Signed ± Fudge: NOTAUTH + BADTIME, signed.
    case badTime(TSIGContext)
    /// Authentic but truncated below local policy: NOTAUTH + BADTRUNC, signed.
    case badTrunc(TSIGContext)
    /// (Responses only) the server's unsigned BADKEY/BADSIG reply: it could not
    /// authenticate us, and nothing here authenticates it.
    case unsignedError(TSIGContext)

    /// The header RCODE for a reply to a request with this outcome.
    public var responseCode: DNSResponseCode {
        switch self {
        case .unsigned, .verified, .unsignedError: .noError
        case .formErr: .formErr
        case .badKey, .badSig, .badTime, .badTrunc: .notAuth
        }
    }

    /// The TSIG error field for the reply, if the reply carries one.
    public var tsigError: DNSResponseCode? {
        switch self {
        case .badKey: .badKey
        case .badSig: .badSig
        case .badTime: .badTime
        case .badTrunc: .badTrunc
        default: nil
        }
    }

    /// The TSIG details, when a TSIG record could be read.
    public var context: TSIGContext? {
        switch self {
        case .verified(let c), .badKey(let c), .badSig(let c), .badTime(let c), .badTrunc(let c), .unsignedError(let c): c
        case .unsigned, .formErr: nil
        }
    }
}

/// A signed message and its MAC. A client keeps the MAC: the response's MAC covers it.
public struct TSIGSignedMessage: Hashable, Sendable {
    /// The message with the TSIG record appended.
    public var bytes: [UInt8]
    /// The MAC placed in the TSIG record (truncated if asked).
    public var mac: [UInt8]
}

/// TSIG signing and verification (RFC 8945) over encoded messages.
///
/// It works on bytes, not `DNSMessage` values, because the MAC covers the exact octets
/// sent (compression included), and so that a server can authenticate a request before
/// parsing anything in it. The clock is a parameter, so tests can replay captures.
public enum TSIG {
    /// The fudge BIND and nsupdate use: five minutes either way.
    public static let defaultFudge: UInt16 = 300

    /// Signs a request: appends a TSIG record and bumps ARCOUNT. `macLength` truncates
    /// the MAC (RFC 8945 §5.2.2.1); nil sends it whole.
    public static func sign(_ message: [UInt8], key: TSIGKey, now: UInt64, fudge: UInt16 = defaultFudge,
                            macLength: Int? = nil) throws(DNSEncodeError) -> TSIGSignedMessage {
        try sign(message, key: key, requestMAC: nil, timeSigned: now, fudge: fudge, error: .noError,
                 otherData: [], macLength: macLength)
    }

    /// Signs a response to a verified request: the MAC first covers the request's MAC,
    /// binding the answer to the question.
    public static func signResponse(_ response: [UInt8], key: TSIGKey, request: TSIGContext, now: UInt64,
                                    fudge: UInt16 = defaultFudge, macLength: Int? = nil) throws(DNSEncodeError) -> TSIGSignedMessage {
        try sign(response, key: key, requestMAC: request.data.mac, timeSigned: now, fudge: fudge,
                 error: .noError, otherData: [], macLength: macLength)
    }

    /// Signs a message after the first of a multi-message response such as AXFR over TCP
    /// (RFC 8945 §5.3.1): its MAC covers the previous message's MAC, this message, and only
    /// the TSIG timers (Time Signed, Fudge). The first message is signed with
    /// `signResponse`; each later one chains the MAC returned for the one before.
    public static func signSubsequent(_ message: [UInt8], key: TSIGKey, priorMAC: [UInt8], now: UInt64,
                                      fudge: UInt16 = defaultFudge) throws(DNSEncodeError) -> TSIGSignedMessage {
        try sign(message, key: key, requestMAC: priorMAC, timeSigned: now, fudge: fudge, error: .noError,
                 otherData: [], macLength: nil, timersOnly: true)
    }

    /// Checks a later message of a multi-message response (RFC 8945 §5.3.1), signed with
    /// `key` and chained to `priorMAC`, the MAC of the previous signed message.
    public static func verifySubsequentResponse(_ message: [UInt8], key: TSIGKey, priorMAC: [UInt8], now: UInt64) -> TSIGOutcome {
        verify(message, requestMAC: priorMAC, now: now, minimumMACLength: nil, timersOnly: true) {
            $0 == key.name ? key : nil
        }
    }

    /// Signs `message` with explicit TSIG fields; the public entry points fill them in.
    static func sign(_ message: [UInt8], key: TSIGKey, requestMAC: [UInt8]?, timeSigned: UInt64, fudge: UInt16,
                     error: DNSResponseCode, otherData: [UInt8], macLength: Int?,
                     timersOnly: Bool = false) throws(DNSEncodeError) -> TSIGSignedMessage {
        guard message.count >= 12 else { throw .notAMessage }
        let arcount = BigEndian.u16(message, at: 10)
        guard arcount < 0xFFFF else { throw .notAMessage }
        guard timeSigned <= 0xFFFF_FFFF_FFFF else { throw .timeOutOfRange }
        let length = macLength ?? key.algorithm.digestLength
        guard length <= key.algorithm.digestLength, length >= key.algorithm.minimumMACLength else {
            throw .badMACLength
        }
        let id = BigEndian.u16(message, at: 0)
        var data = TSIGData(algorithm: key.algorithm.name, timeSigned: timeSigned, fudge: fudge, mac: [],
                            originalID: id, error: error, otherData: otherData)
        let full = message.withUnsafeBufferPointer { buffer in
            computeMAC(key: key, requestMAC: requestMAC, message: buffer, originalID: id, arcount: arcount,
                       keyName: key.name, data: data, timersOnly: timersOnly)
        }
        data.mac = Array(full.prefix(length))
        var writer = WireWriter(compress: false, capacity: message.count + 128)
        writer.append(message)
        writer.patchU16(at: 10, arcount + 1)
        try writer.record(DNSResourceRecord(name: key.name, class: .any, ttl: 0, data: .tsig(data)))
        guard writer.bytes.count <= 0xFFFF else { throw .messageTooLong }
        return TSIGSignedMessage(bytes: writer.bytes, mac: data.mac)
    }

    /// Checks a request's TSIG against `keyring` at time `now` (seconds since the epoch).
    ///
    /// Only the record framing and the TSIG record itself are read before the MAC is
    /// checked, so unauthenticated input costs one scan and one HMAC. `minimumMACLength`
    /// is the local truncation policy (nil: the full digest); shorter MACs that RFC 8945
    /// permits and that verify get `.badTrunc`.
    public static func verifyRequest(_ message: [UInt8], keyring: TSIGKeyring, now: UInt64,
                                     minimumMACLength: Int? = nil) -> TSIGOutcome {
        verify(message, requestMAC: nil, now: now, minimumMACLength: minimumMACLength) { keyring.key(named: $0) }
    }

    /// Checks a response's TSIG, which must be made with `key` and chain `requestMAC`
    /// (the MAC of the request it answers). A `.verified` reply may still carry a TSIG
    /// error (BADTIME, BADTRUNC) in `context.data.error`: it is authentic, but says the
    /// server refused the request.
    public static func verifyResponse(_ message: [UInt8], key: TSIGKey, requestMAC: [UInt8], now: UInt64,
                                      minimumMACLength: Int? = nil) -> TSIGOutcome {
        verify(message, requestMAC: requestMAC, now: now, minimumMACLength: minimumMACLength) {
            $0 == key.name ? key : nil
        }
    }

    private static func verify(_ message: [UInt8], requestMAC: [UInt8]?, now: UInt64, minimumMACLength: Int?,
                               timersOnly: Bool = false, lookup: (DNSName) -> TSIGKey?) -> TSIGOutcome {
        message.withUnsafeBufferPointer { buffer in
            guard let layout = try? MessageLayout.scan(buffer) else { return .formErr }
            guard !layout.misplacedTSIG else { return .formErr }
            guard let tsigStart = layout.tsigStart else { return .unsigned }
            var reader = WireReader(buffer, position: tsigStart)
            guard let (keyName, data) = try? readTSIGRecord(&reader) else { return .formErr }
            let context = TSIGContext(keyName: keyName, data: data, messageID: layout.id)

            if requestMAC != nil, data.error != .noError, data.mac.isEmpty {
                return .unsignedError(context)
            }
            // §5.2.1: unknown key or mismatched algorithm.
            guard let key = lookup(keyName), TSIGAlgorithm(name: data.algorithm) == key.algorithm else {
                return .badKey(context)
            }
            // §5.2.2.1: MAC sizes no signer may produce.
            let algorithm = key.algorithm
            guard data.mac.count <= algorithm.digestLength, data.mac.count >= algorithm.minimumMACLength else {
                return .formErr
            }
            // §5.2.2: the MAC, compared in constant time over the length sent.
            let expected = computeMAC(key: key, requestMAC: requestMAC,
                                      message: UnsafeBufferPointer(rebasing: buffer[0..<tsigStart]),
                                      originalID: data.originalID, arcount: layout.arcount - 1,
                                      keyName: keyName, data: data, timersOnly: timersOnly)
            guard constantTimeEqual(expected, data.mac) else { return .badSig(context) }
            // §5.2.3: only after the MAC, so the server's clock is never told to strangers.
            let skew = now >= data.timeSigned ? now - data.timeSigned : data.timeSigned - now
            guard skew <= UInt64(data.fudge) else { return .badTime(context) }
            // §5.2.4: local truncation policy.
            let policy = max(minimumMACLength ?? algorithm.digestLength, algorithm.minimumMACLength)
            guard data.mac.count >= policy else { return .badTrunc(context) }
            return .verified(context)
        }
    }

    /// Builds the reply a server sends when a request fails TSIG checks: FORMERR without
    /// TSIG; BADKEY/BADSIG with an unsigned TSIG (RFC 8945 §5.3.2: signing with a key the
    /// client may not share would prove nothing); BADTIME/BADTRUNC signed, BADTIME with the
    /// server's clock in Other Data and the request's Time Signed, so the client can verify
    /// the reply and learn the skew. Returns nil for outcomes that need no error reply.
    /// The zone/question section is echoed; the other sections are left empty.
    public static func errorResponse(to request: [UInt8], outcome: TSIGOutcome, keyring: TSIGKeyring,
                                     now: UInt64, fudge: UInt16 = defaultFudge) -> [UInt8]? {
        let clock = min(now, 0xFFFF_FFFF_FFFF)
        switch outcome {
        case .unsigned, .verified, .unsignedError:
            return nil
        case .formErr:
            return replySkeleton(request, rcode: .formErr)
        case .badKey(let c), .badSig(let c):
            guard let skeleton = replySkeleton(request, rcode: .notAuth) else { return nil }
            var writer = WireWriter(compress: false, capacity: skeleton.count + 64)
            writer.append(skeleton)
            writer.patchU16(at: 10, 1)
            let data = TSIGData(algorithm: c.data.algorithm, timeSigned: clock, fudge: fudge, mac: [],
                                originalID: c.messageID, error: outcome.tsigError ?? .badSig)
            let tsig = DNSResourceRecord(name: c.keyName, class: .any, ttl: 0, data: .tsig(data))
            guard (try? writer.record(tsig)) != nil else { return nil }
            return writer.bytes
        case .badTime(let c), .badTrunc(let c):
            guard let skeleton = replySkeleton(request, rcode: .notAuth),
                  let key = keyring.key(named: c.keyName) else { return nil }
            let isTime = outcome.tsigError == .badTime
            var other = WireWriter(compress: false, capacity: 6)
            if isTime { other.u48(clock) }
            let signed = try? sign(skeleton, key: key, requestMAC: c.data.mac,
                                   timeSigned: isTime ? c.data.timeSigned : clock, fudge: fudge,
                                   error: outcome.tsigError ?? .badTime, otherData: other.bytes, macLength: nil)
            return signed?.bytes
        }
    }

    /// Header (ID and opcode copied, QR set) plus the request's question section.
    private static func replySkeleton(_ request: [UInt8], rcode: DNSResponseCode) -> [UInt8]? {
        guard request.count >= 12 else { return nil }
        let layout = request.withUnsafeBufferPointer { try? MessageLayout.scan($0) }
        let id = BigEndian.u16(request, at: 0)
        let opcode = DNSOpcode(request[2] >> 3)
        let header = DNSHeader(id: id, isResponse: true, opcode: opcode, responseCode: rcode)
        var writer = WireWriter(compress: false)
        writer.u16(id)
        writer.u16(header.flags)
        if let layout, questionsParse(request, count: Int(BigEndian.u16(request, at: 4)), end: layout.questionEnd) {
            // Copying the question octets keeps any compression pointers in it valid:
            // they can only point into the question section, which sits at the same offsets.
            writer.append(request[4..<6])
            writer.append([0, 0, 0, 0, 0, 0])
            writer.append(request[12..<layout.questionEnd])
        } else {
            writer.append([0, 0, 0, 0, 0, 0, 0, 0])
        }
        return writer.bytes
    }

    /// Whether the `count` questions of `request` parse, names and pointers included, and
    /// end at `end`. The framing scan only skips names, so a question with a pointer
    /// outside the message passes it; echoing that would make the reply unparseable.
    private static func questionsParse(_ request: [UInt8], count: Int, end: Int) -> Bool {
        request.withUnsafeBufferPointer { buffer in
            var reader = WireReader(buffer, position: 12)
            reader.limit = end
            for _ in 0..<count {
                guard (try? reader.name()) != nil, (try? reader.u16()) != nil, (try? reader.u16()) != nil else {
                    return false
                }
            }
            return reader.position == end
        }
    }

    /// Reads a TSIG record: owner, TYPE TSIG, CLASS ANY, TTL 0, RDATA exactly filled.
    private static func readTSIGRecord(_ reader: inout WireReader) throws(DNSParseError) -> (DNSName, TSIGData) {
        let start = reader.position
        let name = try reader.name()
        guard try reader.u16() == DNSType.tsig.rawValue, try reader.u16() == DNSClass.any.rawValue,
              try reader.u32() == 0 else { throw .badRData(type: .tsig, offset: start) }
        let length = Int(try reader.u16())
        try reader.need(length)
        let end = reader.position + length
        reader.limit = end
        let data = try reader.tsigData()
        guard reader.position == end else { throw .badRData(type: .tsig, offset: start) }
        return (name, data)
    }

    /// RFC 8945 §4.3.3: [request MAC] ‖ message with original ID and ARCOUNT less the TSIG
    /// ‖ TSIG variables with names in canonical (lower-case, uncompressed) form. With
    /// `timersOnly` (later messages of a multi-message response, §5.3.1) the variables are
    /// just Time Signed and Fudge, and `requestMAC` is the previous message's MAC.
    static func computeMAC(key: TSIGKey, requestMAC: [UInt8]?, message: UnsafeBufferPointer<UInt8>,
                           originalID: UInt16, arcount: UInt16, keyName: DNSName, data: TSIGData,
                           timersOnly: Bool = false) -> [UInt8] {
        var prefix = WireWriter(compress: false, capacity: 64)
        if let requestMAC {
            prefix.u16(UInt16(truncatingIfNeeded: requestMAC.count))
            prefix.append(requestMAC)
        }
        prefix.u16(originalID)
        prefix.append(message[2..<10])
        prefix.u16(arcount)
        var variables = WireWriter(compress: false, capacity: 128)
        if timersOnly {
            variables.u48(data.timeSigned)
            variables.u16(data.fudge)
            return key.mac { add in
                prefix.bytes.withUnsafeBytes { add($0) }
                add(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: message[12...])))
                variables.bytes.withUnsafeBytes { add($0) }
            }
        }
        variables.append(keyName.lowercased().wireBytes)
        variables.u16(DNSClass.any.rawValue)
        variables.u32(0)
        variables.append(data.algorithm.lowercased().wireBytes)
        variables.u48(data.timeSigned)
        variables.u16(data.fudge)
        variables.u16(data.error.rawValue)
        variables.u16(UInt16(truncatingIfNeeded: data.otherData.count))
        variables.append(data.otherData)
        return key.mac { add in
            prefix.bytes.withUnsafeBytes { add($0) }
            add(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: message[12...])))
            variables.bytes.withUnsafeBytes { add($0) }
        }
    }

    /// Compares the first `received.count` octets of `expected` without an early exit,
    /// so timing does not reveal how much of a forged MAC was right.
    private static func constantTimeEqual(_ expected: [UInt8], _ received: [UInt8]) -> Bool {
        guard received.count <= expected.count, !received.isEmpty else { return false }
        var difference: UInt8 = 0
        for i in 0..<received.count { difference |= expected[i] ^ received[i] }
        return difference == 0
    }
}

extension DNSMessage {
    /// Encodes and TSIG-signs a request in one step.
    public func signed(with key: TSIGKey, now: UInt64, fudge: UInt16 = TSIG.defaultFudge) throws(DNSEncodeError) -> TSIGSignedMessage {
        try TSIG.sign(encode(), key: key, now: now, fudge: fudge)
    }
}
