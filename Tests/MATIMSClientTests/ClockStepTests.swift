import Foundation
import MATDNS
import MATPacket
import MATSystem
import Synchronization
import Testing
@testable import MATIMSClient

/// The host's clock steps back under a running client (docs/security.md, D5), against a
/// spawned mat-ims with its real fudge and replay protection: the client takes the
/// server's time from the signed BADTIME refusal and the registration goes through at
/// once, instead of being refused until the host's clock catches up (a step within the
/// 300 s fudge) or for good (a step past it).
@Suite("A clock stepped back against a spawned mat-ims", .serialized,
       .enabled(if: SpawnedIMS.binary != nil, "mat-ims is not built next to the tests"))
struct ClockStepTests {
    /// The real clock plus an offset the test sets: the step.
    final class SteppedClock: Sendable {
        let offset = Mutex<Int64>(0)
        var closure: IMSClock {
            { UInt64(Int64(WallClock.seconds()) + self.offset.withLock { $0 }) }
        }
    }

    @Test(arguments: [200, 3_600])
    func aClockSteppedBackCostsOneRefusedUpdate(seconds: Int64) throws {
        let ims = try SpawnedIMS()
        defer { ims.stop() }
        let clock = SteppedClock()
        let client = IMSClient(configuration: IMSClientConfiguration(names: Fixture.names, servers: [ims.server],
                                                                     key: Fixture.keyA),
                               transport: DNSTransport(options: DNSTransportOptions(udpTimeoutMilliseconds: 1000, rounds: 2)),
                               clock: clock.closure)
        try client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        clock.offset.withLock { $0 = -seconds }
        let started = Date()
        let result = try client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.11")], sequence: 2)
        let took = Date().timeIntervalSince(started)
        #expect(result.confirmation.sequence == 2 && result.confirmation.moas == [ip("192.0.2.11")])
        // The first copy was refused (the step mattered), the second taken at once.
        #expect(client.statistics.refusedUpdates == 1)
        #expect(client.statistics.clockCorrections == 1)
        #expect((client.clockCorrection - seconds).magnitude <= 2, "correction \(client.clockCorrection)")
        #expect(took < 5, "took \(took) s")
        // Lookups and later registrations sign with the server's time too.
        #expect(try client.lookup(hoa: Fixture.hoaA, allowCached: false).sequence == 2)
        try client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.12")], sequence: 3)
        #expect(client.statistics.refusedUpdates == 1)
    }

    /// A refusal for time whose server time is the client's own (a resent update refused
    /// as a replay) is not about the clock: nothing is learned and nothing is resent.
    @Test func aReplayRefusalAtTheRightTimeTeachesNothing() throws {
        let h = Harness { $0.refuseAppliedUpdatesAsReplays = true; $0.ignoreUpdates = true }
        #expect(throws: IMSClientError.updateRefused(rcode: .notAuth, tsigError: .badTime, authenticated: true)) {
            try h.client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 7)
        }
        // The test responder's refusal carries its own time, which is the client's: no step.
        #expect(h.client.clockCorrection == 0 && h.client.statistics.clockCorrections == 0)
    }

    /// A clock behind the server's by less than the fudge, on a first start (no update of
    /// this key before, so nothing to refuse as a replay: as against BIND and Knot, which
    /// refuse nothing within the fudge): no refusal teaches the client the time, but the
    /// signed answers carry it (``IMSClient/serverTimeAhead``), a lookup's as an update's.
    @Test func aSignedAnswerWithinTheFudgeSaysHowFarAheadTheServerIs() throws {
        let ims = try SpawnedIMS()
        defer { ims.stop() }
        let clock = SteppedClock()
        clock.offset.withLock { $0 = -120 }
        let client = IMSClient(configuration: IMSClientConfiguration(names: Fixture.names, servers: [ims.server],
                                                                     key: Fixture.keyA),
                               transport: DNSTransport(options: DNSTransportOptions(udpTimeoutMilliseconds: 1000, rounds: 2)),
                               clock: clock.closure)
        #expect(client.serverTimeAhead == nil)
        _ = try? client.lookup(hoa: Fixture.hoaB, allowCached: false)
        let ahead = try #require(client.serverTimeAhead)
        #expect((ahead - 120).magnitude <= 2, "ahead \(ahead)")
        try client.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1)
        #expect(client.statistics.refusedUpdates == 0 && client.clockCorrection == 0)
        #expect((try #require(client.serverTimeAhead) - 120).magnitude <= 2)
    }
}
