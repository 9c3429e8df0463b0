import MATPacket
import Testing
@testable import MATSignaling

/// Random and mutated inputs: nothing traps, and whatever verifies is canonical (sealing
/// the decoded message gives back the very same bytes).
@Suite("Signal codec: random inputs")
struct RandomInputTests {
    /// Opens and verifies `bytes`; when they verify, checks they are exactly what sealing
    /// the decoded message with the same key produces. Returns whether they verified.
    @discardableResult
    func check(_ bytes: [UInt8], key: SigningKey = Fixture.keyA) -> Bool {
        guard let unverified = try? SignalCodec.open(bytes) else { return false }
        #expect(bytes.count >= 52 + 9 + 64 && bytes.count <= SignalCodec.maximumLength)
        guard let message = try? unverified.verify(with: key.publicKey) else { return false }
        #expect(message.type == unverified.type && message.sequence == unverified.sequence)
        #expect(message.sender == unverified.sender && message.receiver == unverified.receiver)
        #expect(SignalCodec.seal(message, with: key) == bytes, "verified bytes are not canonical")
        return true
    }

    @Test func randomByteStrings() {
        var rng = SplitMix64(seed: 0x5EED_0001)
        let header = Array("MATs".utf8) + [1]
        for round in 0..<20_000 {
            let length = Int.random(in: 0...300, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Most with a valid magic and version, so the later checks are reached too.
            if round % 4 != 0 && bytes.count >= header.count {
                bytes.replaceSubrange(0..<header.count, with: header)
                if round % 2 == 0 && bytes.count > 8 {
                    bytes[5] = UInt8.random(in: 1...4, using: &rng)
                    bytes[6] = 0
                    bytes[7] = 0
                }
            }
            #expect(!check(bytes))
        }
    }

    @Test func mutationsOfValidMessages() {
        var rng = SplitMix64(seed: 0x5EED_0002)
        let seeds = Fixture.allMessages.map { SignalCodec.seal($0, with: Fixture.keyA) }
        var verified = 0, resignedVerified = 0
        for _ in 0..<20_000 {
            var bytes = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<6, using: &rng) {
                case 0, 1:  // change a byte
                    let i = Int.random(in: 0..<bytes.count, using: &rng)
                    bytes[i] = UInt8.random(in: 0...255, using: &rng)
                case 2:  // flip a bit in the header or body
                    let i = Int.random(in: 0..<min(bytes.count, 52 + 24), using: &rng)
                    bytes[i] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
                case 3:  // insert 17 random bytes (an address's worth) into the body
                    let i = Int.random(in: 52...max(52, bytes.count - 64), using: &rng)
                    bytes.insert(contentsOf: (0..<17).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: min(i, bytes.count))
                case 4:  // delete a few bytes
                    let i = Int.random(in: 0..<bytes.count, using: &rng)
                    bytes.removeSubrange(i..<min(bytes.count, i + Int.random(in: 1...17, using: &rng)))
                default:  // cut short
                    bytes.removeLast(Int.random(in: 0...min(bytes.count, 80), using: &rng))
                }
                if bytes.isEmpty { break }
            }
            if check(bytes) { verified += 1 }
            // Signed again, so the body decoder sees the mutation too.
            if check(resign(bytes)) { resignedVerified += 1 }
        }
        // A mutated message must not verify unless the mutation undid itself.
        #expect(verified < 200)
        // Re-signed mutations reach the body decoder, and some still decode.
        #expect(resignedVerified > 100)
    }
}
