/// Signaling refusals for `matctl monitor`: at most one `refused` event a second, with the
/// counts since the last one, so a flood of forged messages cannot push moves and alerts
/// out of the event log.
struct RefusalReporter {
    static let interval: UInt64 = 1_000

    private var reported: [String: UInt64] = [:]
    private var lastAt: UInt64?

    /// Posts the refusals counted since the last event, if there are any and the last
    /// event is an interval old.
    mutating func report(_ counters: SignalingCounters, now: UInt64, to log: EventLog = .shared) {
        if let lastAt, now < lastAt + Self.interval { return }
        var since: [String: String] = [:]
        for (name, value) in counters.named where name.hasPrefix("refused_") {
            let delta = value - min(value, reported[name] ?? 0)
            if delta > 0 { since[name] = "\(delta)" }
            reported[name] = value
        }
        guard !since.isEmpty else { return }
        lastAt = now
        log.post("refused", since)
    }
}
