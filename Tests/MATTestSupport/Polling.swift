#if canImport(Glibc)
import Glibc
#endif
import MATSystem

/// Calls `condition` every `interval` seconds until it holds or `seconds` have passed on
/// the monotonic clock (a test that steps the wall clock does not move it); whether it
/// held, checked once more at the end. For state another thread or process changes.
public func poll(seconds: Double, every interval: Double = 0.05, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = MonotonicClock.seconds() + seconds
    while MonotonicClock.seconds() < deadline {
        if try condition() { return true }
        usleep(UInt32(interval * 1_000_000))
    }
    return try condition()
}

/// As ``poll(seconds:every:_:)``, but throws when `condition` never held: "no `what`
/// within `seconds` s".
public func waitUntil(_ what: String, seconds: Double, every interval: Double = 0.05,
                      _ condition: () throws -> Bool) throws {
    guard try poll(seconds: seconds, every: interval, condition) else {
        let shown = seconds == seconds.rounded() ? "\(Int(seconds))" : "\(seconds)"
        throw TestSupportError("no \(what) within \(shown) s")
    }
}

/// A helper's failure, with what went wrong.
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
