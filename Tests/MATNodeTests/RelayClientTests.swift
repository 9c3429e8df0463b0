import Foundation
import MATPacket
import MATSignaling
import MATTestSupport
import Testing
@testable import MATNode

/// A node's registrations with its relay (docs/signaling.md, "Relay"): when they go, with
/// the clock in the test's hands, and that their sequence numbers, from the node's one
/// persisted counter, are taken by a relay across a restart of the node.
@Suite struct RelayClientTests {
    let moa = IPAddress("192.0.2.80")!, moved = IPAddress("192.0.2.81")!

    /// Sends what is due at each of `times`, failing those in `failing`; returns when
    /// registrations went out.
    func run(_ schedule: inout RelayRegistrationSchedule, at times: [UInt64], failing: Set<UInt64> = []) -> [UInt64] {
        var sent: [UInt64] = []
        for now in times where schedule.isDue(now: now) {
            if failing.contains(now) {
                schedule.failed(now: now)
            } else {
                schedule.sent(now: now)
                sent.append(now)
            }
        }
        return sent
    }

    @Test func aBurstAtStartThenOneEveryInterval() {
        var schedule = RelayRegistrationSchedule(interval: 15_000, retryInterval: 1_000, burst: 3, now: 0)
        schedule.follow([moa], now: 0)
        let sent = run(&schedule, at: Array(stride(from: 0, through: 50_000, by: 500)))
        // Unacknowledged, so three a second apart (a lost one costs a second), then the interval.
        #expect(sent == [0, 1_000, 2_000, 17_000, 32_000, 47_000])
        #expect(schedule.dueAt == 62_000)
    }

    @Test func aMoveStartsANewBurstAtOnce() {
        var schedule = RelayRegistrationSchedule(interval: 15_000, retryInterval: 1_000, burst: 3, now: 0)
        schedule.follow([moa], now: 0)
        _ = run(&schedule, at: [0, 1_000, 2_000])
        #expect(schedule.dueAt == 17_000)
        // The same MoAs again change nothing.
        schedule.follow([moa], now: 5_000)
        #expect(!schedule.isDue(now: 5_000))
        // A new MoA: the relay must learn the new binding before the peers' packets are lost.
        schedule.follow([moved], now: 6_000)
        #expect(schedule.isDue(now: 6_000))
        #expect(run(&schedule, at: Array(stride(from: 6_000, through: 30_000, by: 500))) == [6_000, 7_000, 8_000, 23_000])
    }

    @Test func aFailedSendIsTriedAgainAfterTheRetryInterval() {
        var schedule = RelayRegistrationSchedule(interval: 15_000, retryInterval: 1_000, burst: 3, now: 0)
        schedule.follow([moa], now: 0)
        // No route at first: tried every second, the burst still whole once it goes.
        let sent = run(&schedule, at: Array(stride(from: 0, through: 20_000, by: 250)), failing: [0, 1_000, 2_000])
        #expect(sent == [3_000, 4_000, 5_000, 20_000])
        // A failure after the burst: a second later, not an interval.
        schedule.failed(now: 20_000)
        #expect(schedule.failures == 1 && schedule.dueAt == 21_000)
        schedule.sent(now: 21_000)
        #expect(schedule.failures == 0 && schedule.dueAt == 36_000)
    }

    /// The registrations of a node restarted (a second ``SequenceSource`` on the same file)
    /// carry higher numbers than all before it: the relay takes them, and it refuses one
    /// from before the restart replayed.
    @Test func sequenceNumbersGoOnAcrossARestartAndTheRelayTakesThem() throws {
        let directory = try TemporaryDirectory(prefix: "matd-relay-sequence")
        defer { directory.remove() }
        let path = directory.file("sequence")
        let key = SigningKey.generate()
        let hoa = IPAddress("198.51.100.10")!
        let store = SequenceStore(path: path) { 1_800_000_000 }
        let first = SequenceSource(store: store)
        let before = try (0..<3).map { _ in try first.take() }
        let restarted = SequenceSource(store: SequenceStore(path: path) { 1_800_000_000 })
        let after = try restarted.take()
        #expect(after > before.max()!, "\(before) then \(after)")

        var forwarder = RelayForwarder(pinnedKeys: [hoa: key.publicKey])
        let binding = RelayTable.Binding(address: IPAddress("203.0.113.50")!, port: 40_000)
        func register(_ sequence: UInt64) -> RelayForwarder.RegistrationOutcome {
            RelayRegistration.seal(hoas: [hoa], sequence: sequence, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: key).withUnsafeBytes {
                forwarder.register($0, from: binding, now: 1_000)
            }
        }
        #expect(register(before.last!) == .accepted)
        #expect(register(after) == .accepted)
        #expect(register(before.last!) == .replayed)
    }
}
