#if canImport(Glibc)
import Glibc
#endif
import MATLinux

/// The node's registration sequence number, kept in a file so that it never repeats
/// across restarts: each number is written and synced to disk before it is used.
public struct SequenceStore: Sendable {
    /// The file holding the last number handed out, in decimal.
    public let path: String

    public init(path: String) { self.path = path }

    /// The next number: one more than the last one handed out (which may have been lost
    /// in a crash after use, so never reuse it). Written with write-temp-fsync-rename, so
    /// the file always holds a whole number.
    public func next() throws(SystemError) -> UInt64 {
        let current = try read() ?? 0
        let next = current &+ 1
        let temporary = path + ".tmp"
        let text = "\(next)\n"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("write \(temporary)", errno: errno) }
        let written = write(fd, text, text.utf8.count)
        let synced = fsync(fd)
        close(fd)
        guard written == text.utf8.count, synced == 0 else { throw SystemError("write \(temporary)", errno: errno) }
        guard rename(temporary, path) == 0 else { throw SystemError("rename \(temporary) to \(path)", errno: errno) }
        return next
    }

    /// The last number handed out, or nil before the first.
    public func read() throws(SystemError) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError("read \(path)", errno: errno)
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 32)
        let count = Glibc.read(fd, &bytes, bytes.count)
        guard count > 0,
              let value = UInt64(String(decoding: bytes[0..<count], as: UTF8.self)
                  .filter { $0.isNumber }) else {
            throw SystemError("read \(path)", detail: "not a sequence number")
        }
        return value
    }
}
