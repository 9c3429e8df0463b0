#if canImport(Glibc)
import Glibc
#endif
import MATLinux
import Synchronization

/// Runs the `on-notify-peers` command when the kernel reports that the hypervisor
/// announced this guest after a live migration (IFLA_EVENT_NOTIFY_PEERS): the command
/// makes the guest ask its network for an address again (a fresh DHCP exchange), so a
/// guest that landed on another site takes that site's address, and the address events
/// that follow move matd like any other handoff. No hypervisor hook is needed for it.
/// ``ReaddressPolicy`` decides when; this class only starts, waits for and stops the
/// command, each run waited for on a thread of its own (which also stops it at the
/// policy's deadline: no timer elsewhere), and tells the service thread (through
/// `wakeup`) when one ended.
final class Readdresser: Sendable {
    /// The command's words (no shell); the interface's name is appended.
    private let command: [String]
    private let wakeup: Wakeup?
    private struct State {
        var policy: ReaddressPolicy
        var running: [String: pid_t] = [:]
        /// The node's addresses when each interface's renewal was asked for.
        var before: [String: NodeAddresses] = [:]
        /// Those of the renewals that ended since the service last asked.
        var finished: [NodeAddresses] = []
    }
    private let state: Mutex<State>

    /// nil when no command is configured. A run still going after `timeout` milliseconds
    /// is stopped.
    init?(command: [String]?, wakeup: Wakeup?, timeout: UInt64 = ReaddressPolicy.defaultTimeout) {
        guard let command, !command.isEmpty else { return nil }
        self.command = command
        self.wakeup = wakeup
        state = Mutex(State(policy: ReaddressPolicy(timeout: timeout)))
    }

    /// An announcement arrived on `interface` while the node had `addresses` (called on
    /// the service thread).
    func announced(on interface: String, addresses: NodeAddresses) {
        let now = MonotonicClock.milliseconds()
        let run = state.withLock { locked in
            guard locked.policy.announced(on: interface, at: now) else { return false }
            locked.before[interface] = addresses
            return true
        }
        if run {
            start(interface)
        } else {
            log(.debug, "matd: \(interface): migration announced again; its address renewal has already been started")
        }
    }

    private func start(_ interface: String) {
        let words = command + [interface]
        let line = words.joined(separator: " ")
        log("matd: \(interface): live migration announced; renewing the address: \(line)")
        // The command starts on the thread that waits for it: no child is ever left with
        // nothing to wait for it.
        guard let waiter = SystemThread.start(name: "matd-readdress", { [self] in run(interface, words, line) }) else {
            log(.error, "matd: \(interface): the address renewal did not start: no thread to wait for it")
            finish(interface, pid: nil)
            return
        }
        waiter.detach()
    }

    /// Runs one renewal to its end, on its own thread.
    private func run(_ interface: String, _ words: [String], _ line: String) {
        let started = MonotonicClock.milliseconds()
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(words)
        } catch {
            log(.error, "matd: \(interface): the address renewal did not start: \(error)")
            finish(interface, pid: nil)
            return
        }
        let deadline = state.withLock { locked in
            locked.running[interface] = child.pid
            return locked.policy.deadline(of: interface)
        }
        let ending = wait(for: child, on: interface, until: deadline)
        let elapsed = MonotonicClock.milliseconds() - started
        if ending == .exited(0) {
            log("matd: \(interface): address renewal done in \(elapsed) ms")
        } else {
            log(.warning, "matd: \(interface): the address renewal (\(line)) \(ending) after \(elapsed) ms")
        }
        finish(interface, pid: child.pid)
    }

    /// Waits for `child` to end, and stops it (SIGTERM) when it still runs at `deadline`
    /// (monotonic milliseconds; nil: no limit).
    private func wait(for child: ChildProcess, on interface: String, until deadline: UInt64?) -> ChildProcess.Ending {
        guard let deadline else { return child.wait() }
        let now = MonotonicClock.milliseconds()
        do {
            if let ending = try child.wait(milliseconds: deadline > now ? deadline - now : 0) { return ending }
            let timeout = state.withLock { $0.policy.timeout }
            log(.warning, "matd: \(interface): the address renewal still runs after \(timeout) ms; stopping it")
            child.terminate()
        } catch {
            log(.error, "matd: \(interface): the address renewal cannot be timed (\(error)); waiting for it with no limit")
        }
        return child.wait()
    }

    /// The node's addresses at the announcement of each renewal that ended since the
    /// last call, oldest first.
    func takeFinished() -> [NodeAddresses] {
        state.withLock { locked in
            defer { locked.finished.removeAll() }
            return locked.finished
        }
    }

    /// A run ended (or never started): the policy may want another for an announcement
    /// that came meanwhile; otherwise the service hears of it.
    private func finish(_ interface: String, pid: pid_t?) {
        let again = state.withLock { locked -> Bool in
            if let pid, locked.running[interface] == pid { locked.running[interface] = nil }
            let again = locked.policy.finished(on: interface, at: MonotonicClock.milliseconds())
            if !again, let before = locked.before.removeValue(forKey: interface) { locked.finished.append(before) }
            return again
        }
        if again { start(interface) } else { wakeup?.signal() }
    }
}
