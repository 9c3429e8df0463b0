import Foundation
import MATConfig

/// Reading the examples out of the Markdown docs, for ``DocExamplesTests``: fenced blocks,
/// configuration files (in blocks and in `cat > FILE <<'EOF'` heredocs), command lines in
/// shell blocks and code spans, settings tables.
enum DocText {
    /// A fenced block: the line number of its opening fence (1-based), its info string
    /// (`sh`, `ini`, `sh vm1`, empty) and its lines.
    struct Block {
        var line: Int
        var info: String
        var lines: [String]
    }

    static func fencedBlocks(in text: String) -> [Block] {
        let lines = text.components(separatedBy: "\n")
        var blocks: [Block] = []
        var index = 0
        while index < lines.count {
            let opening = lines[index].trimmingCharacters(in: .whitespaces)
            guard opening.hasPrefix("```") else { index += 1; continue }
            var end = index + 1
            while end < lines.count && !lines[end].trimmingCharacters(in: .whitespaces).hasPrefix("```") { end += 1 }
            blocks.append(Block(line: index + 1, info: String(opening.dropFirst(3)).trimmingCharacters(in: .whitespaces),
                                lines: Array(lines[(index + 1)..<min(end, lines.count)])))
            index = end + 1
        }
        return blocks
    }

    /// The lines outside fenced blocks, with their 1-based numbers.
    static func proseLines(in text: String) -> [(line: Int, text: String)] {
        var inside = false
        var result: [(Int, String)] = []
        for (index, line) in text.components(separatedBy: "\n").enumerated() {
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("```") { inside.toggle(); continue }
            if !inside { result.append((index + 1, line)) }
        }
        return result
    }

    // MARK: configuration files

    enum ConfigKind { case matd, matIMS }

    struct ConfigExample {
        var place: String
        var kind: ConfigKind
        var text: String

        /// Whether this is a snippet of a `[node]` (no `home-address`), to be read inside
        /// docs/config.md's full example.
        var isFragment: Bool { !text.components(separatedBy: "\n").contains { DocText.entry($0)?.key == "home-address" } }

        /// The example as written, and once with each commented-out alternative
        /// (`# key = value` where `key = ...` is set) in place of the line it stands for.
        func variants() -> [(label: String, text: String, isFragment: Bool)] {
            let lines = text.components(separatedBy: "\n")
            var result = [(label: "as written", text: text, isFragment: isFragment)]
            for line in lines {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard trimmed.hasPrefix("#"), let alternative = DocText.entry(String(trimmed.dropFirst())),
                      lines.contains(where: { DocText.entry($0)?.key == alternative.key }) else { continue }
                let replaced = lines.map { DocText.entry($0)?.key == alternative.key ? String(trimmed.dropFirst()) : $0 }
                result.append((label: "with `\(trimmed)`", text: replaced.joined(separator: "\n"), isFragment: isFragment))
            }
            return result
        }
    }

    /// `key = value` on an uncommented line (its trailing comment dropped), else nil.
    static func entry(_ line: String) -> (key: String, value: String)? {
        let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard let match = code.wholeMatch(of: /\s*([a-z][a-z0-9-]*)\s*=\s*(\S.*?)\s*/) else { return nil }
        return (String(match.output.1), String(match.output.2))
    }

    static func values(of key: String, in text: String) -> [String] {
        text.components(separatedBy: "\n").compactMap { entry($0) }.filter { $0.key == key }.map(\.value)
    }

    /// Every matd or mat-ims configuration file the docs show: blocks with their section
    /// headers, and files a shell block writes with a heredoc.
    static func configurations(in documents: [(path: String, text: String)]) -> [ConfigExample] {
        var examples: [ConfigExample] = []
        for (path, text) in documents {
            for block in fencedBlocks(in: text) {
                if block.info.hasPrefix("sh") {
                    var index = 0
                    while index < block.lines.count {
                        defer { index += 1 }
                        guard let match = block.lines[index].firstMatch(of: /cat\s+>\s*(\S+)\s+<<\s*'?EOF'?/) else { continue }
                        let target = String(match.output.1)
                        let kind: ConfigKind
                        if target.hasSuffix("matd.conf") { kind = .matd } else if target.hasSuffix("mat-ims.conf") {
                            kind = .matIMS
                        } else { continue }
                        let body = block.lines[(index + 1)...].prefix { $0 != "EOF" }
                        examples.append(ConfigExample(place: "\(path):\(block.line + 1 + index) (\(target))",
                                                      kind: kind, text: body.joined(separator: "\n")))
                        index += body.count
                    }
                    continue
                }
                let headers = block.lines.compactMap { $0.wholeMatch(of: /\[([a-z-]+)\]\s*/)?.output.1 }
                if headers.contains(where: { ["node", "peer", "ims", "relay"].contains($0) }) {
                    examples.append(ConfigExample(place: "\(path):\(block.line)", kind: .matd,
                                                  text: block.lines.joined(separator: "\n")))
                } else if headers.contains(where: { ["server", "zone"].contains($0) }) {
                    examples.append(ConfigExample(place: "\(path):\(block.line)", kind: .matIMS,
                                                  text: block.lines.joined(separator: "\n")))
                }
            }
        }
        return examples
    }

    /// docs/config.md's full example (its "## Example" section), the frame snippets are read in.
    static func baseExample() throws -> String {
        let doc = try DocExamplesTests.document("docs/config.md")
        guard let heading = doc.range(of: "\n## Example\n"),
              let block = fencedBlocks(in: String(doc[heading.upperBound...])).first, block.info == "ini" else {
            throw LabError("docs/config.md has no ## Example with an ini block")
        }
        return block.lines.joined(separator: "\n")
    }

    /// `fragment` read into `base`: the keys it sets replace the base's in the section of
    /// the same name (with `replacing` false they are added after them); its `[peer]`s and
    /// sections the base lacks are added.
    static func merge(_ fragment: String, into base: String, replacing: Bool = true) -> String {
        guard var sections = try? ConfigFile(parsing: base).sections,
              let extra = try? ConfigFile(parsing: fragment).sections else { return fragment }
        for section in extra {
            if section.name != "peer", let index = sections.firstIndex(where: { $0.name == section.name }) {
                let keys = Set(section.entries.map(\.key))
                if replacing { sections[index].entries.removeAll { keys.contains($0.key) } }
                sections[index].entries += section.entries
            } else {
                sections.append(section)
            }
        }
        return sections.map { section in
            (["[\(section.name)]"] + section.entries.map { "\($0.key) = \($0.value)" }).joined(separator: "\n")
        }.joined(separator: "\n\n") + "\n"
    }

    /// The TSIG key names a mat-ims configuration refers to: its `admin-key`s and
    /// `allow-transfer = key NAME`s.
    static func keyNamesReferenced(in text: String) -> [String] {
        values(of: "admin-key", in: text)
            + values(of: "allow-transfer", in: text).filter { $0.hasPrefix("key ") }.map { String($0.dropFirst(4)) }
    }

    /// The name of a `key "NAME" { ... };` clause.
    static func keyName(_ line: Substring) -> String? {
        line.firstMatch(of: /key "([^"]+)"/).map { String($0.output.1) }
    }

    // MARK: settings tables and the parsers' keys

    /// The backticked keys in the first column of the table under the heading that starts
    /// with `heading`, up to the next heading.
    static func tableKeys(in doc: String, heading: String) -> Set<String> {
        let lines = doc.components(separatedBy: "\n")
        guard let start = lines.firstIndex(where: { $0.hasPrefix(heading) }) else { return [] }
        var keys: Set<String> = []
        for line in lines[(start + 1)...] {
            if line.hasPrefix("#") { break }
            guard line.hasPrefix("|") else { continue }
            let cell = line.split(separator: "|", omittingEmptySubsequences: true).first ?? ""
            for match in cell.matches(of: /`([a-z][a-z0-9-]*)`/) { keys.insert(String(match.output.1)) }
        }
        return keys
    }

    /// The `no, default VALUE` entries of the table under `heading` (docs/config.md's form),
    /// key and value; defaults that are no value (`none`, `<state-directory>/...`) are left out.
    static func tableDefaults(in doc: String, heading: String) -> [(key: String, value: String)] {
        let lines = doc.components(separatedBy: "\n")
        guard let start = lines.firstIndex(where: { $0.hasPrefix(heading) }) else { return [] }
        var defaults: [(String, String)] = []
        for line in lines[(start + 1)...] {
            if line.hasPrefix("#") { break }
            let cells = line.split(separator: "|", omittingEmptySubsequences: true)
            guard cells.count >= 2, let key = cells[0].firstMatch(of: /`([a-z][a-z0-9-]*)`/)?.output.1,
                  let value = cells[1].firstMatch(of: /default `?([^`\s,;]+)`?/)?.output.1,
                  value != "none", !value.contains("<") else { continue }
            defaults.append((String(key), String(value)))
        }
        return defaults
    }

    /// The string labels of the `case "..."` lines in `source` between the first `from`
    /// and the next `to`: the keys a hand-written parser's switch takes.
    static func caseLabels(in source: String, from: String, to: String) throws -> Set<String> {
        guard let start = source.range(of: from), let end = source.range(of: to, range: start.upperBound..<source.endIndex) else {
            throw LabError("the parser source no longer has \(from) ... \(to): update DocExamplesTests")
        }
        var labels: Set<String> = []
        for line in source[start.upperBound..<end.lowerBound].split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("case \"") else { continue }
            for match in trimmed.matches(of: /"([a-z][a-z0-9-]*)"/) { labels.insert(String(match.output.1)) }
        }
        return labels
    }

    // MARK: command lines

    /// One use of matd, matctl or mat-ims in a shell block or code span: the words after
    /// the program's name up to the end of the command (`;`, `|`, `>`, `&&`, a comment).
    struct CommandUse {
        var tool: String
        var words: [String]
        var line: Int
        var text: String
        /// False in a block without an info string, which may be output rather than
        /// commands (`matd CPU 1.81 s`): there only known subcommands' flags are checked.
        var strict: Bool
    }

    /// A script under Tools/ or Interop/ run in a shell block or code span.
    struct ToolUse {
        var script: String
        var subcommand: String?
        var line: Int
    }

    /// Where a command was found.
    enum Origin { case shellBlock, bareBlock, codeSpan }

    /// The commands in `text`: each line of a shell block (or of a block without an info
    /// string) and each code span, split into simple commands.
    static func commands(in text: String) -> [(line: Int, words: [String], origin: Origin)] {
        var pieces: [(Int, String, Origin)] = []
        for block in fencedBlocks(in: text) where block.info.hasPrefix("sh") || block.info.isEmpty {
            for (offset, line) in block.lines.enumerated() {
                pieces.append((block.line + 1 + offset, line, block.info.isEmpty ? .bareBlock : .shellBlock))
            }
        }
        for (line, prose) in proseLines(in: text) {
            for span in prose.matches(of: /`([^`]+)`/) { pieces.append((line, String(span.output.1), .codeSpan)) }
        }
        var result: [(Int, [String], Origin)] = []
        for (line, piece, origin) in pieces {
            let code = piece.components(separatedBy: " #").first ?? piece
            for command in code.split(whereSeparator: { ";|()&>`".contains($0) }) {
                var words = command.split(whereSeparator: \.isWhitespace).map(String.init)
                // What runs the command rather than being it.
                while let first = words.first, ["sudo", "exec", "$", "time"].contains(first) || first.contains(/^[A-Z_][A-Z0-9_]*=/) {
                    words.removeFirst()
                }
                if !words.isEmpty { result.append((line, words, origin)) }
            }
        }
        return result
    }

    static func commandLines(in text: String) -> [CommandUse] {
        commands(in: text).compactMap { line, words, origin in
            let program = (words[0] as NSString).lastPathComponent
            guard ["matd", "matctl", "mat-ims"].contains(program) else { return nil }
            // `[--zone Z]` in a synopsis is the flag --zone.
            let rest = words.dropFirst().map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }
            return CommandUse(tool: program, words: Array(rest), line: line, text: words.joined(separator: " "),
                              strict: origin != .bareBlock)
        }
    }

    static func toolLines(in text: String) -> [ToolUse] {
        commands(in: text).compactMap { line, words, origin in
            let script = words[0].hasPrefix("./") ? String(words[0].dropFirst(2)) : words[0]
            guard script.hasPrefix("Tools/") || script.hasPrefix("Interop/"),
                  !script.contains(where: { "{<*".contains($0) }) else { return nil }
            // A code span naming a file or folder (`Tools/Fuzzing/Sources/FuzzX/FuzzX.swift`,
            // a placeholder) is not a command.
            if origin == .codeSpan && words.count == 1
                && (script.hasSuffix("/") || (script as NSString).lastPathComponent.contains(".")) { return nil }
            let subcommand = words.dropFirst().first.flatMap { $0.first?.isLetter == true ? $0 : nil }
            return ToolUse(script: script, subcommand: subcommand, line: line)
        }
    }

    /// The subcommands an ArgumentParser `--help` lists.
    static func subcommands(inHelp help: String) -> Set<String> {
        guard let start = help.range(of: "SUBCOMMANDS:") else { return [] }
        return Set(help[start.upperBound...].split(separator: "\n").compactMap { line in
            line.wholeMatch(of: /\ \ ([a-z][a-z-]*)(\ .*)?/).map { String($0.output.1) }
        })
    }

    /// The subcommand ArgumentParser's `--help` marks `(default)`.
    static func defaultSubcommand(inHelp help: String) -> String? {
        help.firstMatch(of: /\n  ([a-z][a-z-]*) \(default\)/).map { String($0.output.1) }
    }
}
