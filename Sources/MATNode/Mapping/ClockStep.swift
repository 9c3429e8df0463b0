import Foundation
import MATSystem

/// A step of the wall clock at a set time after start, for tests only: what a host's
/// clock step (an NTP correction, a guest restored from a snapshot) does to matd, without
/// stepping the host's clock, which the lab shares with everything else on the machine.
///
/// Read from the environment variable `MATD_TEST_CLOCK_STEP` as `<seconds>@<after>`:
/// `-1000@8` sets matd's wall clock 1000 s back 8 s after its first reading (when the
/// mapping service starts). Not a setting: matd logs a warning when it is in effect.
/// Pure: the caller passes the times.
struct ClockStep: Equatable, Sendable {
    /// Seconds added to the host's clock once the step is taken (negative: back).
    let seconds: Int64
    /// When after start the step is taken (ms of the monotonic clock).
    let afterMilliseconds: UInt64

    /// The environment variable that sets it.
    static let variable = "MATD_TEST_CLOCK_STEP"

    /// Parses `<seconds>@<after>`, seconds as a signed integer and after as a decimal
    /// number of seconds; nil for anything else.
    init?(parsing text: String) {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, let seconds = Int64(parts[0]), let after = Double(parts[1]),
              after.isFinite, after >= 0, after < 1e9 else { return nil }
        self.seconds = seconds
        afterMilliseconds = UInt64(after * 1_000)
    }

    /// The host's `wall` seconds as matd sees them `elapsed` ms after start.
    func apply(wall: UInt64, elapsed: UInt64) -> UInt64 {
        guard elapsed >= afterMilliseconds else { return wall }
        return seconds < 0 ? wall - min(wall, seconds.magnitude) : wall &+ UInt64(seconds)
    }
}

/// The wall clock matd's mapping service reads (whole seconds since 1970): TSIG's time in
/// the IMS client and the floor of sequence numbers. MATSystem's ``WallClock``, unless a
/// test steps it (``ClockStep``).
enum SteppedWallClock {
    /// The step in effect, from the environment at start; nil in normal operation.
    static let step: ClockStep? = ProcessInfo.processInfo.environment[ClockStep.variable].flatMap(ClockStep.init(parsing:))
    /// The first reading (a static is set on first use), which a step counts from.
    private static let started = MonotonicClock.milliseconds()

    /// Seconds since 1970.
    @Sendable static func seconds() -> UInt64 {
        let wall = WallClock.seconds()
        guard let step else { return wall }
        let start = started
        let now = MonotonicClock.milliseconds()
        return step.apply(wall: wall, elapsed: now - min(start, now))
    }
}
