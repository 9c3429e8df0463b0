import MATPacket

/// When a learned mapping is looked up in the IMS again: the timing decisions of the
/// refresh, with no I/O and the time (monotonic milliseconds) passed in, so each has a unit
/// test. The service thread takes the due mappings (``LearnedPeers/takeDueRefreshes(now:)``,
/// from a deadline heap: no walk over every mapping) and queues their lookups.
///
/// A mapping read from the IMS is read again when its record TTL runs out, as a DNS cache
/// would; one taken from a peer's alert after the TTL its registration is read with. A
/// peer that moved without alerting this node (its alert lost, or it moved while this node
/// moved too) is found again that way within one TTL.
enum MappingRefresh {
    /// How long a mapping whose refresh lookup is on its way is not asked again (ms): the
    /// answer sets the next refresh; this bounds the wait for one that never comes.
    static let answerWait: UInt64 = 60_000
    /// After a refresh that found no IMS (unreachable, nothing cached): ask again soon (ms).
    static let retryAfterFailure: UInt64 = 1_000
    /// A mapping put in on a peer's signed alert while its new MoA is challenged: read
    /// from the IMS after this long if nothing settles it first (ms).
    static let whileChallenged: UInt64 = 10_000
    /// A mapping this node could not confirm just now (restored from the state file, or
    /// put back after a failed challenge): read from the IMS at once, a second from now (ms).
    static let soon: UInt64 = 1_000

    /// The next refresh of a mapping read from the IMS at `now` with `remainingTTL` seconds
    /// left of its record's TTL: when that runs out, at least a second from now. A stale
    /// answer (served from the cache while the IMS is unreachable) is read again in a second.
    static func afterAnswer(remainingTTL: UInt64, stale: Bool, now: UInt64) -> UInt64 {
        now + (stale ? 1 : max(1, remainingTTL)) * 1_000
    }

    /// The next refresh of a mapping taken at `now` from a peer's alert whose MoA answered,
    /// registered with `lifetime` seconds: after the IMS's record TTL (`recordTTL`, nil
    /// without an `[ims]` section) or the lifetime if shorter, at least a second.
    static func afterAlert(lifetime: UInt32, recordTTL: UInt32?, now: UInt64) -> UInt64 {
        now + max(1, UInt64(min(lifetime, recordTTL ?? lifetime))) * 1_000
    }

    /// The record TTL assumed where none is configured (no `[ims]` section), seconds.
    static let defaultRecordTTL: UInt32 = 10

    /// The next refresh of a mapping an IMS answer named and a probe proved at `now`, when
    /// none is set for it yet (a first contact): after the IMS's record TTL (`recordTTL`,
    /// ``defaultRecordTTL`` when nil), at least a second.
    static func afterProvenAnswer(recordTTL: UInt32?, now: UInt64) -> UInt64 {
        now + max(1, UInt64(recordTTL ?? defaultRecordTTL)) * 1_000
    }
}

extension LearnedPeers {
    /// The HoAs whose refresh is due at `now`; each is not due again for
    /// ``MappingRefresh/answerWait``, so the lookup on its way is not queued twice (its
    /// answer or failure sets the next refresh).
    mutating func takeDueRefreshes(now: UInt64) -> [IPAddress] {
        let due = refreshes.takeDue(now: now)
        for hoa in due { self[hoa]?.expiresAt = now + MappingRefresh.answerWait }
        return due
    }

    /// `hoa`'s refresh found no IMS at `now`: it is asked again after
    /// ``MappingRefresh/retryAfterFailure``.
    mutating func refreshFailed(_ hoa: IPAddress, now: UInt64) {
        self[hoa]?.expiresAt = now + MappingRefresh.retryAfterFailure
    }
}
