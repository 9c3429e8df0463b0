#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATSystem
import MATTestSupport

/// How a file being received grows: a thread of the test reads its size every 5 ms until
/// `stop()`. The longest time it did not grow is how long a flow writing it stood still
/// (a move's gap, a blackhole's, a restart's), as the application saw it.
final class FileProgress: @unchecked Sendable {
    /// When a sample was taken (`MonotonicClock.seconds()`) and the file's size then.
    struct Sample { var at: Double; var size: Int64 }

    /// The longest stretch without growth: from the last sample before it to the first
    /// sample with more bytes.
    struct Stall {
        var from: Double
        var to: Double
        var seconds: Double { to - from }
    }

    private let lock = NSLock()
    private var samples: [Sample] = []
    private var stopped = false
    private var finished = false

    init(_ path: String) {
        let thread = Thread { [self] in
            defer { lock.withLock { finished = true } }
            var last: Int64 = -1
            while !lock.withLock({ stopped }) {
                var status = stat()
                let size = stat(path, &status) == 0 ? Int64(status.st_size) : 0
                if size != last {
                    let sample = Sample(at: MonotonicClock.seconds(), size: size)
                    lock.withLock { samples.append(sample) }
                    last = size
                }
                usleep(5_000)
            }
        }
        thread.start()
    }

    deinit { stop() }

    /// Stops sampling (within 5 ms).
    func stop() {
        lock.withLock { stopped = true }
        while !lock.withLock({ finished }) { usleep(1_000) }
    }

    /// The file's size now, as last sampled.
    var size: Int64 { lock.withLock { samples.last?.size ?? 0 } }

    /// Waits until the file holds at least `bytes`; false after `timeout` seconds.
    func wait(forAtLeast bytes: Int64, timeout: Double) -> Bool {
        poll(seconds: timeout, every: 0.01) { size >= bytes }
    }

    /// The longest stall that ended after `start` (monotonic seconds) and began before
    /// `end`, among the changes sampled; nil when the file never grew in that window.
    func longestStall(from start: Double, to end: Double) -> Stall? {
        let taken = lock.withLock { samples }
        return zip(taken, taken.dropFirst())
            .filter { $1.at >= start && $0.at <= end && $1.size > $0.size }
            .map { Stall(from: $0.at, to: $1.at) }
            .max { $0.seconds < $1.seconds }
    }
}
