import ArgumentParser
import MATLog

/// `--log-level`, as `matd run`, `matd cleanup` and `mat-ims run` take it: one declaration,
/// one check, one message for a level that does not exist.
public struct LogLevelOption: ParsableArguments {
    @Option(name: .long, help: "Least severe messages logged: error, warning, notice, info or debug.")
    public var logLevel = "info"

    public init() {}

    public func validate() throws {
        guard LogLevel(name: logLevel) != nil else {
            let names = LogLevel.allCases.sorted().map(\.name)
            throw ValidationError("--log-level \(logLevel): not \(names.dropLast().joined(separator: ", ")) or \(names.last ?? "")")
        }
    }

    /// Makes the level the one `Log` filters by.
    public func apply() {
        Log.level = LogLevel(name: logLevel) ?? .info
    }
}
