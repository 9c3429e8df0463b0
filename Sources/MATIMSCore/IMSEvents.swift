import MATDNS
import Synchronization

/// Something the core did that an operator should hear about. The core does no I/O: it
/// queues these and its server (MATIMS) takes them with ``IMSCore/takeEvents()`` and
/// writes them to the log at the level it chooses.
public enum IMSEvent: Hashable, Sendable, CustomStringConvertible {
    /// The zone's name is too long for names under `hoa.`: its mappings never expire.
    case zoneWithoutExpiry(zone: DNSName)
    /// An update signed by `key` was refused: it would pass one of the zone's limits.
    case updateRefusedByLimit(key: DNSName, violation: LimitViolation)
    /// The zone's journal did not take a batch: its updates were undone and answered SERVFAIL.
    case journalCommitFailed(zone: DNSName, error: String)
    /// Expiring `name` gave a change the journal cannot encode: the mapping stays.
    case expiryNotEncodable(name: DNSName)
    /// The journal did not take `count` expiries of the zone: they stay, tried again at
    /// the next call.
    case expiryCommitFailed(zone: DNSName, count: Int, error: String)
    /// No registration renewed the mapping at `name` within its lifetime: its MoAs and PTRs went.
    case mappingExpired(name: DNSName)
    /// More events came than the queue holds between two takes; this many were dropped.
    case eventsDropped(count: Int)

    public var description: String {
        switch self {
        case .zoneWithoutExpiry(let zone):
            "\(zone) is too long for names under hoa.: its mappings never expire"
        case .updateRefusedByLimit(let key, let violation):
            "update signed by \(key) refused: \(violation)"
        case .journalCommitFailed(let zone, let error):
            "journal of \(zone) failed, the batch's updates were answered SERVFAIL: \(error)"
        case .expiryNotEncodable(let name):
            "expiring \(name): the change does not encode; kept"
        case .expiryCommitFailed(let zone, let count, let error):
            "expiring \(count) mapping(s) of \(zone) failed, retried in a second: \(error)"
        case .mappingExpired(let name):
            "\(name) expired: no registration within its lifetime"
        case .eventsDropped(let count):
            "\(count) event(s) dropped: more than \(EventQueue.capacity) between two reads"
        }
    }
}

/// The events not yet taken, bounded so that a server that never takes them (a fuzz
/// target, a test) or a flood of refused updates cannot grow it without end.
struct EventQueue: Sendable {
    static let capacity = 1024
    var events: [IMSEvent] = []
    var dropped = 0

    mutating func append(_ event: IMSEvent) {
        guard events.count < Self.capacity else {
            dropped += 1
            return
        }
        events.append(event)
    }

    mutating func take() -> [IMSEvent] {
        defer {
            events.removeAll()
            dropped = 0
        }
        return dropped > 0 ? events + [.eventsDropped(count: dropped)] : events
    }
}

extension IMSCore {
    /// The events since the last call, oldest first (see ``IMSEvent``). Cheap when there
    /// are none: the servers call it after every batch.
    public func takeEvents() -> [IMSEvent] {
        guard pendingEvents.load(ordering: .acquiring) > 0 else { return [] }
        return eventQueue.withLock { queue in
            pendingEvents.store(0, ordering: .releasing)
            return queue.take()
        }
    }

    func record(_ event: IMSEvent) {
        eventQueue.withLock { queue in
            queue.append(event)
            pendingEvents.add(1, ordering: .releasing)
        }
    }
}
