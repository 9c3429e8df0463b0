import MATCommandLine
import MATLog
import Testing

/// `--log-level` as matd and mat-ims take it: one option group, one check, one message.
@Suite(.serialized) struct LogLevelOptionTests {
    @Test func aKnownLevelIsTakenAndApplied() throws {
        let saved = Log.level
        defer { Log.level = saved }
        let option = try LogLevelOption.parse(["--log-level", "warning"])
        option.apply()
        #expect(Log.level == .warning)
        #expect(try LogLevelOption.parse([]).logLevel == "info")
    }

    @Test func anUnknownLevelIsAUsageErrorNamingTheChoices() {
        do {
            _ = try LogLevelOption.parse(["--log-level", "loud"])
            Issue.record("--log-level loud was accepted")
        } catch {
            let message = LogLevelOption.message(for: error)
            #expect(message == "--log-level loud: not error, warning, notice, info or debug", "\(message)")
        }
    }
}
