import Foundation
import MATLinux

/// Runs `body` on a thread that entered the network namespace at `path`.
func inNamespace<R: Sendable>(_ path: String, _ body: @escaping @Sendable () throws(SystemError) -> R) throws -> R {
    let box = NamespaceResult<R>()
    let thread = Thread {
        do {
            try NetworkNamespace.enter(path: path)
            box.result = .success(try body())
        } catch {
            box.result = .failure(error)
        }
        box.done.signal()
    }
    thread.start()
    box.done.wait()
    return try box.result!.get()
}

/// What a thread in another namespace hands back (written once, before `done`).
final class NamespaceResult<R: Sendable>: @unchecked Sendable {
    var result: Result<R, any Error>?
    let done = DispatchSemaphore(value: 0)
}
