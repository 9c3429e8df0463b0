import Crypto
import MATPacket
import MATWire

/// Sixteen opaque bytes a node under load hands a source, which that source attaches to
/// its next messages to prove it receives at its address (docs/signaling.md, "Under load").
public struct Cookie: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The sixteen bytes in wire order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    public var description: String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

    /// Compares in time independent of where the first difference is.
    func matches(_ other: Cookie) -> Bool { (high ^ other.high) | (low ^ other.low) == 0 }

    init<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) where C.Index == Int {
        self.init(high: BigEndian.u64(bytes, at: offset), low: BigEndian.u64(bytes, at: offset + 8))
    }
}

/// A cookie reply: what a node under load sends back instead of handling a message from a
/// source that has no valid cookie. Unsigned, 40 bytes, never larger than what it answers:
/// magic, version, type 5, zero flags, the first 16 bytes of the answered message's
/// signature (so only someone who saw that message can forge the reply), the cookie.
public struct CookieReply: Equatable, Sendable {
    /// The first 16 bytes of the signature of the message this answers.
    public let echo: Cookie
    /// The cookie to attach from now on.
    public let cookie: Cookie

    public init(echo: Cookie, cookie: Cookie) {
        self.echo = echo
        self.cookie = cookie
    }
}

extension SignalCodec {
    /// The type byte of a cookie reply.
    public static let cookieReplyType: UInt8 = 5
    /// The exact length of a cookie reply.
    public static let cookieReplyLength = 40
    /// The bytes a cookie adds after a message's signature.
    public static let cookieLength = 16

    /// Whether a datagram claims to be a cookie reply (its type byte); ``openCookieReply(_:)``
    /// then checks the rest.
    public static func isCookieReply(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count > SignalWire.typeOffset && bytes[SignalWire.typeOffset] == cookieReplyType
    }

    /// The first 16 bytes of a datagram's signature (what a cookie reply echoes) and the
    /// cookie after it, if any, read without other checks so that ``SignalAdmission`` can
    /// run before the framing is. Nil unless the datagram is exactly header, body length,
    /// signature (and cookie) long; ``open(_:)-(UnsafeRawBufferPointer)`` checks the rest.
    public static func peekTrailer(_ bytes: UnsafeRawBufferPointer) -> (echo: Cookie, cookie: Cookie?)? {
        guard bytes.count >= headerLength, bytes.count <= maximumLength else { return nil }
        let total = headerLength + Int(BigEndian.u16(bytes, at: SignalWire.bodyLengthOffset)) + signatureLength
        guard bytes.count == total || bytes.count == total + cookieLength else { return nil }
        let echo = Cookie(bytes, at: total - signatureLength)
        return (echo, bytes.count == total ? nil : Cookie(bytes, at: total))
    }

    /// Encodes a cookie reply.
    public static func seal(_ reply: CookieReply) -> [UInt8] {
        var out = SignalWire.magic
        out.append(version)
        out.append(cookieReplyType)
        out.appendBigEndian(UInt16(0))
        out += reply.echo.bytes
        out += reply.cookie.bytes
        return out
    }

    /// Reads a cookie reply: exactly 40 bytes, magic, version, type 5, zero flags.
    public static func openCookieReply(_ bytes: UnsafeRawBufferPointer) throws(SignalError) -> CookieReply {
        guard bytes.count >= cookieReplyLength else { throw .truncated }
        guard bytes.count == cookieReplyLength else { throw .badLength }
        for i in 0..<4 where bytes[i] != SignalWire.magic[i] { throw .badMagic }
        guard bytes[SignalWire.versionOffset] == version else { throw .unsupportedVersion(bytes[SignalWire.versionOffset]) }
        guard bytes[SignalWire.typeOffset] == cookieReplyType else { throw .unknownType(bytes[SignalWire.typeOffset]) }
        guard BigEndian.u16(bytes, at: SignalWire.flagsOffset) == 0 else { throw .badFlags }
        return CookieReply(echo: Cookie(bytes, at: 8), cookie: Cookie(bytes, at: 24))
    }

    /// What a cookie reply to the sealed message `sealed` (as ``seal(_:with:)`` made it,
    /// without a cookie) echoes: the first 16 bytes of its signature.
    public static func echo(of sealed: [UInt8]) -> Cookie {
        precondition(sealed.count >= headerLength + signatureLength, "echo of a message that is not sealed")
        return Cookie(sealed, at: sealed.count - signatureLength)
    }

    /// `sealed` with `cookie` after its signature. The cookie is outside the signature, so
    /// a message is signed once and may be sent with or without one.
    public static func attaching(_ cookie: Cookie, to sealed: [UInt8]) -> [UInt8] {
        sealed + cookie.bytes
    }
}

/// The receiver's side of cookies: a cookie is a keyed MAC of the source address, so the
/// node keeps no state per source. The key changes every ``rotationInterval``; a cookie
/// made with the current or the previous key is valid, so a cookie lives 2 to 4 minutes.
public struct CookieGuard: Sendable {
    /// How often the key changes, milliseconds.
    public static let rotationInterval: UInt64 = 120_000

    private var current = SymmetricKey(size: .bits256)
    private var previous: SymmetricKey?
    private var rotatedAt: UInt64?

    public init() {}

    /// The cookie for `source` at `now` (milliseconds, monotonic).
    public mutating func cookie(for source: IPAddress, now: UInt64) -> Cookie {
        rotate(now: now)
        return Self.mac(source, key: current)
    }

    /// Whether `cookie` is one this node gave `source` within the last two key periods.
    public mutating func isValid(_ cookie: Cookie, from source: IPAddress, now: UInt64) -> Bool {
        rotate(now: now)
        if Self.mac(source, key: current).matches(cookie) { return true }
        guard let previous else { return false }
        return Self.mac(source, key: previous).matches(cookie)
    }

    private mutating func rotate(now: UInt64) {
        guard let rotatedAt else {
            self.rotatedAt = now
            return
        }
        guard now >= rotatedAt + Self.rotationInterval else { return }
        // After a long silence both keys are too old: a cookie outlives at most two periods.
        previous = now >= rotatedAt + 2 * Self.rotationInterval ? nil : current
        current = SymmetricKey(size: .bits256)
        self.rotatedAt = now
    }

    private static func mac(_ source: IPAddress, key: SymmetricKey) -> Cookie {
        var input: [UInt8] = []
        input.reserveCapacity(SignalWire.addressLength)
        SignalWire.append(source, to: &input)
        let code = Array(HMAC<SHA256>.authenticationCode(for: input, using: key))
        return Cookie(code, at: 0)
    }
}
