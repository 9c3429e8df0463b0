import Dispatch
import MATLog
import MATSystem
import Synchronization

/// Writes `peers.json` on a thread of its own, so the service thread only takes a snapshot.
///
/// Sorting, encoding and syncing 100,000 peers took the service thread more than a second
/// each time the state changed (once a second while a move's alerts were answered or
/// timed out); it answered no probe meanwhile, and its peers dropped it. Only the newest
/// snapshot is written: one that arrives while another is written replaces any that waits.
/// A failed write is logged and tried again a second later unless a newer snapshot came.
final class StateWriter: Sendable {
    private struct Queue {
        var waiting: PeerState?
        var stopped = false
        /// The last snapshot taken was not written (its write failed).
        var unsaved = false
    }

    private let path: String
    private let queue = Mutex(Queue())
    private let pending = DispatchSemaphore(value: 0)
    private let failures = Atomic<UInt64>(0)
    /// nil when the system gave no thread: then each snapshot is written at once.
    private let thread = Mutex<SystemThread?>(nil)

    /// Starts the writer's thread for the file at `path`.
    init(path: String) {
        self.path = path
        let started = SystemThread.start(name: "matd-state") { [self] in run() }
        if started == nil { log(.warning, "matd: no thread for writing \(path): the service thread writes it") }
        thread.withLock { $0 = started }
    }

    /// Writes `state` soon, in place of any snapshot still waiting.
    func submit(_ state: PeerState) {
        guard thread.withLock({ $0 != nil }) else {
            write(state)
            return
        }
        queue.withLock { $0.waiting = state }
        pending.signal()
    }

    /// Whether a snapshot waits or its write failed: the file is not up to date.
    var behind: Bool { queue.withLock { $0.waiting != nil || $0.unsaved } }

    /// Waits for the write under way to end, stops the thread, then writes `state` if
    /// given (the last word at stop).
    func close(writing state: PeerState?) {
        queue.withLock {
            $0.stopped = true
            $0.waiting = nil
        }
        pending.signal()
        thread.withLock { running in
            running?.join()
            running = nil
        }
        if let state { write(state) }
    }

    private func run() {
        while true {
            pending.wait()
            while let state = queue.withLock({ queue -> PeerState? in
                defer { queue.waiting = nil }
                return queue.stopped ? nil : queue.waiting
            }) {
                guard !write(state) else { continue }
                // Tried again in a second unless a newer snapshot (or the stop) comes first.
                if pending.wait(timeout: .now() + 1) == .timedOut {
                    queue.withLock { if $0.waiting == nil { $0.waiting = state } }
                }
                pending.signal()
                break
            }
            if queue.withLock({ $0.stopped }) { return }
        }
    }

    @discardableResult
    private func write(_ state: PeerState) -> Bool {
        var sorted = state
        sorted.peers.sort { $0.hoa < $1.hoa }
        do {
            try sorted.save(path)
            queue.withLock { $0.unsaved = false }
            return true
        } catch {
            queue.withLock { $0.unsaved = true }
            let count = failures.add(1, ordering: .relaxed).newValue
            log(.error, "matd: saving \(path) failed: \(error) (\(count) failed write(s)); retrying in 1 s")
            return false
        }
    }
}
