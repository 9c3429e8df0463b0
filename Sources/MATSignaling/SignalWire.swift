import MATPacket

/// Field offsets and sizes of the version 1 wire format (docs/signaling.md), and the
/// bounds-checked readers and the writers the codec shares.
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

    // MARK: Reading. Callers check that `offset + size <= bytes.count` first; the
    // subscripts still trap rather than read out of bounds if one ever does not.

    @inline(__always)
    static func u16<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> UInt16 where C.Index == Int {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    @inline(__always)
    static func u32<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> UInt32 where C.Index == Int {
        var value: UInt32 = 0
        for i in 0..<4 { value = value << 8 | UInt32(bytes[offset + i]) }
        return value
    }

    @inline(__always)
    static func u64<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> UInt64 where C.Index == Int {
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | UInt64(bytes[offset + i]) }
        return value
    }

    /// Reads a 17-byte address: family 4 (address in the first 4 bytes, the other 12 zero)
    /// or family 6.
    static func address<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) throws(SignalError) -> IPAddress
    where C.Index == Int {
        switch bytes[offset] {
        case 4:
            for i in 5..<addressLength where bytes[offset + i] != 0 { throw .badAddress }
            return .v4(IPv4Address(u32(bytes, at: offset + 1)))
        case 6:
            return .v6(IPv6Address(high: u64(bytes, at: offset + 1), low: u64(bytes, at: offset + 9)))
        default:
            throw .badAddress
        }
    }

    static func nonce<C: RandomAccessCollection<UInt8>>(_ bytes: C, at offset: Int) -> Nonce where C.Index == Int {
        Nonce(high: u64(bytes, at: offset), low: u64(bytes, at: offset + 8))
    }

    // MARK: Writing.

    static func append(_ value: UInt16, to out: inout [UInt8]) {
        out.append(UInt8(value >> 8))
        out.append(UInt8(truncatingIfNeeded: value))
    }

    static func append(_ value: UInt32, to out: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    static func append(_ value: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    static func append(_ address: IPAddress, to out: inout [UInt8]) {
        switch address {
        case .v4(let v4):
            out.append(4)
            append(v4.value, to: &out)
            out.append(contentsOf: repeatElement(0, count: 12))
        case .v6(let v6):
            out.append(6)
            append(v6.high, to: &out)
            append(v6.low, to: &out)
        }
    }

    static func append(_ nonce: Nonce, to out: inout [UInt8]) {
        append(nonce.high, to: &out)
        append(nonce.low, to: &out)
    }
}
