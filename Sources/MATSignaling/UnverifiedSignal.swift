import MATPacket
import MATWire

/// A datagram whose framing and header passed `SignalCodec.open`, but whose signature has
/// not been checked and whose body has not been read.
///
/// The header fields are there to find the key (by ``sender``) and to drop the message
/// cheaply before any cryptography: not for us (``receiver``), stale (``sequence``, see
/// ``ReplayGuard/lastSequence(from:)``), or over a rate limit. None of them may be acted
/// on before ``verify(with:)`` succeeds.
public struct UnverifiedSignal: Sendable {
    /// The message type from the header.
    public let type: SignalType
    /// The sender's sequence number from the header.
    public let sequence: UInt64
    /// The sender HoA the message claims.
    public let sender: IPAddress
    /// The receiver HoA the message names.
    public let receiver: IPAddress
    /// The cookie after the signature, when the sender attached one (not signed: it is
    /// checked by ``SignalAdmission`` against the datagram's source address).
    public let cookie: Cookie?
    /// The datagram up to the end of the signature.
    let bytes: [UInt8]
    let bodyLength: Int

    init(type: SignalType, sequence: UInt64, sender: IPAddress, receiver: IPAddress, cookie: Cookie?,
         bytes: [UInt8], bodyLength: Int) {
        self.type = type
        self.sequence = sequence
        self.sender = sender
        self.receiver = receiver
        self.cookie = cookie
        self.bytes = bytes
        self.bodyLength = bodyLength
    }

    /// The length of the datagram it came in, cookie included.
    public var datagramLength: Int { bytes.count + (cookie == nil ? 0 : SignalCodec.cookieLength) }

    /// What a cookie reply to this message echoes: the first 16 bytes of its signature.
    public var cookieEcho: Cookie { Cookie(bytes, at: SignalCodec.headerLength + bodyLength) }

    /// Verifies the signature with `key`, then decodes the body.
    ///
    /// Throws ``SignalError/badSignature`` unless `key` signed exactly these bytes; after
    /// that, a body error (a binding update's address count, a MoA's encoding or family,
    /// an acknowledgement status) means the peer holding the key sent a malformed message.
    public func verify(with key: VerifyingKey) throws(SignalError) -> SignalMessage {
        let bodyStart = SignalCodec.headerLength
        let bodyEnd = bodyStart + bodyLength
        guard key.isValid(signature: bytes[bodyEnd...], for: bytes[..<bodyEnd]) else { throw .badSignature }
        let body: SignalBody
        switch type {
        case .bindingUpdate:
            body = try decodeBindingUpdate(from: bodyStart)
        case .bindingAck:
            let statusByte = bytes[bodyStart + 8]
            guard let status = AckStatus(rawValue: statusByte) else { throw .unknownStatus(statusByte) }
            body = .bindingAck(sequence: BigEndian.u64(bytes, at: bodyStart), status: status)
        case .challenge:
            body = .challenge(nonce: SignalWire.nonce(bytes, at: bodyStart),
                              sequence: BigEndian.u64(bytes, at: bodyStart + SignalWire.nonceLength))
        case .challengeResponse:
            body = .challengeResponse(nonce: SignalWire.nonce(bytes, at: bodyStart),
                                      sequence: BigEndian.u64(bytes, at: bodyStart + SignalWire.nonceLength))
        }
        return SignalMessage(sequence: sequence, sender: sender, receiver: receiver, body: body)
    }

    /// Count byte, that many addresses of the sender's family, lifetime, then zero bytes
    /// of padding up to the body length (see ``SignalCodec/paddedUpdateLength``).
    private func decodeBindingUpdate(from start: Int) throws(SignalError) -> SignalBody {
        let count = Int(bytes[start])
        guard count > 0 else { throw .noAddresses }
        let used = 1 + count * SignalWire.addressLength + 4
        guard used <= bodyLength else { throw .badBody }
        guard count <= SignalCodec.maximumMoAs else { throw .tooManyAddresses }
        // Zero, so the padding carries nothing and every update has one encoding.
        for i in (start + used)..<(start + bodyLength) where bytes[i] != 0 { throw .badBody }
        var moas: [IPAddress] = []
        moas.reserveCapacity(count)
        for i in 0..<count {
            let moa = try SignalWire.address(bytes, at: start + 1 + i * SignalWire.addressLength)
            guard moa.family == sender.family else { throw .familyMismatch }
            moas.append(moa)
        }
        let lifetime = BigEndian.u32(bytes, at: start + 1 + count * SignalWire.addressLength)
        return .bindingUpdate(moas: moas, lifetime: lifetime)
    }
}
