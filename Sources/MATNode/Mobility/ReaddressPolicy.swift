/// When to run the `on-notify-peers` command, with no I/O and the time passed in
/// (milliseconds), so every rule has a unit test.
///
/// A live-migrated guest's kernel reports IFLA_EVENT_NOTIFY_PEERS on the NIC once per
/// announcement round of the hypervisor, and QEMU sends several rounds (five by default,
/// over about a second). One migration should renew the address once, at the first round:
///   - the first announcement on an interface runs the command at once;
///   - announcements within `holdoff` of that run's start are the same migration and are
///     dropped;
///   - while the command runs, a later announcement (past the holdoff: another migration)
///     is kept and the command runs once more when the current run ends;
///   - a run that has not ended by its ``deadline(of:)`` (`timeout` after its start) is
///     stopped by the driver, which then reports it finished like any other.
/// Interfaces are independent: a guest with two NICs renews each on its own announcements.
struct ReaddressPolicy: Equatable {
    static let holdoff: UInt64 = 3_000
    static let defaultTimeout: UInt64 = 30_000
    /// How long a run may take before it is stopped.
    let timeout: UInt64

    init(timeout: UInt64 = Self.defaultTimeout) {
        self.timeout = timeout
    }

    private struct Interface: Equatable {
        var startedAt: UInt64
        var running: Bool
        var pending: Bool
    }
    private var interfaces: [String: Interface] = [:]

    /// An announcement arrived on `interface`; true: run the command for it now.
    mutating func announced(on interface: String, at now: UInt64) -> Bool {
        guard var state = interfaces[interface] else {
            interfaces[interface] = Interface(startedAt: now, running: true, pending: false)
            return true
        }
        if now < state.startedAt + Self.holdoff { return false }
        if state.running {
            state.pending = true
            interfaces[interface] = state
            return false
        }
        interfaces[interface] = Interface(startedAt: now, running: true, pending: false)
        return true
    }

    /// The command for `interface` ended (or was stopped); true: run it again now for an
    /// announcement that came while it ran.
    mutating func finished(on interface: String, at now: UInt64) -> Bool {
        guard var state = interfaces[interface], state.running else { return false }
        if state.pending {
            interfaces[interface] = Interface(startedAt: now, running: true, pending: false)
            return true
        }
        state.running = false
        interfaces[interface] = state
        return false
    }

    /// When the run for `interface` is overdue and must be stopped: its start plus
    /// `timeout`; nil when none runs.
    func deadline(of interface: String) -> UInt64? {
        guard let state = interfaces[interface], state.running else { return nil }
        return state.startedAt + timeout
    }
}
