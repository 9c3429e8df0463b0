import MATLog
import Testing

@Suite struct LogTests {
    @Test func journalLinesCarryTheirPriority() {
        #expect(Log.format(.warning, "matd: peer silent", journal: true) == "<4>matd: peer silent\n")
        #expect(Log.format(.info, "matd: up", journal: false) == "matd: up\n")
        #expect(Log.format(.error, "two\nlines\n", journal: true) == "<3>two lines\n", "one message, one journal entry")
        #expect(LogLevel.allCases.map(\.rawValue) == [3, 4, 5, 6, 7])
    }

    @Test func levelsByNameAndOrder() {
        #expect(LogLevel(name: "warning") == .warning && LogLevel(name: "DEBUG") == .debug)
        #expect(LogLevel(name: "verbose") == nil)
        #expect(LogLevel.error < .warning && LogLevel.info < .debug)
    }
}
