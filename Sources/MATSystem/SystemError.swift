#if canImport(Glibc)
import Glibc
#endif

/// A failed system or library call: what was being done, and the error number or
/// library message that explains it.
public struct SystemError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What the caller was trying to do, e.g. "open TUN device mat0".
    public var operation: String
    /// The errno value, when the failure came from the kernel.
    public var errno: Int32?
    /// The library's own message, when it was not an errno (libnl's `nl_geterror`).
    public var detail: String?

    /// A failure with an errno value.
    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
        detail = nil
    }

    /// A failure explained by a message.
    public init(_ operation: String, detail: String) {
        self.operation = operation
        errno = nil
        self.detail = detail
    }

    public var description: String {
        if let errno {
            return "\(operation): \(String(cString: strerror(errno))) (errno \(errno))"
        }
        return "\(operation): \(detail ?? "failed")"
    }
}
