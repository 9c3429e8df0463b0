import MATPacket
import MATWire

/// Field offsets and sizes of the version 1 wire format (docs/signaling.md), and the
/// address and nonce fields the codec shares.
enum SignalWire {
    static let magic: [UInt8] = [0x4D, 0x41, 0x54, 0x73]  // "MATs"
    static let versionOffset = 4
    static let typeOffset = 5
    static let flagsOffset = 6
    static let sequenceOffset = 8
    static let senderOffset = 16
    static let receiverOffset = 33
    static let bodyLengthOffset = 50
    /// Family byte plus 16 address bytes.
    static let addressLength = 17
    static let nonceLength = 16

    /// Whether `length` is a body length `type` can have. For a binding update only the
    /// shape is checked here (count byte, whole addresses, lifetime): the count itself is
    /// body content, read after the signature verifies.
    static func bodyLengthFits(_ length: Int, for type: SignalType) -> Bool {
        switch type {
        case .bindingUpdate:
            // Padding may follow the lifetime, so any length from one MoA's up.
            length >= 1 + addressLength + 4
        case .bindingAck:
            length == 8 + 1
        case .challenge, .challengeResponse:
            length == nonceLength + 8
        }
    }

    // MARK: Reading (integers through MATWire's `BigEndian`). Callers check that
    // `offset + size <= bytes.count` first; the subscripts still trap rather than read out
    // of bounds if one ever does not.

    /// Reads a 17-byte address: family 4 (address in the first 4 bytes, the other 12 zero)
    /// or family 6.
    static func address<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) throws(SignalError) -> IPAddress
    where C.Index == Int {
        switch bytes[offset] {
        case 4:
            for i in 5..<addressLength where bytes[offset + i] != 0 { throw .badAddress }
            return .v4(IPv4Address(BigEndian.u32(bytes, at: offset + 1)))
        case 6:
            return .v6(IPv6Address(high: BigEndian.u64(bytes, at: offset + 1), low: BigEndian.u64(bytes, at: offset + 9)))
        default:
            throw .badAddress
        }
    }

    static func nonce<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> Nonce where C.Index == Int {
        Nonce(high: BigEndian.u64(bytes, at: offset), low: BigEndian.u64(bytes, at: offset + 8))
    }

    // MARK: Writing.

    static func append(_ address: IPAddress, to out: inout [UInt8]) {
        switch address {
        case .v4(let v4):
            out.append(4)
            out.appendBigEndian(v4.value)
            out.append(contentsOf: repeatElement(0, count: 12))
        case .v6(let v6):
            out.append(6)
            out.appendBigEndian(v6.high)
            out.appendBigEndian(v6.low)
        }
    }

    static func append(_ nonce: Nonce, to out: inout [UInt8]) {
        out.appendBigEndian(nonce.high)
        out.appendBigEndian(nonce.low)
    }
}
