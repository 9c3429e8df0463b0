import Foundation
import MATLinux
import MATSystem
import Synchronization

/// Tells a service manager (systemd, `Type=notify`) how matd is: ready once the datapath
/// is up and the control socket answers, a status line with the MoAs and the peer count
/// whenever it changes, stopping when it stops, and watchdog pings only while both the
/// engine thread and the mapping service thread keep turning. Without `NOTIFY_SOCKET` it
/// does nothing and starts no thread.
final class ServiceNotifications: Sendable {
    private let notifier = SystemdNotifier()
    private let stopped = Mutex(false)
    private let thread = Mutex<SystemThread?>(nil)
    private let running: Bool

    /// Sends READY=1 and the first status, and starts the thread that keeps the status
    /// and the watchdog up to date.
    init(engine: Engine, service: MappingService) {
        running = notifier.isEnabled
        guard running else { return }
        notifier.report("matd") { try $0.ready() }
        let interval = notifier.watchdogInterval.map { UInt64($0.components.seconds) * 1_000
            + UInt64($0.components.attoseconds / 1_000_000_000_000_000) }
        let started = SystemThread.start(name: "matd-notify") { [self, notifier] in
            var lastStatus = ""
            // Pings at half the manager's interval, as sd_notify(3) advises; the status
            // is looked at once a second.
            let period = min(1_000, max(100, (interval ?? 2_000) / 2))
            var lastPing: UInt64 = 0
            while !stopped.withLock({ $0 }) {
                let status = "mobile \(service.currentAddresses.mobileDescription), \(engine.mappingCount) peer(s)"
                if status != lastStatus {
                    notifier.report("matd") { try $0.status(status) }
                    lastStatus = status
                }
                let now = MonotonicClock.milliseconds()
                if let interval, now >= lastPing + interval / 2 {
                    // Both threads must have turned within half the interval.
                    let fresh = now < engine.lastTurn + interval / 2 && now < service.lastTurn + interval / 2
                    if fresh {
                        notifier.report("matd") { try $0.watchdog() }
                        lastPing = now
                    }
                }
                usleep(UInt32(period * 1_000))
            }
        }
        if started == nil { log(.warning, "matd: no thread for the service manager's status and watchdog pings") }
        thread.withLock { $0 = started }
    }

    /// Sends STOPPING=1 and ends the thread.
    func stopping() {
        guard running else { return }
        stopped.withLock { $0 = true }
        thread.withLock { $0 }?.join()
        notifier.report("matd") { try $0.stopping() }
    }
}
