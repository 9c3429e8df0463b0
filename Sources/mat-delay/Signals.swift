#if canImport(Glibc)
import Glibc
#endif

/// The write end of the self-pipe: the signal handler writes the signal's number there,
/// and the forwarder's poll wakes on the read end. Set once before the handlers.
nonisolated(unsafe) private var signalPipeWrite: Int32 = -1

/// SIGTERM and SIGINT as a readable descriptor (the self-pipe trick), so the poll loop
/// notices them whatever it is waiting for.
struct StopSignals {
    let fd: Int32

    init() throws {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw DelayError("pipe: \(errorText())") }
        for end in ends { _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK) }
        fd = ends[0]
        signalPipeWrite = ends[1]
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        for number in [SIGTERM, SIGINT] {
            sigaddset(&stopSignals, number)
            signal(number) { number in
                var byte = UInt8(truncatingIfNeeded: number)
                _ = write(signalPipeWrite, &byte, 1)
            }
        }
        // A parent may have left them blocked (the mask survives exec: a test harness's
        // thread that spawned us, for one); the handlers would then never run.
        pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
    }

    /// The signal that arrived, if any.
    func take() -> Int32? {
        var byte: UInt8 = 0
        return read(fd, &byte, 1) == 1 ? Int32(byte) : nil
    }
}

/// "SIGTERM", "SIGINT" or the number.
func signalName(_ number: Int32) -> String {
    switch number {
    case SIGTERM: "SIGTERM"
    case SIGINT: "SIGINT"
    default: "signal \(number)"
    }
}
