#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATSignaling

/// The node's Ed25519 signing key on disk: one line, the base64 of the 32-byte private
/// key, in a file only root may read.
enum SigningKeyFile {
    /// Reads the key at `path`. With `createIfMissing`, a missing file is created with a
    /// new key (mode 0600), so a node needs no setup step before its first start.
    static func load(_ path: String, createIfMissing: Bool) throws -> SigningKey {
        if access(path, F_OK) != 0, errno == ENOENT, createIfMissing {
            let key = SigningKey.generate()
            try write(key, to: path)
            log("matd: created signing key \(path) (public key \(key.publicKey.base64))")
            return key
        }
        let data = try SecretFile.read(path, what: "signing key")
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = Data(base64Encoded: text), let key = try? SigningKey(rawRepresentation: Array(bytes)) else {
            throw SystemError("signing key \(path)", detail: "not one line of base64 holding a 32-byte Ed25519 key")
        }
        return key
    }

    /// Writes `key` (mode 0600, never half-written).
    static func write(_ key: SigningKey, to path: String) throws {
        try DurableFile.replace(path, with: Data(key.rawRepresentation).base64EncodedString() + "\n")
    }
}
