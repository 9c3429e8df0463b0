import Testing
@testable import MATNode

/// The movement debounce, with the clock in the test's hands.
@Suite struct MovementDebounceTests {
    @Test func aBurstIsReadTwoMillisecondsAfterItsLastEvent() {
        var debounce = MovementDebounce()
        #expect(debounce.dueAt == nil)
        debounce.eventArrived(at: 1_000)
        #expect(debounce.dueAt == 1_002)
        debounce.eventArrived(at: 1_001)
        #expect(debounce.dueAt == 1_003)
    }

    @Test func aLongBurstIsReadAtMostAHundredMillisecondsAfterItsStart() {
        var debounce = MovementDebounce()
        for now in stride(from: UInt64(1_000), to: 1_200, by: 1) { debounce.eventArrived(at: now) }
        #expect(debounce.dueAt == 1_100)
    }

    @Test func readingEndsTheBurst() {
        var debounce = MovementDebounce()
        debounce.eventArrived(at: 1_000)
        debounce.didRead(at: 1_002, afterEvents: true)
        #expect(debounce.dueAt == nil)
        debounce.eventArrived(at: 1_500)
        #expect(debounce.dueAt == 1_502, "a new burst gets a new cap")
    }

    /// A move caught half way (the old address gone, the new one not there yet) waits
    /// for the new address's event, or for the rest of `vanishWait`.
    @Test func aReadingThatFindsAnAddressGoneEarlyInABurstWaitsForTheNewOne() {
        var debounce = MovementDebounce()
        debounce.eventArrived(at: 1_000)
        let waits = debounce.addressesVanished(at: 1_002)
        #expect(waits)
        #expect(debounce.dueAt == 1_050, "read again at the end of the wait at the latest")
        debounce.eventArrived(at: 1_010)
        #expect(debounce.dueAt == 1_012, "the new address's event is read as usual")
        let stillWaits = debounce.addressesVanished(at: 1_050)
        #expect(!stillWaits, "past the wait the loss stands")
        debounce.didRead(at: 1_050, afterEvents: true)
        #expect(debounce.dueAt == nil)
    }

    @Test func aLossOutsideABurstStands() {
        var debounce = MovementDebounce()
        debounce.readNow(at: 1_000)
        let waits = debounce.addressesVanished(at: 1_000)
        #expect(!waits, "the start or a rebind: nothing to wait for")
    }

    @Test func aStormWaitsForHalfASecondOfQuietThenReadsOnce() {
        var debounce = MovementDebounce()
        var now: UInt64 = 10_000
        var reads = 0
        // 50 flaps, 100 ms apart: read whenever due, as the service does.
        for _ in 0..<50 {
            debounce.eventArrived(at: now)
            now += 100
            if let due = debounce.dueAt, due <= now {
                debounce.didRead(at: due, afterEvents: true)
                reads += 1
            }
        }
        #expect(reads == MovementDebounce.stormReads)
        #expect(debounce.dueAt == now - 100 + MovementDebounce.stormQuiet)
        let quietAt = debounce.dueAt!
        debounce.didRead(at: quietAt, afterEvents: true)
        // Over: the next move is read as quickly as the first.
        #expect(!debounce.isStorm(at: quietAt + 1))
        debounce.eventArrived(at: quietAt + 10)
        #expect(debounce.dueAt == quietAt + 12)
    }

    @Test func quickReadingsAreNoStormOnceTheWindowHasPassed() {
        var debounce = MovementDebounce()
        for now: UInt64 in [1_000, 1_100, 1_200, 1_300] {
            debounce.eventArrived(at: now)
            debounce.didRead(at: now + 2, afterEvents: true)
        }
        #expect(debounce.isStorm(at: 1_400))
        #expect(!debounce.isStorm(at: 2_400))
        debounce.eventArrived(at: 2_400)
        #expect(debounce.dueAt == 2_402)
    }

    @Test func movesHalfASecondApartAreNoStormEvenWithSeveralReadingsEach() {
        var debounce = MovementDebounce()
        for move in 0..<10 {
            let start = UInt64(1_000 + move * 500)
            // One move: three readings within 20 ms (link, IPv4, IPv6 addresses).
            for offset: UInt64 in [0, 8, 16] {
                debounce.eventArrived(at: start + offset)
                #expect(debounce.dueAt == start + offset + MovementDebounce.quiet, "move \(move)")
                debounce.didRead(at: start + offset + 2, afterEvents: true)
            }
        }
    }

    @Test func aStormLastsAsLongAsEventsKeepComing() {
        var debounce = MovementDebounce()
        for now: UInt64 in [1_000, 1_100, 1_200, 1_300] {
            debounce.eventArrived(at: now)
            debounce.didRead(at: now + 2, afterEvents: true)
        }
        // Ten seconds of events 400 ms apart: never a reading, the window long gone.
        for now in stride(from: UInt64(1_400), through: 11_400, by: 400) {
            debounce.eventArrived(at: now)
            #expect(debounce.dueAt == now + MovementDebounce.stormQuiet)
        }
    }

    @Test func readingsNobodysEventsCausedDoNotMakeAStorm() {
        var debounce = MovementDebounce()
        for now: UInt64 in [1_000, 1_010, 1_020, 1_030] {
            debounce.readNow(at: now)
            debounce.didRead(at: now, afterEvents: false)
        }
        debounce.eventArrived(at: 1_040)
        #expect(debounce.dueAt == 1_042)
    }
}
