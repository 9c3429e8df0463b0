import MATNode
import MATPacket
import MATSignaling
import Testing

/// What a relay lets registrations cost before their signatures are checked
/// (docs/signaling.md, "Relay"): each source address's budget, then the verifications all
/// sources share, with the clock in the test's hands and real signatures.
@Suite struct RelayAdmissionTests {
    let key = SigningKey.generate(), forger = SigningKey.generate()
    let hoa = IPAddress("198.51.100.10")!

    func address(_ n: Int) -> IPAddress { .v4(IPv4Address(203, 0, 113, UInt8(n))) }

    @Test func aFloodFromOneAddressSpendsOnlyThatAddresssBudget() {
        var admission = RelayAdmission(perSourceRate: 10, perSourceBurst: 20)
        // Any port of one address draws on the one budget: 20 at once, then none.
        let admitted = (0..<100).filter { _ in admission.admit(from: address(1), now: 0) }.count
        #expect(admitted == 20 && admission.counters.sourceBudget == 80)
        // Another address is not held back.
        let other = admission.admit(from: address(2), now: 0)
        // 10 a second: one more after 100 ms, then none again.
        let early = admission.admit(from: address(1), now: 99)
        let refilled = admission.admit(from: address(1), now: 100)
        let again = admission.admit(from: address(1), now: 100)
        #expect(other && !early && refilled && !again)
        #expect(admission.counters.sourceBudget == 82 && admission.counters.verificationBudget == 0)
    }

    @Test func theVerificationsAllSourcesShareAreBoundedAllOrNone() {
        var admission = RelayAdmission(verificationRate: 100, verificationBurst: 5)
        let four = admission.mayVerify(4, now: 0)
        // One token left: a registration of two HoAs is refused and does not spend it.
        let two = admission.mayVerify(2, now: 0)
        let last = admission.mayVerify(1, now: 0)
        let none = admission.mayVerify(1, now: 0)
        #expect(four && !two && last && !none)
        #expect(admission.counters.verificationBudget == 2)
        // 100 a second: one more every 10 ms.
        let refilled = admission.mayVerify(1, now: 10)
        let spent = admission.mayVerify(1, now: 10)
        #expect(refilled && !spent)
    }

    @Test func aRegistrationFloodCostsAtMostTheVerificationBudget() {
        var forwarder = RelayForwarder(admission: RelayAdmission(perSourceRate: 1, perSourceBurst: 2,
                                                                 verificationRate: 10, verificationBurst: 3),
                                       pinnedKeys: [hoa: key.publicKey])
        let forged = RelayRegistration.seal(hoas: [hoa], sequence: 9, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: forger)
        // From 50 ports of one address: two are read (and their signatures fail), 48 not even read.
        for port in 0..<50 {
            _ = register(&forwarder, forged, from: .init(address: address(1), port: UInt16(40_000 + port)), now: 0)
        }
        #expect(forwarder.counters.badSignatures == 2 && forwarder.counters.refusedForSourceBudget == 48)
        // From 50 addresses: one verification left in the shared budget, then none.
        for n in 2..<52 {
            _ = register(&forwarder, forged, from: .init(address: address(n), port: 7541), now: 0)
        }
        #expect(forwarder.counters.badSignatures == 3 && forwarder.counters.refusedForVerificationBudget == 49)
        #expect(forwarder.counters.registrationsRefused == 100 && forwarder.counters.registrations == 0)
        // The genuine node waits for the budget like everyone else (a keepalive interval
        // later its next registration goes through), then is taken.
        let genuine = RelayRegistration.seal(hoas: [hoa], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: key)
        let node = RelayTable.Binding(address: address(100), port: 7541)
        #expect(register(&forwarder, genuine, from: node, now: 0) == .overVerificationBudget)
        #expect(register(&forwarder, genuine, from: node, now: 100) == .accepted)
        let counts = Dictionary(uniqueKeysWithValues: forwarder.counters.named)
        #expect(counts["refused_source_budget"] == 48 && counts["refused_verification_budget"] == 50
                && counts["registrations_accepted"] == 1)
    }

    @Test func aReplayIsRefusedWithoutAVerification() {
        // One verification in all, never refilled: the genuine registration spends it.
        var forwarder = RelayForwarder(admission: RelayAdmission(verificationRate: 0, verificationBurst: 1),
                                       pinnedKeys: [hoa: key.publicKey])
        let node = RelayTable.Binding(address: address(1), port: 7541)
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [hoa], sequence: 5, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: key), from: node, now: 0)
                == .accepted)
        // Older sequence numbers, even forged ones from elsewhere, are replays: refused as
        // such, with no verification left to spend.
        for sequence in 1...5 {
            let replay = RelayRegistration.seal(hoas: [hoa], sequence: UInt64(sequence), nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: forger)
            #expect(register(&forwarder, replay, from: .init(address: address(2), port: 7541), now: 10) == .replayed)
        }
        #expect(forwarder.counters.refusedForVerificationBudget == 0 && forwarder.counters.badSignatures == 0)
        // A newer one must be verified, and the budget is spent.
        #expect(register(&forwarder, RelayRegistration.seal(hoas: [hoa], sequence: 6, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: forger),
                         from: .init(address: address(2), port: 7541), now: 10) == .overVerificationBudget)
    }
}
