import MATPacket
import MATWire

/// Encodes, signs and frames signaling messages (version 1; docs/signaling.md).
///
/// Receiving is two steps, so that nothing is decoded before it is authenticated:
/// ``open(_:)-(UnsafeRawBufferPointer)`` checks the framing and reads the fixed header
/// (which says whose key to use), then ``UnverifiedSignal/verify(with:)`` checks the
/// Ed25519 signature and only then decodes the body.
public enum SignalCodec {
    /// The UDP port signaling uses unless configured otherwise.
    public static let defaultPort: UInt16 = 7540
    /// The protocol version this codec writes and reads.
    public static let version: UInt8 = 1
    /// The longest datagram accepted: small enough never to be fragmented on an IPv6 path
    /// (1280-byte minimum MTU) even with a few extension headers.
    public static let maximumLength = 1200
    /// The most MoAs one binding update carries.
    public static let maximumMoAs = 8
    /// Bytes before the body: magic to body length.
    public static let headerLength = 52
    /// Bytes of the Ed25519 signature that ends every message.
    public static let signatureLength = 64
    /// What a mover pads its binding updates to: the longest datagram that still leaves
    /// room for a cookie. The receiver may send an unvalidated MoA three times what it
    /// received from it, the update included (as QUIC pads its first datagram for the
    /// same limit), so a padded update lets about 3.5 KB through in the round trip before
    /// the challenge is answered instead of about 400 bytes: TCP acknowledgements of data
    /// still in flight no longer use it up and push the peer's traffic back a round trip.
    public static let paddedUpdateLength = maximumLength - cookieLength

    /// Encodes `message` and signs it with `key`: header, body, then the signature over
    /// both. Ed25519 signing is deterministic (RFC 8032), so the same message and key
    /// always give the same bytes. A binding update's body is padded with zero bytes
    /// (signed with it) until the datagram is `paddedTo` bytes long, when that is longer.
    ///
    /// - Precondition: `message` passes ``SignalMessage/validate()``, and `paddedTo` is at
    ///   most ``maximumLength``.
    public static func seal(_ message: SignalMessage, with key: SigningKey, paddedTo: Int = 0) -> [UInt8] {
        precondition(paddedTo <= maximumLength, "padding a signaling message past the longest datagram")
        do {
            try message.validate()
        } catch {
            preconditionFailure("sealing an invalid signaling message: \(error)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(max(paddedTo, headerLength + 1 + maximumMoAs * SignalWire.addressLength + 4 + signatureLength))
        out.append(contentsOf: SignalWire.magic)
        out.append(version)
        out.append(message.type.rawValue)
        out.appendBigEndian(UInt16(0))  // flags
        out.appendBigEndian(message.sequence)
        SignalWire.append(message.sender, to: &out)
        SignalWire.append(message.receiver, to: &out)
        out.appendBigEndian(UInt16(0))  // body length, filled in below
        switch message.body {
        case .bindingUpdate(let moas, let lifetime):
            out.append(UInt8(moas.count))
            for moa in moas { SignalWire.append(moa, to: &out) }
            out.appendBigEndian(lifetime)
            out.append(contentsOf: repeatElement(0, count: max(0, paddedTo - out.count - signatureLength)))
        case .bindingAck(let sequence, let status):
            out.appendBigEndian(sequence)
            out.append(status.rawValue)
        case .challenge(let nonce, let sequence), .challengeResponse(let nonce, let sequence):
            SignalWire.append(nonce, to: &out)
            out.appendBigEndian(sequence)
        }
        let bodyLength = out.count - headerLength
        out.storeBigEndian(UInt16(truncatingIfNeeded: bodyLength), at: SignalWire.bodyLengthOffset)
        out.append(contentsOf: key.sign(out))
        return out
    }

    /// Checks the framing of a received datagram and reads its header, without checking
    /// the signature or decoding the body.
    ///
    /// Checked here: length (at most ``maximumLength``, exactly header + body length +
    /// signature, or that plus a ``Cookie`` after the signature), magic, version, type, zero flags, a body length the type can have, the
    /// two HoAs' encoding, and that they are of one family. Nothing is allocated until
    /// all of that passed; then the bytes are copied once into the result, so the buffer
    /// may be reused as soon as this returns.
    ///
    /// The caller then checks the receiver HoA is its own, looks up the key bound to the
    /// sender HoA, and calls ``UnverifiedSignal/verify(with:)``.
    public static func open(_ bytes: UnsafeRawBufferPointer) throws(SignalError) -> UnverifiedSignal {
        let count = bytes.count
        guard count <= maximumLength else { throw .tooLong }
        guard count >= headerLength else { throw .truncated }
        for i in 0..<4 where bytes[i] != SignalWire.magic[i] { throw .badMagic }
        let version = bytes[SignalWire.versionOffset]
        guard version == Self.version else { throw .unsupportedVersion(version) }
        let typeByte = bytes[SignalWire.typeOffset]
        guard let type = SignalType(rawValue: typeByte) else { throw .unknownType(typeByte) }
        guard BigEndian.u16(bytes, at: SignalWire.flagsOffset) == 0 else { throw .badFlags }
        let bodyLength = Int(BigEndian.u16(bytes, at: SignalWire.bodyLengthOffset))
        guard SignalWire.bodyLengthFits(bodyLength, for: type) else { throw .badLength }
        let total = headerLength + bodyLength + signatureLength
        guard count >= total else { throw .truncated }
        guard count == total || count == total + cookieLength else { throw .badLength }
        let sender = try SignalWire.address(bytes, at: SignalWire.senderOffset)
        let receiver = try SignalWire.address(bytes, at: SignalWire.receiverOffset)
        guard sender.family == receiver.family else { throw .familyMismatch }
        return UnverifiedSignal(
            type: type,
            sequence: BigEndian.u64(bytes, at: SignalWire.sequenceOffset),
            sender: sender,
            receiver: receiver,
            cookie: count == total ? nil : Cookie(bytes, at: total),
            bytes: Array(bytes[0..<total]),
            bodyLength: bodyLength
        )
    }

    /// ``open(_:)-(UnsafeRawBufferPointer)`` on an array.
    public static func open(_ bytes: [UInt8]) throws(SignalError) -> UnverifiedSignal {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(SignalError) in try open(raw) }
        }
        return try result.get()
    }
}
