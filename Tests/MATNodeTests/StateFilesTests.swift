#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing
@testable import MATNode

/// Key files are refused when others can read them; state files are replaced whole.
struct StateFilesTests {
    @Test func secretFileReadableByOthersIsRefused() throws {
        let directory = try TemporaryDirectory(prefix: "matd-state")
        defer { directory.remove() }
        let path = directory.file("key")
        try DurableFile.replace(path, with: "secret\n")
        #expect(try SecretFile.read(path, what: "key file") == Data("secret\n".utf8))
        chmod(path, 0o644)
        #expect {
            try SecretFile.read(path, what: "key file")
        } throws: { error in
            "\(error)".contains("readable by group or others (mode 644); chmod 600 it")
        }
    }

    @Test func signingKeyIsCreatedOnceWithMode0600() throws {
        let directory = try TemporaryDirectory(prefix: "matd-state")
        defer { directory.remove() }
        let path = directory.file("signing.key")
        let created = try SigningKeyFile.load(path, createIfMissing: true)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        let loaded = try SigningKeyFile.load(path, createIfMissing: true)
        #expect(loaded.publicKey == created.publicKey)
        // A configured key file that is missing is an error, not a new key.
        #expect(throws: (any Error).self) { try SigningKeyFile.load(directory.file("absent.key"), createIfMissing: false) }
        try DurableFile.replace(path, with: "not base64 at all\n")
        #expect(throws: (any Error).self) { try SigningKeyFile.load(path, createIfMissing: false) }
    }
}
