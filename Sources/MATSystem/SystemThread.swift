#if canImport(Glibc)
import Glibc
#endif
import CSystem

/// A joinable POSIX thread running a closure: for loops around blocking system calls
/// (listeners, the packet engine), where no executor should sit between a datagram and
/// its answer.
public struct SystemThread: @unchecked Sendable {
    private let handle: pthread_t

    /// Starts `body` on a new thread named `name` (at most 15 bytes are kept), with a stack
    /// of `stackSize` bytes (nil: the system's default, `ulimit -s`); nil when the system
    /// has no thread to give (the caller reports it).
    public static func start(name: String, stackSize: Int? = nil,
                             _ body: @escaping @Sendable () -> Void) -> SystemThread? {
        let box = Unmanaged.passRetained(Body(body))
        var handle = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if let stackSize { pthread_attr_setstacksize(&attributes, stackSize) }
        let result = pthread_create(&handle, &attributes, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            body.run()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            return nil
        }
        _ = mat_thread_set_name(handle, String(name.utf8.prefix(15))!)
        return SystemThread(handle: handle)
    }

    /// Waits for the thread to end.
    public func join() {
        pthread_join(handle, nil)
    }

    /// Lets the thread end on its own; it can no longer be joined.
    public func detach() {
        pthread_detach(handle)
    }

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}
