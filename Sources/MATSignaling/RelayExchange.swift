import Crypto

/// An X25519 key pair with which a node and its relay agree on the node's relay secret
/// (``RelaySecret``, docs/signaling.md, "Relay secrets"): the node's public half travels
/// in its signed registration (``RelayRegistration``), the relay's in its answer
/// (``RelayAnswer``), and the secret is HKDF-SHA256 of their X25519 shared secret, so
/// that an observer of the path between them, who reads both public halves, cannot learn
/// it. Fresh from the system's CSPRNG; a node makes a new one every rotation interval
/// (``RelaySecrets`` in matd), a relay too (``RelayExchangeKeys``). Deliberately not
/// `CustomStringConvertible`.
public struct RelayExchangeKey: Sendable {
    /// Length of a public half on the wire.
    public static let length = 32
    let key: Curve25519.KeyAgreement.PrivateKey
    /// The public half, as sent.
    public let publicKey: [UInt8]

    /// A fresh key pair.
    public init() {
        key = Curve25519.KeyAgreement.PrivateKey()
        publicKey = Array(key.publicKey.rawRepresentation)
    }

    /// The secret this node's key agrees on with the relay's public half `relay`; nil when
    /// `relay` is no usable key (wrong length, or a point of small order, whose shared
    /// secret is all zero and so known to anyone).
    public func nodeSecret(relay: [UInt8]) -> RelaySecret? {
        agree(with: relay, node: publicKey, relay: relay)
    }

    /// The secret this relay's key agrees on with a node's public half `node`; nil as
    /// for ``nodeSecret(relay:)``.
    public func relaySecret(node: [UInt8]) -> RelaySecret? {
        agree(with: node, node: node, relay: publicKey)
    }

    /// HKDF-SHA256 (RFC 5869) of the X25519 shared secret, salted with a label of its own
    /// (no other key of MAT is derived so) and bound to both public halves.
    private func agree(with peer: [UInt8], node: [UInt8], relay: [UInt8]) -> RelaySecret? {
        guard peer.count == Self.length,
              let other = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: peer),
              let shared = try? key.sharedSecretFromKeyAgreement(with: other),
              !shared.withUnsafeBytes({ $0.allSatisfy { $0 == 0 } }) else { return nil }
        let derived = shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: Array("MAT relay secret v1".utf8),
                                                     sharedInfo: node + relay, outputByteCount: RelaySecret.length)
        return derived.withUnsafeBytes { RelaySecret(Array($0)) }
    }
}

/// A relay's exchange keys (``RelayExchangeKey``): the current one, which answers every
/// registration that names no key the relay still holds, and the one before it, which
/// still answers the registrations that name it, so that a node's next registration after
/// a rotation keeps the secret it already uses (it learns the new key from the answer
/// and agrees on a new secret with it at its next registration, knowing it before the
/// relay uses it). Rotated every `rotationInterval` ms; pure, the caller passes the time.
public struct RelayExchangeKeys: Sendable {
    public let rotationInterval: UInt64
    private var current = RelayExchangeKey()
    private var previous: RelayExchangeKey?
    /// When `current` was made; nil before the first use.
    private var since: UInt64?

    public init(rotationInterval: UInt64 = 600_000) {
        precondition(rotationInterval > 0)
        self.rotationInterval = rotationInterval
    }

    /// The current public half at `now` (rotated first when due).
    public mutating func currentKey(now: UInt64) -> [UInt8] {
        rotate(now: now)
        return current.publicKey
    }

    /// The secret for a registration carrying the node's public half `node` and naming
    /// the relay key `named` (all zero for none), and the relay key it was agreed with:
    /// `named` while the relay holds it, the current key otherwise. Nil when `node` is no
    /// usable key.
    public mutating func agree(node: [UInt8], named: [UInt8], now: UInt64) -> (secret: RelaySecret, relayKey: [UInt8])? {
        rotate(now: now)
        let key = previous.map { $0.publicKey == named ? $0 : current } ?? current
        return key.relaySecret(node: node).map { ($0, key.publicKey) }
    }

    private mutating func rotate(now: UInt64) {
        guard let since else {
            since = now
            return
        }
        guard now >= since + rotationInterval else { return }
        previous = current
        current = RelayExchangeKey()
        self.since = now
    }
}

/// A relay's answer to a registration it took (encapsulation kind 8, docs/signaling.md,
/// "Relay secrets"), to the binding the registration came from: the relay's half of the
/// key agreement, signed with the relay's Ed25519 key (its `relay.key`), which a node
/// pins (`[relay] public-key`) so that nobody else, even one who reads the node's registrations
/// and sends from the relay's address, can answer with an exchange key of its own.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | encapsulation header, kind 8 |
/// | 8 | 16 | the first 16 bytes of the node's exchange key of the registration answered |
/// | 24 | 32 | the relay's exchange key the secret was agreed with (the one the registration named while the relay holds it, else its current one) |
/// | 56 | 32 | the relay's current exchange key, for the node's next registrations |
/// | 88 | 64 | Ed25519 signature over the header, the node's whole exchange key (32), and the two relay keys |
///
/// 152 bytes, shorter than any registration (162 and up), and sent only for one whose
/// signature verified: the relay reflects nothing it was not sent by a node with a key.
/// The node's key is cut to 16 bytes on the wire (it tells the node's current and
/// previous key apart) and signed whole: the node checks the signature with its own key.
/// The answer carries no secret: the node derives it from the relay's key and its own
/// private half.
public struct RelayAnswer: Equatable, Sendable {
    /// How much of the node's exchange key the answer carries.
    public static let nodeKeyTagLength = 16
    public static let length = EncapWire.headerLength + nodeKeyTagLength + 2 * RelayExchangeKey.length
        + SignalCodec.signatureLength
    /// The first ``nodeKeyTagLength`` bytes of the node's exchange key answered.
    public let nodeKeyTag: [UInt8]
    public let agreedKey: [UInt8]
    public let currentKey: [UInt8]
    let signature: [UInt8]

    /// The answer to the registration carrying the node's exchange key `nodeKey`, signed
    /// with the relay's `key`; each exchange key ``RelayExchangeKey/length`` bytes.
    public static func seal(nodeKey: [UInt8], agreedKey: [UInt8], currentKey: [UInt8], with key: SigningKey) -> [UInt8] {
        precondition([nodeKey, agreedKey, currentKey].allSatisfy { $0.count == RelayExchangeKey.length })
        let header = Self.header
        let signature = key.sign(header + nodeKey + agreedKey + currentKey)
        return header + nodeKey.prefix(nodeKeyTagLength) + agreedKey + currentKey + signature
    }

    /// Reads a datagram ``EncapWire/parse(_:)`` took as an answer; nil for anything else.
    /// Nothing is trusted before ``verify(nodeKey:with:)``.
    public init?(_ datagram: UnsafeRawBufferPointer) {
        guard EncapWire.parse(datagram) == .registrationAnswer else { return nil }
        let key = RelayExchangeKey.length, tag = Self.nodeKeyTagLength
        var start = EncapWire.headerLength
        nodeKeyTag = Array(datagram[start..<start + tag])
        start += tag
        agreedKey = Array(datagram[start..<start + key])
        currentKey = Array(datagram[start + key..<start + 2 * key])
        signature = Array(datagram[(start + 2 * key)...])
    }

    /// The datagram, as read.
    public var bytes: [UInt8] { Self.header + nodeKeyTag + agreedKey + currentKey + signature }

    /// Whether this answers the registration that carried the exchange key `nodeKey`.
    public func answers(_ nodeKey: [UInt8]) -> Bool {
        nodeKey.count == RelayExchangeKey.length && nodeKey.prefix(Self.nodeKeyTagLength).elementsEqual(nodeKeyTag)
    }

    /// Whether the relay whose key is `key` signed this answer to the registration that
    /// carried `nodeKey`.
    public func verify(nodeKey: [UInt8], with key: VerifyingKey) -> Bool {
        answers(nodeKey) && key.isValid(signature: signature[...], for: (Self.header + nodeKey + agreedKey + currentKey)[...])
    }

    private static var header: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: EncapWire.headerLength)
        bytes.withUnsafeMutableBytes { EncapWire.writeHeader(.registrationAnswer, at: $0.baseAddress!) }
        return bytes
    }
}
