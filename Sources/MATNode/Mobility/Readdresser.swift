import Foundation
import MATLinux
import Synchronization

/// Runs the `on-notify-peers` command when the kernel reports that the hypervisor
/// announced this guest after a live migration (IFLA_EVENT_NOTIFY_PEERS): the command
/// makes the guest ask its network for an address again (a fresh DHCP exchange), so a
/// guest that landed on another site takes that site's address, and the address events
/// that follow move matd like any other handoff. No hypervisor hook is needed for it.
/// ``ReaddressPolicy`` decides when; this class only starts, waits for and stops the
/// command, each run waited for on a thread of its own.
final class Readdresser: Sendable {
    /// The command's words (no shell); the interface's name is appended.
    private let command: [String]
    private let state = Mutex<(policy: ReaddressPolicy, running: [String: pid_t])>((ReaddressPolicy(), [:]))

    /// nil when no command is configured.
    init?(command: [String]?) {
        guard let command, !command.isEmpty else { return nil }
        self.command = command
    }

    /// An announcement arrived on `interface` (called on the service thread).
    func announced(on interface: String) {
        let now = MonotonicClock.milliseconds()
        if state.withLock({ $0.policy.announced(on: interface, at: now) }) {
            start(interface)
        } else {
            log(.debug, "matd: \(interface): migration announced again; its address renewal has already been started")
        }
    }

    private func start(_ interface: String) {
        let words = command + [interface]
        let line = words.joined(separator: " ")
        log("matd: \(interface): live migration announced; renewing the address: \(line)")
        let started = MonotonicClock.milliseconds()
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(words)
        } catch {
            log(.error, "matd: \(interface): the address renewal did not start: \(error)")
            finish(interface, pid: nil)
            return
        }
        state.withLock { $0.running[interface] = child.pid }
        let waiter = Thread { [self] in
            let ending = child.wait()
            let elapsed = MonotonicClock.milliseconds() - started
            if ending == .exited(0) {
                log("matd: \(interface): address renewal done in \(elapsed) ms")
            } else {
                log(.warning, "matd: \(interface): the address renewal (\(line)) \(ending) after \(elapsed) ms")
            }
            finish(interface, pid: child.pid)
        }
        waiter.name = "matd-readdress"
        waiter.start()
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(ReaddressPolicy.timeout))) { [self] in
            let overdue = state.withLock { locked in
                locked.running[interface] == child.pid && locked.policy.isOverdue(interface, at: MonotonicClock.milliseconds())
            }
            guard overdue else { return }
            log(.warning, "matd: \(interface): the address renewal still runs after \(ReaddressPolicy.timeout / 1_000) s; stopping it")
            child.terminate()
        }
    }

    /// A run ended (or never started): the policy may want another for an announcement
    /// that came meanwhile.
    private func finish(_ interface: String, pid: pid_t?) {
        let again = state.withLock { locked -> Bool in
            if let pid, locked.running[interface] == pid { locked.running[interface] = nil }
            return locked.policy.finished(on: interface, at: MonotonicClock.milliseconds())
        }
        if again { start(interface) }
    }
}
