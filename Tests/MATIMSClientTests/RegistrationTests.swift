import MATDNS
import MATPacket
import Testing
@testable import MATIMSClient

@Suite("IMS client: registration")
struct RegistrationTests {
    let owner = Fixture.names.hoaName(for: Fixture.hoaA)

    @Test func registersAndConfirms() throws {
        let h = Harness()
        let result = try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        #expect(result.moas == [ip("192.0.2.10")] && result.sequence == 1)
        #expect(result.server == h.ims.server)
        #expect(result.confirmation.moas == [ip("192.0.2.10")] && result.confirmation.sequence == 1)
        h.ims.withZone { zone in
            #expect(zone.rrset(owner, .a) == [.a(0xC000_020A)])
            #expect(zone.rrset(owner, .txt) == [.txt(strings: ["v=1", "seq=1"])])
            #expect(zone.rrset(Fixture.names.moaName(for: ip("192.0.2.10")), .ptr) == [.ptr(owner)])
        }
        // Before any known registration the client reads the old mapping (TXT, A), then
        // updates, then confirms (TXT, A).
        #expect(h.ims.requests.map(\.header.opcode) == [.query, .query, .update, .query, .query])
        #expect(h.client.statistics.registrations == 1)
        #expect(h.log.contains(.info, "registered"))
    }

    @Test func registersThePublicKeyAndReadsItBack() throws {
        let h = Harness()
        let result = try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1,
                                           publicKey: Fixture.publicKeyA)
        #expect(result.publicKey == Fixture.publicKeyA)
        #expect(result.confirmation.publicKey == Fixture.publicKeyA && result.confirmation.sequence == 1)
        h.ims.withZone { zone in
            #expect(zone.rrset(owner, .txt) == [.txt(strings: ["v=1", "seq=1", "key=\(Fixture.publicKeyA)"])])
        }
        #expect(h.log.contains(.info, "registered 198.51.100.10 seq=1 key=11qYAYKx… ttl=10"))
        // The confirmed answer is cached with its key.
        let cached = try h.client.lookup(hoa: Fixture.hoaA)
        #expect(cached.source == .cache && cached.publicKey == Fixture.publicKeyA)
        // A peer reading the name finds the key.
        let peer = IMSClient(configuration: IMSClientConfiguration(names: Fixture.names, servers: [h.ims.server]),
                             transport: h.ims, clock: h.clock.closure)
        #expect(try peer.lookup(hoa: Fixture.hoaA).publicKey == Fixture.publicKeyA)
        // Moving keeps the key when it is given again; registering without one removes it.
        let moved = try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.11")], sequence: 2,
                                          publicKey: Fixture.publicKeyA)
        #expect(moved.confirmation.publicKey == Fixture.publicKeyA)
        let keyless = try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.11")], sequence: 3)
        #expect(keyless.publicKey == nil && keyless.confirmation.publicKey == nil)
        h.ims.withZone { #expect($0.rrset(owner, .txt) == [.txt(strings: ["v=1", "seq=3"])]) }
    }

    @Test func invalidPublicKeyIsRefusedBeforeSending() {
        let h = Harness()
        for bad in ["", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                    "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo="] {
            #expect(throws: IMSClientError.invalidPublicKey(bad)) {
                try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1, publicKey: bad)
            }
        }
        #expect(h.ims.requests.isEmpty)
    }

    @Test func confirmationChecksThePublicKey() throws {
        // The server answers NOERROR but keeps what it had: same MoAs and sequence, another key.
        let h = Harness {
            $0.publish(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1, publicKey: Fixture.publicKeyB)
            $0.ignoreUpdates = true
        }
        do {
            try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1, publicKey: Fixture.publicKeyA)
            Issue.record("registration confirmed with the wrong key")
        } catch {
            guard case .notConfirmed(let found) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(found?.publicKey == Fixture.publicKeyB && found?.sequence == 1)
        }
        // Nor does a key left over from before confirm a registration without one.
        #expect(throws: IMSClientError.self) {
            try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        }
        #expect(h.client.statistics.confirmationFailures == 2)
        #expect(h.client.statistics.registrations == 0)
    }

    @Test func moveReplacesMoAsAndDropsOldPTRs() throws {
        let h = Harness()
        try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        let moved = try h.client.register(hoa: Fixture.hoaA, moas: [ip("203.0.113.10")], sequence: 2)
        #expect(moved.removedMoAs == [ip("192.0.2.10")])
        h.ims.withZone { zone in
            #expect(zone.rrset(owner, .a) == [.a(0xCB00_710A)])
            #expect(zone.rrset(owner, .txt) == [.txt(strings: ["v=1", "seq=2"])])
            #expect(zone.rrset(Fixture.names.moaName(for: ip("192.0.2.10")), .ptr).isEmpty)
            #expect(zone.rrset(Fixture.names.moaName(for: ip("203.0.113.10")), .ptr) == [.ptr(owner)])
        }
        // The second registration knew the previous MoAs: no read before the update.
        #expect(h.ims.requests.suffix(3).map(\.header.opcode) == [.update, .query, .query])
    }

    @Test func afterARestartPreviousMoAsAreReadFromTheIMS() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 5) }
        let result = try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.11")], sequence: 6)
        #expect(result.removedMoAs == [ip("192.0.2.10")])
        h.ims.withZone { #expect($0.rrset(Fixture.names.moaName(for: ip("192.0.2.10")), .ptr).isEmpty) }
    }

    @Test func updatingAnotherNodesNameIsRefused() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 1) }
        let before = h.ims.withZone { $0.records }
        #expect(throws: IMSClientError.updateRefused(rcode: .refused, tsigError: nil, authenticated: true)) {
            try h.client.register(hoa: Fixture.hoaB, moas: [ip("192.0.2.66")], sequence: 2)
        }
        #expect(h.ims.withZone { $0.records } == before)
        #expect(h.client.statistics.refusedUpdates == 1)
        #expect(h.log.contains(.error, "REFUSED"))
    }

    @Test func wrongSecretIsRefusedAsBADSIG() throws {
        let wrong = TSIGKey(name: Fixture.keyA.name, secret: Array(repeating: 7, count: 32))
        let h = Harness(key: wrong)
        #expect(throws: IMSClientError.updateRefused(rcode: .notAuth, tsigError: .badSig, authenticated: false)) {
            try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        }
        #expect(h.ims.withZone { $0.records }.isEmpty)
    }

    /// A clock outside the fudge costs one refused update: the signed BADTIME carries the
    /// server's time, which TSIG uses from then on (ClockStepTests does it against mat-ims).
    @Test func clockOutsideTheFudgeCostsOneRefusedUpdate() throws {
        let h = Harness()
        // The server's clock (the shared TestClock) runs 1000 s ahead of the client's.
        let skewed = IMSClient(configuration: h.client.configuration, transport: h.ims,
                               clock: { [clock = h.clock] in clock.now - 1000 })
        let result = try skewed.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        #expect(result.confirmation.sequence == 1)
        #expect(skewed.clockCorrection == 1000)
        #expect(skewed.statistics.refusedUpdates == 1 && skewed.statistics.clockCorrections == 1)
        #expect(h.ims.withZone { $0.rrset(owner, .a) } == [.a(0xC000_020A)])
    }

    /// A resent update refused as a replay after its first copy was applied (the first
    /// reply was lost) counts as registered: the read-back shows this very sequence.
    @Test func replayRefusalOfAnAppliedUpdateIsASuccess() throws {
        let h = Harness { $0.refuseAppliedUpdatesAsReplays = true }
        let result = try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 7)
        #expect(result.confirmation.sequence == 7)
        #expect(h.log.contains(.info, "was applied by its first copy"))
        // Nothing applied: the refusal stands.
        let h2 = Harness { $0.refuseAppliedUpdatesAsReplays = true; $0.ignoreUpdates = true }
        #expect(throws: IMSClientError.updateRefused(rcode: .notAuth, tsigError: .badTime, authenticated: true)) {
            try h2.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 7)
        }
    }

    @Test func unsignedSuccessReplyIsNotTrusted() throws {
        let h = Harness { $0.unsignedSuccess = true }
        #expect(throws: IMSClientError.responseNotAuthenticated(.unsigned)) {
            try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        }
        #expect(h.client.statistics.unauthenticatedResponses == 1)
    }

    @Test func acceptedButNotAppliedIsNotConfirmed() throws {
        let h = Harness { $0.ignoreUpdates = true }
        #expect(throws: IMSClientError.notConfirmed(found: nil)) {
            try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        }
        #expect(h.client.statistics.confirmationFailures == 1)
        // Two confirmation attempts of two queries each.
        #expect(h.ims.requests.filter { $0.header.opcode == .query }.count == 2 + 4)
    }

    @Test func preconditions() {
        let keyless = Harness(key: nil)
        #expect(throws: IMSClientError.noKey) {
            try keyless.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        }
        let h = Harness()
        #expect(throws: IMSClientError.familyMismatch(hoa: Fixture.hoaA, moa: ip("2001:db8::1"))) {
            try h.client.register(hoa: Fixture.hoaA, moas: [ip("2001:db8::1")], sequence: 1)
        }
        #expect(h.ims.requests.isEmpty)
    }

    @Test func unreachableIMSIsReported() {
        let h = Harness()
        h.ims.down = true
        #expect(throws: IMSClientError.self) {
            try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        }
        #expect(h.log.contains(.warning, "not sent"))
    }
}

@Suite("Registration schedule")
struct RegistrationScheduleTests {
    let moas = [ip("192.0.2.10")]

    @Test func dueOnStartThenBeforeTheLifetimeRunsOut() {
        var schedule = RegistrationSchedule(lifetime: 300)
        #expect(schedule.isDue(at: 0))
        schedule.moasChanged(to: moas, at: 0)
        schedule.succeeded(moas: moas, at: 10)
        #expect(!schedule.isDue(at: 159))
        #expect(schedule.isDue(at: 160))
        #expect(schedule.nextAttempt < 10 + 300)
    }

    @Test func moaChangeIsDueAtOnce() {
        var schedule = RegistrationSchedule()
        schedule.moasChanged(to: moas, at: 0)
        schedule.succeeded(moas: moas, at: 0)
        schedule.moasChanged(to: moas, at: 5)
        #expect(!schedule.isDue(at: 5))
        schedule.moasChanged(to: [ip("203.0.113.10")], at: 6)
        #expect(schedule.isDue(at: 6))
    }

    @Test func changeDuringARegistrationIsNotLost() {
        var schedule = RegistrationSchedule()
        schedule.moasChanged(to: moas, at: 0)
        // The node moved while the registration of `moas` was in flight.
        schedule.moasChanged(to: [ip("203.0.113.10")], at: 1)
        schedule.succeeded(moas: moas, at: 2)
        #expect(schedule.isDue(at: 2))
    }

    @Test func failuresBackOffExponentially() {
        var schedule = RegistrationSchedule(initialBackoff: 1, maximumBackoff: 8)
        schedule.moasChanged(to: moas, at: 0)
        var delays: [UInt64] = []
        for now in stride(from: UInt64(100), to: 700, by: 100) {
            schedule.failed(at: now)
            delays.append(schedule.nextAttempt - now)
        }
        #expect(delays == [1, 2, 4, 8, 8, 8])
        #expect(schedule.consecutiveFailures == 6)
        // A move does not wait for the backoff.
        schedule.moasChanged(to: [ip("203.0.113.10")], at: 601)
        #expect(schedule.isDue(at: 601))
        schedule.succeeded(moas: [ip("203.0.113.10")], at: 602)
        #expect(schedule.consecutiveFailures == 0)
    }
}
