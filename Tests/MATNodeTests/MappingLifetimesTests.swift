import MATPacket
import Testing
@testable import MATNode

/// Registration lifetimes as a peer sees them, with the clock (ms) in the test's hands.
@Suite struct MappingLifetimesTests {
    let x = IPAddress("198.51.100.10")!
    let y = IPAddress("198.51.100.20")!

    @Test func aSequenceThatDoesNotMoveForItsLifetimeLapsesOnce() {
        let lifetimes = Lifetimes()
        #expect(lifetimes.admit(x, sequence: 7, lifetime: 30, now: 1_000))
        // Read again and again (refresh lookups, stale answers): the lifetime runs from
        // the first sight of sequence 7.
        #expect(lifetimes.admit(x, sequence: 7, lifetime: 30, now: 20_000))
        #expect(lifetimes.lapse(at: 30_999).isEmpty)
        #expect(lifetimes.nextLapse == 31_000)
        #expect(lifetimes.lapse(at: 31_000) == [x])
        #expect(lifetimes.lapse(at: 40_000).isEmpty, "reported once")
        #expect(lifetimes.nextLapse == nil)
        // The same dead mapping, read again from a server that still holds it, stays dead.
        #expect(!lifetimes.admit(x, sequence: 7, lifetime: 30, now: 41_000))
        #expect(!lifetimes.admit(x, sequence: 7, lifetime: 30, now: 90_000))
        // The node came back: a new registration is taken.
        #expect(lifetimes.admit(x, sequence: 9, lifetime: 30, now: 91_000))
        #expect(lifetimes.lapse(at: 120_999).isEmpty)
    }

    @Test func aRefreshWithANewSequenceRestartsTheLifetime() {
        let lifetimes = Lifetimes()
        #expect(lifetimes.admit(x, sequence: 7, lifetime: 30, now: 0))
        #expect(lifetimes.admit(x, sequence: 8, lifetime: 30, now: 16_000))
        #expect(lifetimes.lapse(at: 30_000).isEmpty)
        #expect(lifetimes.lapse(at: 46_000) == [x])
    }

    @Test func anAnswerPastItsLifetimeIsRefusedEvenBeforeTheLapseIsCollected() {
        let lifetimes = Lifetimes()
        #expect(lifetimes.admit(x, sequence: 7, lifetime: 10, now: 0))
        #expect(!lifetimes.admit(x, sequence: 7, lifetime: 10, now: 10_000))
    }

    @Test func mappingsWithoutALifetimeNeverLapse() {
        let lifetimes = Lifetimes()
        #expect(lifetimes.admit(x, sequence: 7, lifetime: 30, now: 0))
        // The writer stopped publishing a lifetime (an nsupdate by hand): none applies.
        #expect(lifetimes.admit(x, sequence: 8, lifetime: nil, now: 1_000))
        #expect(lifetimes.admit(y, sequence: nil, lifetime: 30, now: 0))
        #expect(lifetimes.lapse(at: .max).isEmpty)
    }

    @Test func aVerifiedAlertStartsALifetimeOfItsOwn() {
        let lifetimes = Lifetimes()
        #expect(lifetimes.admit(x, sequence: 7, lifetime: 30, now: 0))
        lifetimes.renewed(x, sequence: 12, lifetime: 30, now: 25_000)
        #expect(lifetimes.lapse(at: 54_999).isEmpty)
        // The registration that goes with the move (sequence 11, below the alert's) is news too.
        #expect(lifetimes.admit(x, sequence: 11, lifetime: 30, now: 26_000))
        #expect(lifetimes.lapse(at: 56_000) == [x])
    }

    @Test func forgettingAHoAStartsItAfresh() {
        let lifetimes = Lifetimes()
        #expect(lifetimes.admit(x, sequence: 7, lifetime: 10, now: 0))
        #expect(lifetimes.lapse(at: 10_000) == [x])
        lifetimes.forget(x)
        #expect(lifetimes.admit(x, sequence: 7, lifetime: 10, now: 11_000))
    }

    @Test func memoryIsBoundedAndLapsedEntriesGoFirst() {
        let lifetimes = Lifetimes(capacity: 2)
        #expect(lifetimes.admit(x, sequence: 1, lifetime: 10, now: 0))
        #expect(lifetimes.admit(y, sequence: 1, lifetime: 100, now: 1))
        #expect(lifetimes.lapse(at: 10_000) == [x])
        let z = IPAddress("198.51.100.30")!
        #expect(lifetimes.admit(z, sequence: 1, lifetime: 10, now: 10_001))
        #expect(lifetimes.entries.count == 2)
        #expect(lifetimes.entries[x] == nil && lifetimes.entries[y] != nil)
    }
}

/// ``MappingLifetimes`` behind a reference, so `#expect` can call its mutating members.
private final class Lifetimes {
    var value: MappingLifetimes
    init(capacity: Int = 4_096) { value = MappingLifetimes(capacity: capacity) }
    func admit(_ hoa: IPAddress, sequence: UInt64?, lifetime: UInt32?, now: UInt64) -> Bool {
        value.admit(hoa, sequence: sequence, lifetime: lifetime, now: now)
    }
    func renewed(_ hoa: IPAddress, sequence: UInt64, lifetime: UInt32, now: UInt64) {
        value.renewed(hoa, sequence: sequence, lifetime: lifetime, now: now)
    }
    func lapse(at now: UInt64) -> [IPAddress] { value.lapse(at: now) }
    func forget(_ hoa: IPAddress) { value.forget(hoa) }
    var nextLapse: UInt64? { value.nextLapse }
    var entries: [IPAddress: MappingLifetimes.Entry] { value.entries }
}
