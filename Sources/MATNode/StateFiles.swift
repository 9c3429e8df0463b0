#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux

/// Files that hold a key: whoever reads one can move this node's traffic, so matd refuses
/// a file that group or others may read.
enum SecretFile {
    /// The contents of `path`, which must be readable by its owner only. `what` names the
    /// file in errors ("key file", "signing key").
    static func read(_ path: String, what: String) throws -> Data {
        var info = stat()
        guard stat(path, &info) == 0 else { throw SystemError("read \(what) \(path)", errno: errno) }
        guard info.st_mode & 0o077 == 0 else {
            throw SystemError("\(what) \(path)",
                              detail: "readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SystemError("read \(what) \(path)", detail: "cannot read")
        }
        return data
    }
}

/// State files that must never be seen half-written: the sequence number, a new key.
enum DurableFile {
    /// Replaces `path` with `text` (mode 0600): written to a temporary file, synced, then
    /// renamed over it, so a crash leaves the old contents or the new, never a mix.
    static func replace(_ path: String, with text: String) throws(SystemError) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("write \(temporary)", errno: errno) }
        let written = write(fd, text, text.utf8.count)
        let synced = fsync(fd)
        close(fd)
        guard written == text.utf8.count, synced == 0 else { throw SystemError("write \(temporary)", errno: errno) }
        guard rename(temporary, path) == 0 else { throw SystemError("rename \(temporary) to \(path)", errno: errno) }
        // The rename itself is durable only once the directory is synced.
        let directory = (path as NSString).deletingLastPathComponent
        let directoryDescriptor = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryDescriptor >= 0 else { throw SystemError("open \(directory) to sync it", errno: errno) }
        defer { close(directoryDescriptor) }
        guard fsync(directoryDescriptor) == 0 else { throw SystemError("sync \(directory)", errno: errno) }
    }
}
