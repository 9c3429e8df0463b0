/// The syntax of matd's and mat-ims's configuration files: `[section]` headers and
/// `key = value` lines, `#` comments, repeated keys and sections allowed. Every entry keeps
/// its line number so errors can point at it.
public struct ConfigFile: Sendable {
    /// One `key = value` line.
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: String
        public var line: Int
    }

    /// One `[name]` section and its entries, in file order.
    public struct Section: Sendable, Equatable {
        public var name: String
        public var line: Int
        public var entries: [Entry]
    }

    /// The sections in file order.
    public var sections: [Section]

    /// Parses `text`. Entries before any section header are an error: every key belongs
    /// to a section, so a misplaced line cannot silently mean something else.
    public init(parsing text: String) throws(ConfigError) {
        sections = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.trimmingWhitespace()
            if trimmed.isEmpty { continue }
            if trimmed.hasPrefix("[") {
                guard trimmed.hasSuffix("]"), trimmed.count > 2 else {
                    throw ConfigError(line: lineNumber, key: nil, message: "malformed section header \(trimmed)")
                }
                let name = trimmed.dropFirst().dropLast().trimmingWhitespace()
                guard name.allSatisfy({ $0.isLetter || $0 == "-" }) else {
                    throw ConfigError(line: lineNumber, key: nil, message: "malformed section name [\(name)]")
                }
                sections.append(Section(name: String(name), line: lineNumber, entries: []))
                continue
            }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw ConfigError(line: lineNumber, key: nil, message: "expected key = value, found \(trimmed)")
            }
            let key = trimmed[..<equals].trimmingWhitespace()
            let value = trimmed[trimmed.index(after: equals)...].trimmingWhitespace()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw ConfigError(line: lineNumber, key: nil, message: "malformed key \(key)")
            }
            guard !value.isEmpty else {
                throw ConfigError(line: lineNumber, key: String(key), message: "has no value")
            }
            guard !sections.isEmpty else {
                throw ConfigError(line: lineNumber, key: String(key), message: "appears before any [section]")
            }
            sections[sections.count - 1].entries.append(Entry(key: String(key), value: String(value), line: lineNumber))
        }
    }
}

/// A configuration problem, with the line and key it concerns.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based line number, or 0 when the problem is the file as a whole.
    public var line: Int
    /// The key concerned, if one.
    public var key: String?
    public var message: String

    public init(line: Int, key: String?, message: String) {
        self.line = line
        self.key = key
        self.message = message
    }

    /// `line N: key: message`, the form every configuration error is reported in.
    public var description: String {
        let place = line > 0 ? "line \(line): " : ""
        if let key { return "\(place)\(key): \(message)" }
        return "\(place)\(message)"
    }
}

extension Substring {
    /// The substring without leading and trailing whitespace.
    public func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first.isWhitespace { result = result.dropFirst() }
        while let last = result.last, last.isWhitespace { result = result.dropLast() }
        return result
    }
}
