import Foundation
import MATSystem
import Synchronization

/// What happened to the node lately, for `matctl monitor`: moves, alerts and their acks,
/// peers' new mappings, registrations, refusals. A bounded ring (the newest
/// ``capacity``), each event numbered, so a client asks for what came after the last
/// number it saw and knows from a gap in the numbers that it missed some.
public final class EventLog: Sendable {
    /// The events of this process.
    public static let shared = EventLog()

    /// The most events kept.
    public static let capacity = 1024

    private struct State {
        var next: UInt64 = 1
        var events: [MonitorEvent] = []
    }

    private let state = Mutex(State())

    init() {}

    /// Records an event of `kind` (a word: `move`, `alert`, `ack`, ...) with its details.
    public func post(_ kind: String, _ details: [String: String]) {
        let time = WallClock.secondsWithFraction()
        state.withLock { state in
            state.events.append(MonitorEvent(number: state.next, time: time, kind: kind, details: details))
            state.next += 1
            if state.events.count > Self.capacity { state.events.removeFirst(state.events.count - Self.capacity) }
        }
    }

    /// The events numbered above `after`, oldest first, and the number the next event
    /// will have. `after` nil: none, only that number (a monitor starts from now).
    public func events(after: UInt64?) -> (events: [MonitorEvent], next: UInt64) {
        state.withLock { state in
            guard let after else { return ([], state.next) }
            return (state.events.filter { $0.number > after }, state.next)
        }
    }
}

/// One event of `matctl monitor`, printed as a JSON line.
public struct MonitorEvent: Codable, Sendable, Equatable {
    /// Increases by one per event in a matd's life.
    public var number: UInt64
    /// Seconds since 1970 (UTC).
    public var time: Double
    public var kind: String
    public var details: [String: String]
}
