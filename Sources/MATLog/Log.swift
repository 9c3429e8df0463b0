#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// How severe a log line is, numbered as syslog and journald number priorities.
public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case error = 3
    case warning = 4
    case notice = 5
    case info = 6
    case debug = 7

    /// `error`, `warning`, `notice`, `info` or `debug`, as `--log-level` takes it.
    public init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = level
    }

    public var name: String {
        switch self {
        case .error: "error"
        case .warning: "warning"
        case .notice: "notice"
        case .info: "info"
        case .debug: "debug"
        }
    }

    /// More severe first: `error < warning`.
    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The one logging path of matd, mat-ims and the IMS client: one line per message on
/// standard error, whole lines written with one `write` so threads never interleave.
/// Under systemd, when standard error is the journal (`JOURNAL_STREAM` names it), each
/// line starts with its priority as `<N>`, which journald takes as the line's priority
/// (`journalctl -p warning` then shows only what matters); elsewhere the line is as given.
/// Lines less severe than `level` are dropped.
public enum Log {
    private static let threshold = Atomic<Int>(LogLevel.info.rawValue)
    private static let toJournal = Atomic<Bool>(standardErrorIsTheJournal())

    /// The least severe level written (default `info`).
    public static var level: LogLevel {
        get { LogLevel(rawValue: threshold.load(ordering: .relaxed)) ?? .info }
        set { threshold.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// Writes `message` at `level`, unless it is less severe than ``level``.
    public static func write(_ level: LogLevel, _ message: String) {
        guard level.rawValue <= threshold.load(ordering: .relaxed) else { return }
        let line = format(level, message, journal: toJournal.load(ordering: .relaxed))
        _ = line.utf8CString.withUnsafeBufferPointer { buffer in
            Glibc.write(2, buffer.baseAddress, buffer.count - 1)
        }
    }

    /// The line written for `message`: a `<N>` priority prefix for the journal, one
    /// newline at the end, none inside (a newline in a message would split it into lines
    /// the journal takes at the default priority).
    public static func format(_ level: LogLevel, _ message: String, journal: Bool) -> String {
        var text = message
        while text.hasSuffix("\n") { text.removeLast() }
        text = text.replacingNewlines()
        return (journal ? "<\(level.rawValue)>" : "") + text + "\n"
    }

    /// Whether `JOURNAL_STREAM` ("device:inode", set by systemd) is standard error's.
    static func standardErrorIsTheJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return value == "\(info.st_dev):\(info.st_ino)"
    }
}

private extension String {
    func replacingNewlines() -> String {
        guard contains(where: \.isNewline) else { return self }
        return String(map { $0.isNewline ? " " : $0 })
    }
}
