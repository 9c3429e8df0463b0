#if canImport(Glibc)
import Glibc
#endif

private final class ThreadBody {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// A joinable POSIX thread running `body`. The listeners are plain threads with blocking
/// system calls: no executor sits between a datagram and its answer.
struct IMSThread: @unchecked Sendable {
    fileprivate let handle: pthread_t

    static func start(_ body: @escaping @Sendable () -> Void) -> IMSThread? {
        let box = Unmanaged.passRetained(ThreadBody(body))
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            body.run()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            return nil
        }
        return IMSThread(handle: handle)
    }

    func join() {
        pthread_join(handle, nil)
    }

    func detach() {
        pthread_detach(handle)
    }
}
