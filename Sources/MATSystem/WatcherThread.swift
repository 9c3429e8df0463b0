import Dispatch
import Synchronization

/// A thread that repeats a round of work (read the firewall, the bound services, the fast
/// path's sets), sleeps between rounds, can be woken early, and is stopped and joined by
/// its owner: the stop flag, the wakeup and the join in one place, so no watcher forgets
/// to wake a sleeping thread before joining it (a stop would then wait out its sleep).
public final class WatcherThread: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let wakeup = DispatchSemaphore(value: 0)
    private let thread = Mutex<SystemThread?>(nil)

    public init() {}

    /// Starts `body` on a thread named `name` (see ``SystemThread/start(name:stackSize:_:)``);
    /// false when the system has no thread to give (the caller reports it). `body` loops
    /// while ``sleep(milliseconds:)`` returns true (or ``isStopping`` is false).
    public func start(name: String, _ body: @escaping @Sendable () -> Void) -> Bool {
        let started = SystemThread.start(name: name, body)
        thread.withLock { $0 = started }
        return started != nil
    }

    /// Whether ``stop()`` was called: the body returns when it sees it.
    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Waits `milliseconds`, or less when woken (``wake()``, ``stop()``); whether the body
    /// should go on (false once stopping).
    @discardableResult
    public func sleep(milliseconds: UInt64) -> Bool {
        if isStopping { return false }
        _ = wakeup.wait(timeout: .now() + .milliseconds(Int(min(milliseconds, UInt64(Int32.max)))))
        return !isStopping
    }

    /// Ends the current sleep now (new work to look at); a wake while the body works ends
    /// its next sleep at once.
    public func wake() { wakeup.signal() }

    /// Stops the thread and waits for it (a round under way is finished first). Does
    /// nothing when it never started or was stopped already.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        wakeup.signal()
        thread.withLock { running in
            running?.join()
            running = nil
        }
    }
}
