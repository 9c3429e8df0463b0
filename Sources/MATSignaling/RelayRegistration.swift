import MATPacket
import MATWire

/// A node's registration with a relay (docs/signaling.md, "Relay"): on `encap-port`, kind
/// 5 of the UDP encapsulation, the HoAs whose relayed packets the node wants sent to the
/// address and port the registration comes from (its NAT's binding), signed with the node
/// key, with the node's half of the key agreement by which node and relay agree on the
/// secret the relay authenticates the signals it passes on to this binding with
/// (``RelayExchangeKey``, ``RelaySecret``, ``RelayedSignal``).
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | encapsulation header, kind 5 |
/// | 8 | 8 | sequence number (big-endian; higher than every earlier registration's) |
/// | 16 | 1 | HoA count n, 1 to 4 |
/// | 17 | 17 n | the HoAs: family 4 or 6, then 16 address bytes (IPv4 in the first 4, 12 zero) |
/// | 17 + 17 n | 32 | the node's exchange key (X25519 public half, new every rotation interval) |
/// | 49 + 17 n | 32 | the relay's exchange key the node agreed the secret with (from the relay's last answer, ``RelayAnswer``); zero for none yet |
/// | 81 + 17 n | 64 | Ed25519 signature over bytes 0 to 81 + 17 n |
///
/// The signature covers the encapsulation header, whose magic (`MATu`) differs from
/// signaling's (`MATs`): the node key's signature over a registration can never be taken
/// as a signaling message, nor one over a message as a registration. The relay checks it
/// with the key of every HoA listed (its IMS TXT record's or a pinned one), so a node
/// lists only HoAs its one key speaks for. The signature keeps anyone from putting their
/// own exchange key in a node's registration (and so learning the secret the relay would
/// stamp that node's signals with); the key agreement keeps an observer of the path
/// between node and relay from learning it (docs/security.md, N4).
public struct RelayRegistration: Equatable, Sendable {
    /// Sequence number and count.
    public static let fixedLength = 8 + 1
    public static let addressLength = 17
    public static let maximumHoAs = 4
    /// The Ed25519 signature that ends a registration.
    public static let signatureLength = SignalCodec.signatureLength

    public let sequence: UInt64
    public let hoas: [IPAddress]
    /// The node's exchange key, ``RelayExchangeKey/length`` bytes.
    public let nodeKey: [UInt8]
    /// The relay's exchange key the node agreed its secret with; nil for none (zero bytes).
    public let relayKey: [UInt8]?
    /// The bytes the signature covers, and the signature.
    let signedPart: [UInt8]
    let signature: [UInt8]

    /// Length of the two exchange keys.
    public static let exchangeLength = 2 * RelayExchangeKey.length

    /// Encodes and signs a registration of `hoas` (1 to ``maximumHoAs``) with the node's
    /// exchange key `nodeKey` and the relay's `relayKey` it agreed with (nil for none),
    /// each ``RelayExchangeKey/length`` bytes.
    public static func seal(hoas: [IPAddress], sequence: UInt64, nodeKey: [UInt8], relayKey: [UInt8]?,
                            with key: SigningKey) -> [UInt8] {
        precondition((1...maximumHoAs).contains(hoas.count), "a relay registration lists 1 to 4 HoAs")
        precondition(nodeKey.count == RelayExchangeKey.length && (relayKey?.count ?? RelayExchangeKey.length) == RelayExchangeKey.length)
        var writer = ByteWriter(capacity: EncapWire.headerLength + fixedLength + hoas.count * addressLength
                                + exchangeLength + signatureLength)
        writer.append(EncapWire.control(.keepalive))
        writer.bytes[5] = EncapWire.Kind.registration.rawValue
        writer.u64(sequence)
        writer.u8(UInt8(hoas.count))
        for hoa in hoas { SignalWire.append(hoa, to: &writer.bytes) }
        writer.bytes.append(contentsOf: nodeKey)
        writer.bytes.append(contentsOf: relayKey ?? [UInt8](repeating: 0, count: RelayExchangeKey.length))
        return writer.bytes + key.sign(writer.bytes)
    }

    /// Reads a datagram that ``EncapWire/parse(_:)`` took as a registration; nil for an
    /// address whose family byte is not 4 or 6 or whose IPv4 padding is not zero, or a
    /// HoA listed twice. Nothing is trusted before ``verify(with:)``.
    public init?(_ datagram: UnsafeRawBufferPointer) {
        guard EncapWire.parse(datagram) == .registration else { return nil }
        let bytes = Array(datagram)
        var reader = RegistrationReader(bytes, from: EncapWire.headerLength)
        do {
            sequence = try reader.u64()
            let count = Int(try reader.u8())
            var hoas: [IPAddress] = []
            for _ in 0..<count {
                try reader.need(Self.addressLength)
                let hoa = try SignalWire.address(bytes, at: reader.position)
                guard !hoas.contains(hoa) else { return nil }
                hoas.append(hoa)
                try reader.skip(Self.addressLength)
            }
            self.hoas = hoas
            nodeKey = try reader.bytes(RelayExchangeKey.length)
            let named = try reader.bytes(RelayExchangeKey.length)
            relayKey = named.allSatisfy { $0 == 0 } ? nil : named
            signedPart = Array(bytes[..<reader.position])
            signature = try reader.bytes(Self.signatureLength)
        } catch {
            return nil
        }
    }

    /// Whether `key` signed this registration.
    public func verify(with key: VerifyingKey) -> Bool {
        key.isValid(signature: signature[...], for: signedPart[...])
    }
}

/// Big-endian reads over a registration (through MATWire).
struct RegistrationReader: ByteReading {
    struct Short: Error {}
    let buffer: [UInt8]
    var position: Int
    let limit: Int

    init(_ bytes: [UInt8], from start: Int) {
        buffer = bytes
        position = start
        limit = bytes.count
    }

    static func shortInput(at offset: Int) -> Short { Short() }
}
