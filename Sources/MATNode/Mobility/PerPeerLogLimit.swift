/// A log line that comes once per peer (an alert unanswered, a peer dropped): at most
/// ``perWindow`` lines in each ``window`` ms, the rest counted and told in one summary
/// line once the window ends. A move that 100,000 learned peers leave unanswered logged
/// 200,000 lines, itself a cost in proportion to the table and a log nobody can read.
/// Pure: the caller passes the time (monotonic milliseconds) and writes the lines.
struct PerPeerLogLimit {
    let perWindow: Int
    let window: UInt64
    private var windowStart: UInt64?
    private var logged = 0
    /// Lines left out in the current window, not yet summarised.
    private(set) var suppressed = 0

    init(perWindow: Int = 10, window: UInt64 = 10_000) {
        self.perWindow = perWindow
        self.window = window
    }

    /// Whether one more line is written at `now` (else it is counted), and how many were
    /// left out in the window that ended before it, for a summary written first.
    mutating func admit(now: UInt64) -> (write: Bool, summary: Int?) {
        let summary = takeSummary(now: now)
        if windowStart == nil {
            windowStart = now
            logged = 0
        }
        guard logged < perWindow else {
            suppressed += 1
            return (false, summary)
        }
        logged += 1
        return (true, summary)
    }

    /// How many lines were left out in a window that has ended by `now` (nil: none, or the
    /// window still runs); a later line starts a new window.
    mutating func takeSummary(now: UInt64) -> Int? {
        guard let start = windowStart, now >= start + window else { return nil }
        windowStart = nil
        defer { suppressed = 0 }
        return suppressed > 0 ? suppressed : nil
    }

    /// When a summary is due: the end of a window that left lines out.
    var summaryDueAt: UInt64? { suppressed > 0 ? windowStart.map { $0 + window } : nil }
}
