import Foundation

/// A fresh directory made with `mkdtemp` under the temporary directory, for a test's files;
/// `remove()` deletes it with everything in it (call it in a `defer`, which also keeps the
/// value alive for as long as the test uses its path).
public struct TemporaryDirectory: Sendable {
    /// The directory's absolute path.
    public let path: String

    /// Makes `<temporary directory>/<prefix>.XXXXXX`.
    public init(prefix: String = "mat-test") throws {
        var template = Array("\(FileManager.default.temporaryDirectory.path)/\(prefix).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestSupportError("mkdtemp \(prefix): errno \(errno)") }
        path = String(cString: made)
    }

    /// `name` inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    /// The names of the entries in the directory, sorted.
    public var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// Deletes the directory and everything in it.
    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A path named `name` in a fresh ``TemporaryDirectory`` that is removed, with whatever
/// was made there (the file, a rename's temporary), when the last reference goes: as a
/// suite's stored property, after each test, whether it passed or not.
public final class TemporaryFile: Sendable {
    /// The file's absolute path (nothing is made there).
    public let path: String
    private let directory: TemporaryDirectory

    /// Makes `<temporary directory>/<prefix>.XXXXXX/` for `name`.
    public init(_ name: String, prefix: String = "mat-test") throws {
        directory = try TemporaryDirectory(prefix: prefix)
        path = directory.file(name)
    }

    deinit { directory.remove() }
}
