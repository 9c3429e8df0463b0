#if canImport(Glibc)
import Glibc
#endif
import CShim

/// A command matd starts and waits for (`on-notify-peers`). Started with posix_spawn and
/// the signal mask emptied and every signal's action at its default: matd blocks SIGTERM,
/// SIGINT, SIGHUP and SIGUSR2 in all its threads (one thread takes them with sigwait), and
/// a child inheriting that could not be stopped with SIGTERM.
public struct ChildProcess: Sendable {
    public let pid: pid_t

    /// How a child ended.
    public enum Ending: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        public var description: String {
            switch self {
            case .exited(let status): "exited with status \(status)"
            case .signalled(let number): "was ended by signal \(number)"
            }
        }
    }

    /// Starts `arguments[0]` (an absolute path) with `arguments`, standard input from
    /// /dev/null and matd's standard output and error.
    public static func spawn(_ arguments: [String]) throws(SystemError) -> ChildProcess {
        guard let program = arguments.first else { throw SystemError("start a command", detail: "no command") }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, program, &actions, &attributes, &argv, environ)
        guard status == 0 else { throw SystemError("start \(program)", errno: status) }
        return ChildProcess(pid: pid)
    }

    /// Waits until the child ends (blocking: call it on a thread that may wait).
    public func wait() -> Ending {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return .exited(-1) }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
        if status & 0x7f == 0 { return .exited((status >> 8) & 0xff) }
        return .signalled(status & 0x7f)
    }

    /// Waits until the child ends or `milliseconds` pass, whichever is first (blocking,
    /// as ``wait()``); nil when it still runs then, not yet waited for, so its pid stays
    /// its own until ``wait()``. Through a pidfd (Linux 5.3), with no timer or signal of
    /// its own; throws when the kernel gives none (no descriptor left).
    public func wait(milliseconds: UInt64) throws(SystemError) -> Ending? {
        let descriptor = mat_pidfd_open(pid)
        guard descriptor >= 0 else { throw SystemError("watch process \(pid)", errno: -descriptor) }
        defer { close(descriptor) }
        let (sum, overflow) = MonotonicClock.milliseconds().addingReportingOverflow(milliseconds)
        let deadline = overflow ? UInt64.max : sum
        var ended = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        while true {
            let now = MonotonicClock.milliseconds()
            let left = deadline > now ? deadline - now : 0
            let ready = poll(&ended, 1, Int32(min(left, UInt64(Int32.max))))
            if ready > 0 { return wait() }
            if ready < 0, errno != EINTR { throw SystemError("wait for process \(pid)", errno: errno) }
            if ready == 0, left <= UInt64(Int32.max) { return nil }
        }
    }

    /// Sends SIGTERM.
    public func terminate() {
        kill(pid, SIGTERM)
    }
}
