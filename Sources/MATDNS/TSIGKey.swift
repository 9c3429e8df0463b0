#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto

/// A TSIG MAC algorithm. HMAC-SHA256 is the project's choice; the longer SHA-2 variants
/// come for free and let the server accept keys other tools generated.
public enum TSIGAlgorithm: String, Hashable, Sendable, CaseIterable {
    /// `hmac-sha256.` (RFC 4635), mandatory to implement in RFC 8945.
    case hmacSHA256 = "hmac-sha256"
    /// `hmac-sha384.`
    case hmacSHA384 = "hmac-sha384"
    /// `hmac-sha512.`
    case hmacSHA512 = "hmac-sha512"

    /// The algorithm's name as it appears in TSIG RDATA.
    public var name: DNSName { Self.names[self]! }

    /// Full MAC length in octets.
    public var digestLength: Int {
        switch self {
        case .hmacSHA256: 32
        case .hmacSHA384: 48
        case .hmacSHA512: 64
        }
    }

    /// The shortest truncated MAC RFC 8945 §5.2.2.1 allows: the larger of 10 octets and
    /// half the digest.
    public var minimumMACLength: Int { max(10, digestLength / 2) }

    /// Looks up an algorithm by its RDATA name (case-insensitive).
    public init?(name: DNSName) {
        guard let match = Self.names.first(where: { $0.value == name }) else { return nil }
        self = match.key
    }

    /// Looks up an algorithm by the keyword key files and nsupdate use (`hmac-sha256`),
    /// case-insensitive, trailing dot allowed.
    public init?(keyword: String) {
        var word = keyword.lowercased()
        if word.hasSuffix(".") { word.removeLast() }
        self.init(rawValue: word)
    }

    private static let names: [TSIGAlgorithm: DNSName] = {
        var table: [TSIGAlgorithm: DNSName] = [:]
        for algorithm in allCases {
            table[algorithm] = try! DNSName(algorithm.rawValue + ".") // constant, valid text
        }
        return table
    }()
}

/// A shared TSIG secret with its name and algorithm.
///
/// The HMAC state after absorbing the key is computed once here, because HMAC setup
/// (padding and hashing the key) would otherwise be repeated for every message.
public struct TSIGKey: Sendable, CustomStringConvertible {
    /// The key's name, lower-cased: TSIG hashes the canonical form, and servers grant
    /// update rights by this name.
    public let name: DNSName
    /// The MAC algorithm.
    public let algorithm: TSIGAlgorithm
    let secret: [UInt8]
    private let primed: PrimedHMAC

    /// Creates a key from raw secret bytes.
    public init(name: DNSName, algorithm: TSIGAlgorithm = .hmacSHA256, secret: [UInt8]) {
        self.name = name.lowercased()
        self.algorithm = algorithm
        self.secret = secret
        let key = SymmetricKey(data: secret)
        switch algorithm {
        case .hmacSHA256: primed = .sha256(HMAC<SHA256>(key: key))
        case .hmacSHA384: primed = .sha384(HMAC<SHA384>(key: key))
        case .hmacSHA512: primed = .sha512(HMAC<SHA512>(key: key))
        }
    }

    /// Creates a key from a base64 secret, as key files and `nsupdate -y` carry it.
    public init(name: DNSName, algorithm: TSIGAlgorithm = .hmacSHA256, base64Secret: String) throws(TSIGKeyError) {
        guard let secret = Base64.decode(base64Secret) else { throw .badSecret }
        self.init(name: name, algorithm: algorithm, secret: secret)
    }

    /// Parses the `nsupdate -y` form `[algorithm:]name:base64secret` (algorithm defaults
    /// to hmac-sha256 here, not nsupdate's legacy hmac-md5).
    public init(nsupdateSpec spec: String) throws(TSIGKeyError) {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let algorithm: TSIGAlgorithm
        let nameText: String
        let secretText: String
        switch parts.count {
        case 2:
            algorithm = .hmacSHA256
            nameText = parts[0]
            secretText = parts[1]
        case 3:
            guard let a = TSIGAlgorithm(keyword: parts[0]) else { throw .unknownAlgorithm(parts[0]) }
            algorithm = a
            nameText = parts[1]
            secretText = parts[2]
        default:
            throw .syntax(line: 1)
        }
        let name: DNSName
        do { name = try DNSName(nameText) } catch { throw .badName(nameText) }
        try self.init(name: name, algorithm: algorithm, base64Secret: secretText)
    }

    /// The secret in base64, for writing key files.
    public var base64Secret: String { Base64.encode(secret) }

    /// A BIND/nsupdate `key` clause for this key, so test servers can be configured from it.
    public var keyFileText: String {
        "key \"\(name)\" {\n\talgorithm \(algorithm.rawValue);\n\tsecret \"\(base64Secret)\";\n};\n"
    }

    /// Name and algorithm only: the secret must not end up in logs.
    public var description: String { "TSIGKey(\(name), \(algorithm.rawValue))" }

    /// The full-length HMAC of everything `feed` hands to the writer it is given, so
    /// callers can stream message pieces without copying them together first.
    func mac(_ feed: ((UnsafeRawBufferPointer) -> Void) -> Void) -> [UInt8] {
        switch primed {
        case .sha256(var h):
            feed { h.update(data: $0) }
            return Array(h.finalize())
        case .sha384(var h):
            feed { h.update(data: $0) }
            return Array(h.finalize())
        case .sha512(var h):
            feed { h.update(data: $0) }
            return Array(h.finalize())
        }
    }
}

private enum PrimedHMAC: Sendable {
    case sha256(HMAC<SHA256>)
    case sha384(HMAC<SHA384>)
    case sha512(HMAC<SHA512>)
}

/// Why a key could not be built or a key file not read.
public enum TSIGKeyError: Error, Hashable, Sendable {
    /// The secret is not valid base64.
    case badSecret
    /// An algorithm this codec does not implement.
    case unknownAlgorithm(String)
    /// A key name that is not a valid domain name.
    case badName(String)
    /// A key clause without an algorithm or a secret.
    case incompleteKey(String)
    /// Text that does not follow the key-file grammar, at this 1-based line.
    case syntax(line: Int)
}

/// The keys a server accepts, found by name.
public struct TSIGKeyring: Sendable {
    private var keys: [DNSName: TSIGKey] = [:]

    /// Creates a keyring; a later key replaces an earlier one of the same name.
    public init(_ keys: [TSIGKey] = []) {
        for key in keys { insert(key) }
    }

    /// Adds or replaces a key.
    public mutating func insert(_ key: TSIGKey) { keys[key.name] = key }

    /// Removes a key, e.g. on revocation.
    public mutating func remove(named name: DNSName) { keys[name] = nil }

    /// The key with this name (case-insensitive), if any.
    public func key(named name: DNSName) -> TSIGKey? { keys[name] }

    /// Number of keys.
    public var count: Int { keys.count }
}
