/// The syntax of mat-ims's configuration file, the same as matd's: `[section]` headers and
/// `key = value` lines, `#` comments, repeated keys and sections allowed. Every entry keeps
/// its line number so that errors can point at it.
///
/// A copy of the pattern in MATNode's `ConfigFile` (MATIMS may not depend on MATNode); if
/// the two ever move into a shared module, this one goes.
public struct IMSConfigFile: Sendable {
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

    /// Parses `text`. An entry before any section header is an error.
    public init(parsing text: String) throws(IMSConfigError) {
        sections = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.imsTrimmed()
            if trimmed.isEmpty { continue }
            if trimmed.hasPrefix("[") {
                guard trimmed.hasSuffix("]"), trimmed.count > 2 else {
                    throw IMSConfigError(line: lineNumber, key: nil, message: "malformed section header \(trimmed)")
                }
                let name = trimmed.dropFirst().dropLast().imsTrimmed()
                guard name.allSatisfy({ $0.isLetter || $0 == "-" }) else {
                    throw IMSConfigError(line: lineNumber, key: nil, message: "malformed section name [\(name)]")
                }
                sections.append(Section(name: String(name), line: lineNumber, entries: []))
                continue
            }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw IMSConfigError(line: lineNumber, key: nil, message: "expected key = value, found \(trimmed)")
            }
            let key = trimmed[..<equals].imsTrimmed()
            let value = trimmed[trimmed.index(after: equals)...].imsTrimmed()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw IMSConfigError(line: lineNumber, key: nil, message: "malformed key \(key)")
            }
            guard !value.isEmpty else {
                throw IMSConfigError(line: lineNumber, key: String(key), message: "has no value")
            }
            guard !sections.isEmpty else {
                throw IMSConfigError(line: lineNumber, key: String(key), message: "appears before any [section]")
            }
            sections[sections.count - 1].entries.append(Entry(key: String(key), value: String(value), line: lineNumber))
        }
    }
}

/// A configuration problem, with the line and key it concerns.
public struct IMSConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based line number, or 0 when the problem is the file as a whole.
    public var line: Int
    /// The key concerned, if one.
    public var key: String?
    /// What is wrong, in words.
    public var message: String

    public init(line: Int, key: String?, message: String) {
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = line > 0 ? "line \(line): " : ""
        if let key { return "\(place)\(key): \(message)" }
        return "\(place)\(message)"
    }
}

extension Substring {
    func imsTrimmed() -> Substring {
        var result = self
        while let first = result.first, first.isWhitespace { result = result.dropFirst() }
        while let last = result.last, last.isWhitespace { result = result.dropLast() }
        return result
    }
}
