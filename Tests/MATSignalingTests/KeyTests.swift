import Testing
@testable import MATSignaling

@Suite("Signing and verifying keys")
struct KeyTests {
    /// RFC 8032 §7.1, tests 1 and 2: the keys are plain Ed25519, interoperable with any
    /// other implementation.
    @Test func rfc8032Vectors() throws {
        let vectors: [(secret: String, public: String, message: String, signature: String)] = [
            ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
             "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
             "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
            ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
             "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
             "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
        ]
        for vector in vectors {
            let key = try SigningKey(rawRepresentation: hex(vector.secret))
            #expect(key.rawRepresentation == hex(vector.secret))
            #expect(key.publicKey.rawRepresentation == hex(vector.public))
            #expect(key.sign(hex(vector.message)) == hex(vector.signature))
            let verifying = try VerifyingKey(rawRepresentation: hex(vector.public))
            #expect(verifying == key.publicKey)
            #expect(verifying.isValid(signature: hex(vector.signature)[...], for: hex(vector.message)[...]))
        }
    }

    @Test func base64() throws {
        let key = Fixture.keyA.publicKey
        // Python: base64.b64encode(Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key() raw)
        #expect(key.base64 == "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=")
        #expect(key.description == key.base64)
        #expect(VerifyingKey(base64: key.base64) == key)
        for bad in ["", "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg", "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg==",
                    " A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=", "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVM*g=",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            #expect(VerifyingKey(base64: bad) == nil, "\(bad)")
        }
    }

    @Test func rawRepresentations() throws {
        let generated = SigningKey.generate()
        let again = try SigningKey(rawRepresentation: generated.rawRepresentation)
        #expect(again.publicKey == generated.publicKey)
        #expect(generated.publicKey != SigningKey.generate().publicKey)
        #expect(try VerifyingKey(rawRepresentation: generated.publicKey.rawRepresentation) == generated.publicKey)
        #expect(Set([Fixture.keyA.publicKey, Fixture.keyA.publicKey, Fixture.keyB.publicKey]).count == 2)
        for length in [0, 31, 33, 64] {
            let bytes = [UInt8](repeating: 7, count: length)
            #expect(throws: SignalError.badKey) { try SigningKey(rawRepresentation: bytes) }
            #expect(throws: SignalError.badKey) { try VerifyingKey(rawRepresentation: bytes) }
        }
    }
}
