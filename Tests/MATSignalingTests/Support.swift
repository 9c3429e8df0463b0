import MATPacket
@testable import MATSignaling

/// Fixed keys and addresses (documentation ranges) shared by the tests.
enum Fixture {
    /// Seed 00 01 .. 1f: the key FuzzSignaling and make-corpus.py sign with, too.
    static let keyA = try! SigningKey(rawRepresentation: (0..<32).map { UInt8($0) })
    static let keyB = try! SigningKey(rawRepresentation: (32..<64).map { UInt8($0) })

    static let hoaA4 = IPAddress("192.0.2.10")!
    static let hoaB4 = IPAddress("192.0.2.20")!
    static let moa4 = IPAddress("198.51.100.10")!
    static let moa4b = IPAddress("203.0.113.20")!
    static let hoaA6 = IPAddress("2001:db8:1::10")!
    static let hoaB6 = IPAddress("2001:db8:1::20")!
    static let moa6 = IPAddress("2001:db8:a::10")!
    static let moa6b = IPAddress("2001:db8:b::20")!

    static let nonce = Nonce(bytes: Array(0xA0...0xAF))

    /// One message of every type, for each family.
    static func messages(_ family: AddressFamily) -> [SignalMessage] {
        let (sender, receiver, moas) = family == .ipv4
            ? (hoaA4, hoaB4, [moa4, moa4b]) : (hoaA6, hoaB6, [moa6, moa6b])
        return [
            SignalMessage(sequence: 1, sender: sender, receiver: receiver,
                          body: .bindingUpdate(moas: [moas[0]], lifetime: 600)),
            SignalMessage(sequence: UInt64.max, sender: sender, receiver: receiver,
                          body: .bindingUpdate(moas: moas, lifetime: UInt32.max)),
            SignalMessage(sequence: 0, sender: receiver, receiver: sender,
                          body: .bindingAck(sequence: 7, status: .accepted)),
            SignalMessage(sequence: 9, sender: receiver, receiver: sender,
                          body: .bindingAck(sequence: UInt64.max, status: .refused)),
            SignalMessage(sequence: 0x0102_0304_0506_0708, sender: receiver, receiver: sender,
                          body: .challenge(nonce: nonce, sequence: 7)),
            SignalMessage(sequence: 8, sender: sender, receiver: receiver,
                          body: .challengeResponse(nonce: nonce, sequence: 7)),
        ]
    }

    static var allMessages: [SignalMessage] { messages(.ipv4) + messages(.ipv6) }
}

/// The 17-byte wire form of an address, written independently of the codec.
func wireAddress(_ address: IPAddress) -> [UInt8] {
    switch address {
    case .v4(let v4): [4] + v4.bytes + [UInt8](repeating: 0, count: 12)
    case .v6(let v6): [6] + v6.bytes
    }
}

func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } }
func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }

/// A datagram built field by field, so a test can break exactly one rule and still carry
/// a valid signature (the body length is the body's unless `bodyLength` says otherwise).
func rawMessage(magic: [UInt8] = Array("MATs".utf8), version: UInt8 = 1, type: UInt8 = 1,
                flags: UInt16 = 0, sequence: UInt64 = 5,
                sender: [UInt8] = wireAddress(Fixture.hoaA4), receiver: [UInt8] = wireAddress(Fixture.hoaB4),
                bodyLength: Int? = nil, body: [UInt8], key: SigningKey = Fixture.keyA) -> [UInt8] {
    var out = magic + [version, type] + be16(flags) + be64(sequence) + sender + receiver
    out += be16(UInt16(bodyLength ?? body.count)) + body
    return out + key.sign(out)
}

/// A binding update body from raw address encodings.
func updateBody(_ addresses: [[UInt8]], count: Int? = nil, lifetime: UInt32 = 600) -> [UInt8] {
    [UInt8(count ?? addresses.count)] + addresses.flatMap { $0 } + be32(lifetime)
}

/// Replaces the signature (the last 64 bytes) with `key`'s signature over the rest.
func resign(_ bytes: [UInt8], with key: SigningKey = Fixture.keyA) -> [UInt8] {
    guard bytes.count >= 64 else { return bytes }
    let signed = Array(bytes.dropLast(64))
    return signed + key.sign(signed)
}

/// Opens and verifies in one step.
func decode(_ bytes: [UInt8], key: VerifyingKey = Fixture.keyA.publicKey) throws(SignalError) -> SignalMessage {
    try SignalCodec.open(bytes).verify(with: key)
}

/// SplitMix64: a small deterministic generator, so random tests reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}
