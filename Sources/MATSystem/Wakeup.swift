#if canImport(Glibc)
import Glibc
#endif

/// A self-pipe: lets another thread wake a thread that waits in `poll`.
public final class Wakeup: Sendable {
    /// The end to poll for `POLLIN`.
    public let readDescriptor: Int32
    private let writeDescriptor: Int32

    public init() throws(SystemError) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw SystemError("create wakeup pipe", errno: errno) }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        readDescriptor = ends[0]
        writeDescriptor = ends[1]
    }

    deinit {
        close(readDescriptor)
        close(writeDescriptor)
    }

    /// Wakes the waiter. Never blocks: a full pipe already means "wake up".
    public func signal() {
        var byte: UInt8 = 1
        _ = write(writeDescriptor, &byte, 1)
    }

    /// Empties the pipe after a wakeup.
    public func drain() {
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while read(readDescriptor, &bytes, 32) > 0 {}
    }
}
