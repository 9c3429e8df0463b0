/// What the server counts. One counter per outcome, so that tests can assert exactly
/// which path a request took and operators can see refusals by reason.
public enum IMSCounter: Int, CaseIterable, Sendable, CustomStringConvertible {
    case queries
    case queriesNXDomain
    case queriesNoData
    case queriesRefused
    case responsesTruncated
    case updatesAccepted
    case updatesNoChange
    case updatesRefusedUnsigned
    case updatesRefusedPolicy
    case updatesRefusedPrerequisite
    case updatesRefusedNotAuth
    case updatesRefusedNotZone
    case updatesRefusedFormErr
    case updatesRefusedReplay
    case updatesRefusedLimit
    case updatesFailedJournal
    case tsigBadKey
    case tsigBadSig
    case tsigBadTime
    case tsigBadTrunc
    case tsigFormErr
    case malformedDropped
    case malformedFormErr
    case notImplemented
    case badVersion
    case axfrServed
    case ixfrServed
    case transfersRefused
    case notifySent
    case notifyAcknowledged
    case notifyGaveUp
    case tcpConnections
    case tcpConnectionsRejected
    case tcpConnectionsRejectedPerSource
    case tcpIdleClosed
    case tcpStalledClosed
    case rrlDropped
    case rrlSlipped
    case rrlTSIGExempt
    case journalCompactions
    case mappingsExpired

    /// The name shown in logs and the `counters.ims.` CH TXT answer.
    public var description: String {
        switch self {
        case .queries: "queries"
        case .queriesNXDomain: "queries-nxdomain"
        case .queriesNoData: "queries-nodata"
        case .queriesRefused: "queries-refused"
        case .responsesTruncated: "responses-truncated"
        case .updatesAccepted: "updates-accepted"
        case .updatesNoChange: "updates-no-change"
        case .updatesRefusedUnsigned: "updates-refused-unsigned"
        case .updatesRefusedPolicy: "updates-refused-policy"
        case .updatesRefusedPrerequisite: "updates-refused-prerequisite"
        case .updatesRefusedNotAuth: "updates-refused-notauth"
        case .updatesRefusedNotZone: "updates-refused-notzone"
        case .updatesRefusedFormErr: "updates-refused-formerr"
        case .updatesRefusedReplay: "updates-refused-replay"
        case .updatesRefusedLimit: "updates-refused-limit"
        case .updatesFailedJournal: "updates-failed-journal"
        case .tsigBadKey: "tsig-badkey"
        case .tsigBadSig: "tsig-badsig"
        case .tsigBadTime: "tsig-badtime"
        case .tsigBadTrunc: "tsig-badtrunc"
        case .tsigFormErr: "tsig-formerr"
        case .malformedDropped: "malformed-dropped"
        case .malformedFormErr: "malformed-formerr"
        case .notImplemented: "notimp"
        case .badVersion: "badvers"
        case .axfrServed: "axfr-served"
        case .ixfrServed: "ixfr-served"
        case .transfersRefused: "transfers-refused"
        case .notifySent: "notify-sent"
        case .notifyAcknowledged: "notify-acknowledged"
        case .notifyGaveUp: "notify-gave-up"
        case .tcpConnections: "tcp-connections"
        case .tcpConnectionsRejected: "tcp-connections-rejected"
        case .tcpConnectionsRejectedPerSource: "tcp-connections-rejected-per-source"
        case .tcpIdleClosed: "tcp-idle-closed"
        case .tcpStalledClosed: "tcp-stalled-closed"
        case .rrlDropped: "rrl-dropped"
        case .rrlSlipped: "rrl-slipped"
        case .rrlTSIGExempt: "rrl-tsig-exempt"
        case .journalCompactions: "journal-compactions"
        case .mappingsExpired: "mappings-expired"
        }
    }
}

/// A set of counter values.
public struct IMSCounters: Sendable, Equatable {
    private var values = [Int](repeating: 0, count: IMSCounter.allCases.count)

    /// Every counter at zero.
    public init() {}

    /// One counter's value.
    public subscript(counter: IMSCounter) -> Int {
        get { values[counter.rawValue] }
        set { values[counter.rawValue] = newValue }
    }

    /// Adds `amount` to `counter` (wrapping, never trapping).
    public mutating func add(_ counter: IMSCounter, _ amount: Int = 1) {
        values[counter.rawValue] &+= amount
    }

    /// Adds every counter of `other`.
    public mutating func merge(_ other: IMSCounters) {
        for i in values.indices { values[i] &+= other.values[i] }
    }

    /// `name value` pairs of the non-zero counters (all of them with `includeZero`).
    public func lines(includeZero: Bool = false) -> [String] {
        IMSCounter.allCases.compactMap { c in
            let v = self[c]
            return (v != 0 || includeZero) ? "\(c) \(v)" : nil
        }
    }
}
