import MATPacket
import MATWire

/// A cookie reply (``CookieReply``) for a message that came through the relay
/// (docs/signaling.md, "Signaling through the relay"). A plain cookie reply names no HoA,
/// and the relay routes a relayed signal by the sender and receiver HoAs in a message's
/// header, so the reply to a relayed peer is framed as a message's header with the reply
/// as its body:
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 52 | a message's header: magic, version 1, type 5 (the cookie reply's), zero flags, sequence 0, sender HoA (this node's), receiver HoA (the peer's), body length 32 |
/// | 52 | 16 | echo: the first 16 bytes of the answered message's signature |
/// | 68 | 16 | the cookie |
/// | 84 | 32 | zero: the reply is padded to the shortest message framing (header and signature), the least a relay takes |
///
/// 116 bytes, unsigned as a plain cookie reply is, and smaller than the shortest message
/// it answers (125 bytes): it amplifies nothing. The relay reads only the HoAs (it
/// forwards it from the binding that registered the sender HoA to the one that registered
/// the receiver HoA), stamps the origin and MAC as on every relayed signal, and the peer
/// takes the reply as one from that origin.
public enum RelayedCookieReply {
    /// The length of the whole reply.
    public static let length = SignalCodec.headerLength + SignalCodec.signatureLength
    static let bodyLength = 2 * SignalCodec.cookieLength

    /// `reply` from `sender` (this node's HoA) to `receiver` (the peer's HoA, of the same family).
    public static func seal(_ reply: CookieReply, from sender: IPAddress, to receiver: IPAddress) -> [UInt8] {
        var out = SignalWire.magic
        out.reserveCapacity(length)
        out.append(SignalCodec.version)
        out.append(SignalCodec.cookieReplyType)
        out.appendBigEndian(UInt16(0))
        out.appendBigEndian(UInt64(0))
        SignalWire.append(sender, to: &out)
        SignalWire.append(receiver, to: &out)
        out.appendBigEndian(UInt16(bodyLength))
        out += reply.echo.bytes
        out += reply.cookie.bytes
        out += [UInt8](repeating: 0, count: length - out.count)
        return out
    }

    /// `plain`, a cookie reply as ``SignalCodec/seal(_:)-(CookieReply)`` wrote it, framed
    /// from `sender` to `receiver`; nil when `plain` is no cookie reply.
    public static func wrap(_ plain: [UInt8], from sender: IPAddress, to receiver: IPAddress) -> [UInt8]? {
        let reply = plain.withUnsafeBytes { raw -> CookieReply? in
            do {
                return try SignalCodec.openCookieReply(raw)
            } catch {
                return nil
            }
        }
        return reply.map { seal($0, from: sender, to: receiver) }
    }

    /// Reads a relayed cookie reply: exactly ``length`` bytes, framed as above, the padding
    /// zero, both HoAs of one family. Nil for anything else (a relayed message among them).
    public static func open(_ bytes: [UInt8]) -> (sender: IPAddress, receiver: IPAddress, reply: CookieReply)? {
        guard bytes.count == length, bytes.starts(with: SignalWire.magic),
              bytes[SignalWire.versionOffset] == SignalCodec.version,
              bytes[SignalWire.typeOffset] == SignalCodec.cookieReplyType,
              BigEndian.u16(bytes, at: SignalWire.flagsOffset) == 0,
              BigEndian.u64(bytes, at: SignalWire.sequenceOffset) == 0,
              Int(BigEndian.u16(bytes, at: SignalWire.bodyLengthOffset)) == bodyLength,
              bytes[(SignalCodec.headerLength + bodyLength)...].allSatisfy({ $0 == 0 }) else { return nil }
        let sender: IPAddress, receiver: IPAddress
        do {
            sender = try SignalWire.address(bytes, at: SignalWire.senderOffset)
            receiver = try SignalWire.address(bytes, at: SignalWire.receiverOffset)
        } catch {
            return nil
        }
        guard sender.family == receiver.family else { return nil }
        let body = SignalCodec.headerLength
        return (sender, receiver, CookieReply(echo: Cookie(bytes, at: body), cookie: Cookie(bytes, at: body + SignalCodec.cookieLength)))
    }
}

extension SignalCodec {
    /// The type, sender and receiver HoAs a sealed message's header names (not verified),
    /// for routing what this node sends; nil for anything not framed as a message (an
    /// encapsulation keepalive, a cookie reply).
    public static func peekHeader(_ bytes: [UInt8]) -> (type: SignalType, sender: IPAddress, receiver: IPAddress)? {
        guard bytes.count >= headerLength + signatureLength, bytes.starts(with: SignalWire.magic),
              let type = SignalType(rawValue: bytes[SignalWire.typeOffset]) else { return nil }
        do {
            return (type, try SignalWire.address(bytes, at: SignalWire.senderOffset),
                    try SignalWire.address(bytes, at: SignalWire.receiverOffset))
        } catch {
            return nil
        }
    }
}
