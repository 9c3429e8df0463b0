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
        var info = stat()
        if stat(path, &info) != 0 {
            guard errno == ENOENT, createIfMissing else { throw SystemError("read signing key \(path)", errno: errno) }
            let key = SigningKey.generate()
            try write(key, to: path)
            log("matd: created signing key \(path) (public key \(key.publicKey.base64))")
            return key
        }
        guard info.st_mode & 0o077 == 0 else {
            throw SystemError("signing key \(path)",
                              detail: "readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SystemError("read signing key \(path)", detail: "cannot read")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = Data(base64Encoded: text), let key = try? SigningKey(rawRepresentation: Array(bytes)) else {
            throw SystemError("signing key \(path)", detail: "not one line of base64 holding a 32-byte Ed25519 key")
        }
        return key
    }

    /// Writes `key` with write-temp-fsync-rename, mode 0600.
    static func write(_ key: SigningKey, to path: String) throws {
        let text = Data(key.rawRepresentation).base64EncodedString() + "\n"
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("write \(temporary)", errno: errno) }
        let written = Glibc.write(fd, text, text.utf8.count)
        let synced = fsync(fd)
        close(fd)
        guard written == text.utf8.count, synced == 0 else { throw SystemError("write \(temporary)", errno: errno) }
        guard rename(temporary, path) == 0 else { throw SystemError("rename \(temporary) to \(path)", errno: errno) }
    }
}
