import MATPacket

/// Which HoAs were seen within the last one to two `period`s, in bounded memory whatever
/// their number: two generations of a Bloom filter (2^20 bits each, 128 KiB, two bits a
/// HoA from a hash seeded anew in each process, so nobody can pick HoAs that collide), the
/// older dropped every `period`. No false negatives; false positives grow with the HoAs
/// seen in two periods (0.06 % at 18,000, 5 % at 180,000). Pure: the time (monotonic
/// milliseconds) is passed in.
struct RecentHoAs {
    static let bits = 1 << 20
    let period: UInt64
    private var current = [UInt64](repeating: 0, count: RecentHoAs.bits / 64)
    private var previous = [UInt64](repeating: 0, count: RecentHoAs.bits / 64)
    /// When `current` was started; nil before the first use.
    private var since: UInt64?

    init(period: UInt64) {
        precondition(period > 0)
        self.period = period
    }

    /// Whether `hoa` was inserted within the last one to two periods at `now`.
    mutating func contains(_ hoa: IPAddress, now: UInt64) -> Bool {
        rotate(now: now)
        let (first, second) = Self.positions(hoa)
        return (Self.test(current, first) && Self.test(current, second))
            || (Self.test(previous, first) && Self.test(previous, second))
    }

    /// Remembers `hoa` from `now`.
    mutating func insert(_ hoa: IPAddress, now: UInt64) {
        rotate(now: now)
        let (first, second) = Self.positions(hoa)
        current[first >> 6] |= 1 << UInt64(first & 63)
        current[second >> 6] |= 1 << UInt64(second & 63)
    }

    private mutating func rotate(now: UInt64) {
        guard let since else {
            self.since = now
            return
        }
        guard now >= since + period else { return }
        // Two periods or more of silence: both generations are out of date.
        if now >= since + 2 * period {
            for index in previous.indices { previous[index] = 0 }
        } else {
            swap(&current, &previous)
        }
        for index in current.indices { current[index] = 0 }
        self.since = now
    }

    private static func positions(_ hoa: IPAddress) -> (Int, Int) {
        var hasher = Hasher()
        hasher.combine(hoa)
        let value = UInt64(bitPattern: Int64(hasher.finalize()))
        let mask = UInt64(bits - 1)
        return (Int(value & mask), Int((value >> 32) & mask))
    }

    private static func test(_ words: [UInt64], _ position: Int) -> Bool {
        words[position >> 6] & (1 << UInt64(position & 63)) != 0
    }
}
