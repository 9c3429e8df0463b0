import Foundation

extension Lab {
    /// Adds `line` to the `[node]` section of the configuration file at `path` (a setting
    /// the lab's written configurations do not have: the fast path off, a metrics listener).
    func addToNodeSection(_ line: String, of path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard text.contains("[node]\n") else { throw LabError("no [node] section in \(path)") }
        try text.replacingOccurrences(of: "[node]\n", with: "[node]\n\(line)\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// `writeConfig` with `line` added to the [node] section, in a file of its own.
    func writeConfig(_ node: String, adding line: String, file: String? = nil) throws -> String {
        let path = try writeConfig(node, file: file ?? "\(node)-\(UInt32.random(in: 0...UInt32.max)).conf")
        try addToNodeSection(line, of: path)
        return path
    }
}
