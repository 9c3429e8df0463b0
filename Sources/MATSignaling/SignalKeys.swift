#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto

/// A node's Ed25519 private key, which signs every message it sends.
///
/// Deliberately not `CustomStringConvertible`, so the secret does not end up in logs by
/// accident; ``rawRepresentation`` is there for writing a key file.
public struct SigningKey: Sendable {
    let key: Curve25519.Signing.PrivateKey

    /// Loads a key from its 32-byte RFC 8032 seed.
    public init(rawRepresentation bytes: [UInt8]) throws(SignalError) {
        guard bytes.count == 32,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: bytes) else { throw .badKey }
        self.key = key
    }

    private init(key: Curve25519.Signing.PrivateKey) { self.key = key }

    /// A new random key.
    public static func generate() -> SigningKey { SigningKey(key: .init()) }

    /// The public half, which peers verify with.
    public var publicKey: VerifyingKey { VerifyingKey(key: key.publicKey) }

    /// The 32-byte seed.
    public var rawRepresentation: [UInt8] { Array(key.rawRepresentation) }

    /// Signs `bytes`. Internal: the only things a node key signs are signaling messages
    /// framed by ``SignalCodec`` and relay registrations framed by ``RelayRegistration``,
    /// whose first four bytes differ, so a signature can never be replayed as something
    /// else; a relay's key (a key of its own) signs only its answers (``RelayAnswer``).
    func sign(_ bytes: [UInt8]) -> [UInt8] {
        guard let signature = try? key.signature(for: bytes), signature.count == SignalCodec.signatureLength else {
            // Ed25519 signing over a byte string has no failure mode in BoringSSL.
            preconditionFailure("Ed25519 signing failed")
        }
        return Array(signature)
    }
}

/// A peer's Ed25519 public key, bound to its HoA by configuration or by the
/// `key=<base64>` item of its IMS TXT record.
///
/// Equal and hashed by its 32 raw bytes.
public struct VerifyingKey: Hashable, Sendable, CustomStringConvertible {
    let key: Curve25519.Signing.PublicKey
    /// The 32 raw bytes (RFC 8032 encoding).
    public let rawRepresentation: [UInt8]

    init(key: Curve25519.Signing.PublicKey) {
        self.key = key
        self.rawRepresentation = Array(key.rawRepresentation)
    }

    /// Loads a key from its 32 raw bytes.
    public init(rawRepresentation bytes: [UInt8]) throws(SignalError) {
        guard bytes.count == 32,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: bytes) else { throw .badKey }
        self.key = key
        self.rawRepresentation = bytes
    }

    /// Parses standard base64 (RFC 4648 §4, with padding, no whitespace) of the 32 raw
    /// bytes, as written in configuration and TXT records. Nil on anything else.
    public init?(base64: String) {
        guard base64.utf8.count == 44, let data = Data(base64Encoded: base64),
              let key = try? VerifyingKey(rawRepresentation: Array(data)) else { return nil }
        self = key
    }

    /// Standard base64 of the 32 raw bytes: 44 characters ending in `=`.
    public var base64: String { Data(rawRepresentation).base64EncodedString() }

    /// The base64 form.
    public var description: String { base64 }

    /// Whether `signature` is this key's signature over `bytes`.
    func isValid(signature: ArraySlice<UInt8>, for bytes: ArraySlice<UInt8>) -> Bool {
        key.isValidSignature(signature, for: bytes)
    }

    public static func == (lhs: VerifyingKey, rhs: VerifyingKey) -> Bool {
        lhs.rawRepresentation == rhs.rawRepresentation
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(rawRepresentation) }
}
