import Testing
@testable import MATDNS

@Suite("TSIG key files")
struct KeyFileTests {
    /// `tsig-keygen -a hmac-sha256 mn9.hoa.mip.test.` output (BIND 9.18.49).
    static let tsigKeygen = """
        key "mn9.hoa.mip.test." {
        \talgorithm hmac-sha256;
        \tsecret "dmB7tjzH9+iaPAZjzNZEafysbh9+LLABoYvddvAe3hE=";
        };
        """

    /// `ddns-confgen -a hmac-sha512 -k upd.mip.test. -z mip.test` output: comments, a key
    /// and an update-policy statement that must be skipped.
    static let ddnsConfgen = """
        # To activate this key, place the following in named.conf, and
        # in a separate keyfile on the system or systems from which nsupdate
        # will be run:
        key "upd.mip.test." {
        \talgorithm hmac-sha512;
        \tsecret "HnQjaAidOqLt4ORQcrx+KEAGLgJAhIjwpVukMWpxkyLIq+JE3wyYZnyUy48Nqi8Jrlh75aQDrzN4L4Y0LqKjyA==";
        };

        # Then, in the "zone" definition statement for "mip.test",
        # place an "update-policy" statement like this one, adjusted as
        # needed for your preferred permissions:
        update-policy {
        \t  grant upd.mip.test. zonesub ANY;
        };

        # After the keyfile has been placed, the following command will
        # execute nsupdate using this key:
        nsupdate -k <keyfile>
        """

    @Test func readsTsigKeygenOutput() throws {
        let keys = try TSIGKeyFile.parse(Self.tsigKeygen)
        #expect(keys.count == 1)
        #expect(keys[0].name == name("mn9.hoa.mip.test."))
        #expect(keys[0].algorithm == .hmacSHA256)
        #expect(keys[0].base64Secret == "dmB7tjzH9+iaPAZjzNZEafysbh9+LLABoYvddvAe3hE=")
        #expect(keys[0].secret.count == 32)
    }

    @Test func readsDdnsConfgenOutputSkippingOtherStatements() throws {
        // The trailing "nsupdate -k <keyfile>" line is a comment in the original; here it
        // is bare text without a semicolon, which the grammar must reject.
        #expect(throws: TSIGKeyError.syntax(line: 18)) { try TSIGKeyFile.parse(Self.ddnsConfgen) }
        let cleaned = Self.ddnsConfgen.split(separator: "\n").filter { !$0.hasPrefix("nsupdate") }.joined(separator: "\n")
        let keys = try TSIGKeyFile.parse(cleaned)
        #expect(keys.map(\.name) == [name("upd.mip.test.")])
        #expect(keys[0].algorithm == .hmacSHA512)
        #expect(keys[0].secret.count == 64)
    }

    @Test func readsSeveralKeysWithCommentsAndOddSpacing() throws {
        let text = """
            // first
            key mn1.hoa.mip.test. { algorithm HMAC-SHA256; secret "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; };
            /* second,
               spanning lines */ key "k2.hoa.mip.test." {
                algorithm "hmac-sha512";
                secret "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss";};
            """
        let keys = try TSIGKeyFile.parse(text)
        #expect(keys.map(\.name) == [Vectors.mn1Key.name, Vectors.k2Key.name])
        #expect(keys.map(\.secret) == [Vectors.mn1Key.secret, Vectors.k2Key.secret])
        // And the parsed key verifies the golden vector.
        let outcome = TSIG.verifyRequest(Vectors.golden, keyring: TSIGKeyring(keys), now: Vectors.goldenTime)
        #expect(outcome.context.map { .verified($0) } == outcome)
    }

    @Test func writtenKeyFileReadsBack() throws {
        let text = Vectors.k2Key.keyFileText
        let keys = try TSIGKeyFile.parse(text)
        #expect(keys.count == 1)
        #expect(keys[0].name == Vectors.k2Key.name)
        #expect(keys[0].algorithm == .hmacSHA512)
        #expect(keys[0].secret == Vectors.k2Key.secret)
    }

    @Test func rejectsBrokenKeyFiles() {
        #expect(throws: TSIGKeyError.unknownAlgorithm("hmac-md5")) {
            try TSIGKeyFile.parse(#"key "a." { algorithm hmac-md5; secret "AAAA"; };"#)
        }
        #expect(throws: TSIGKeyError.incompleteKey("a.")) { try TSIGKeyFile.parse(#"key "a." { algorithm hmac-sha256; };"#) }
        #expect(throws: TSIGKeyError.badSecret) {
            try TSIGKeyFile.parse(#"key "a." { algorithm hmac-sha256; secret "not base64!"; };"#)
        }
        #expect(throws: TSIGKeyError.badName("a..b")) {
            try TSIGKeyFile.parse(#"key "a..b" { algorithm hmac-sha256; secret "AAAA"; };"#)
        }
        #expect(throws: TSIGKeyError.syntax(line: 2)) { try TSIGKeyFile.parse("key \"a.\" {\n algorithm hmac-sha256 }") }
        #expect(throws: TSIGKeyError.syntax(line: 1)) { try TSIGKeyFile.parse(#"key "a." { secret "AAAA"; "#) }
        #expect(throws: TSIGKeyError.syntax(line: 1)) { try TSIGKeyFile.parse(#"key "a. { }"#) }
        #expect(throws: TSIGKeyError.syntax(line: 1)) { try TSIGKeyFile.parse("options { }") }
        #expect(throws: TSIGKeyError.syntax(line: 1)) { try TSIGKeyFile.parse("} ;") }
        #expect((try? TSIGKeyFile.parse(""))?.count == 0)
    }

    @Test func parsesNsupdateDashY() throws {
        let key = try TSIGKey(nsupdateSpec: "hmac-sha256:mn1.hoa.mip.test.:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        #expect(key.name == Vectors.mn1Key.name && key.algorithm == .hmacSHA256 && key.secret == Vectors.mn1Key.secret)
        let short = try TSIGKey(nsupdateSpec: "mn1.hoa.mip.test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        #expect(short.algorithm == .hmacSHA256 && short.name == Vectors.mn1Key.name)
        #expect(throws: TSIGKeyError.unknownAlgorithm("hmac-md5")) { try TSIGKey(nsupdateSpec: "hmac-md5:a:AAAA") }
        #expect(throws: TSIGKeyError.syntax(line: 1)) { try TSIGKey(nsupdateSpec: "justonefield") }
        #expect(throws: TSIGKeyError.badSecret) { try TSIGKey(nsupdateSpec: "a.:A") }
    }

    @Test func base64MatchesRFC4648Vectors() {
        let vectors = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                       ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
        #expect(Base64.decode("Zm9vYg") == Array("foob".utf8)) // padding optional
        #expect(Base64.decode("Zm9v\nYmFy") == Array("foobar".utf8))
        for bad in ["Z", "Zg=a", "Zh==", "Zm9v===", "Zm9v*", "é"] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
        var rng = SplitMix64(seed: 64)
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
    }
}
