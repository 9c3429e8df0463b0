import MATPacket
@testable import MATNode
import Testing

/// ``DueQueue``, the deadline heap that stands in for the service's walks over every peer:
/// after any sequence of schedules, reschedules and removals it must give what a walk over
/// every key's deadline gives.
@Suite struct DueQueueTests {
    @Test func aRescheduledOrRemovedKeyComesOnlyAtItsCurrentDeadline() {
        var queue = DueQueue<Int>()
        queue.schedule(1, at: 100)
        queue.schedule(2, at: 50)
        queue.schedule(1, at: 30)
        queue.schedule(3, at: 70)
        queue.remove(3)
        #expect(queue.nextDeadline == 30 && queue.count == 2)
        #expect(queue.takeDue(now: 29).isEmpty)
        #expect(queue.takeDue(now: 100) == [1, 2], "earliest first; 1's old deadline and 3 are gone")
        #expect(queue.isEmpty && queue.nextDeadline == nil)
        queue.schedule(4, at: 10)
        queue.schedule(4, at: 20)
        queue.schedule(4, at: 10)
        #expect(queue.takeDue(now: 15) == [4], "back at an earlier deadline: once")
        #expect(queue.takeDue(now: 1_000).isEmpty)
    }

    /// Random schedules, reschedules, removals and turns of a clock, each turn's due keys
    /// and the next deadline compared with a walk over every key's deadline; the heap's
    /// stale entries are bounded.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func theQueueSaysWhatAWalkOverEveryDeadlineSays(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var queue = DueQueue<Int>()
        var reference: [Int: UInt64] = [:]
        var now: UInt64 = 0
        for step in 0..<4_000 {
            let key = random.below(60)
            switch random.below(10) {
            case 0, 1, 2, 3:
                let at = now + UInt64(random.below(200))
                queue.schedule(key, at: at)
                reference[key] = at
            case 4:
                queue.remove(key)
                reference[key] = nil
            case 5:
                queue.removeAll()
                reference.removeAll()
            default:
                now += UInt64(random.below(40))
                let walk = Set(reference.filter { $0.value <= now }.map(\.key))
                let due = queue.takeDue(now: now)
                #expect(Set(due) == walk && due.count == walk.count, "seed \(seed) step \(step)")
                let times = due.map { reference[$0]! }
                #expect(times == times.sorted(), "earliest first: seed \(seed) step \(step)")
                for key in walk { reference[key] = nil }
            }
            #expect(queue.nextDeadline == reference.values.min(), "seed \(seed) step \(step)")
            #expect(queue.count == reference.count)
            for probe in 0..<5 { #expect(queue.deadline(of: probe) == reference[probe]) }
        }
    }
}
