/// A peer's round trip as the answers to this node's messages measured it, smoothed as TCP
/// does (RFC 6298: a smoothed round trip and its mean deviation, gains 1/8 and 1/4), and the
/// first wait before a message to that peer is sent again: the smoothed round trip plus four
/// deviations, never under a floor (a message is never resent sooner than before) nor over a
/// ceiling. Times are milliseconds.
///
/// Why: a fixed first wait of 200 ms resends every alert whose answer takes longer, as one
/// does behind a router's standing queue (a loaded round trip of 130 ms and more at 50 ms
/// of path delay: docs/benchmarks.md, "handoff"); those copies are spurious, the first one
/// arrives. The floor keeps the 200 ms on a short path, where a lost alert costs no more
/// than it did. Only a message sent once gives a sample (Karn): the answer to a resent one
/// could be the answer to either copy.
public struct RoundTripEstimate: Sendable, Equatable {
    /// The smoothed round trip, nil before the first sample.
    public private(set) var smoothed: UInt64?
    /// Its mean deviation.
    public private(set) var deviation: UInt64 = 0
    /// How many samples were taken.
    public private(set) var samples = 0

    /// No sample yet: ``retransmitTimeout(floor:ceiling:)`` is the floor.
    public init() {}

    /// Takes one round trip measured from a message sent once to its first answer.
    public mutating func record(_ sample: UInt64) {
        let sample = min(sample, Self.sampleLimit)
        samples += 1
        guard let smoothed else {
            self.smoothed = sample
            deviation = sample / 2
            return
        }
        let difference = smoothed > sample ? smoothed - sample : sample - smoothed
        deviation = (3 * deviation + difference) / 4
        self.smoothed = (7 * smoothed + sample) / 8
    }

    /// The first wait before resending a message to this peer: smoothed round trip plus
    /// four deviations, within `floor...ceiling` (`floor` while nothing was measured).
    public func retransmitTimeout(floor: UInt64, ceiling: UInt64) -> UInt64 {
        guard let smoothed else { return floor }
        return min(max(smoothed + 4 * deviation, floor), max(floor, ceiling))
    }

    /// Samples are cut here (10 minutes) so that the arithmetic cannot overflow whatever a
    /// clock says: no answer is waited for that long.
    static let sampleLimit: UInt64 = 600_000
}
