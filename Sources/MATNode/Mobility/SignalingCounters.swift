/// What the signaling did and what it refused, by metric name (`matctl stats`).
public struct SignalingCounters: Sendable, Equatable {
    /// Binding updates sent, first transmissions only.
    public var updatesSent: UInt64 = 0
    /// Binding updates sent again because no acknowledgement came.
    public var updatesRetransmitted: UInt64 = 0
    /// Acknowledgements of this node's updates.
    public var acksReceived: UInt64 = 0
    /// Updates given up on after the last retransmission.
    public var updatesUnanswered: UInt64 = 0
    /// Learned peers whose mapping was dropped because they stopped answering.
    public var peersDropped: UInt64 = 0
    /// Learned mappings dropped because their registration was not renewed within its lifetime.
    public var mappingsLapsed: UInt64 = 0
    /// Peers looked up in the IMS again because their acknowledgement was late.
    public var peersLookedUpAgain: UInt64 = 0
    /// IMS lookups started for packets to a HoA without a mapping, and those deferred
    /// because the global bound was spent (``FirstPacketLookups``).
    public var firstPacketLookups: UInt64 = 0
    public var firstPacketLookupsDeferred: UInt64 = 0
    /// Verified binding updates from peers.
    public var updatesReceived: UInt64 = 0
    /// Reachability challenges sent to a peer's announced MoA.
    public var challengesSent: UInt64 = 0
    /// Challenges from peers that this node answered.
    public var challengesAnswered: UInt64 = 0
    /// Challenges whose response never came: the announced MoA was given up.
    public var challengesUnanswered: UInt64 = 0
    /// Peers' new mappings taken into use after their MoA answered.
    public var bindingsAdopted: UInt64 = 0
    /// Acknowledgements sent.
    public var acksSent: UInt64 = 0
    /// Reachability probes sent (resends included) to a MoA an IMS answer named or an idle
    /// peer was silent at.
    public var probesSent: UInt64 = 0
    /// Probes answered by the peer from the probed MoA.
    public var probesAnswered: UInt64 = 0
    /// Probes whose last wait ended with no answer.
    public var probesUnanswered: UInt64 = 0
    /// Peers' probes this node answered.
    public var probesReceived: UInt64 = 0
    /// Learned peers dropped because they answered none of their idle probes.
    public var idlePeersDropped: UInt64 = 0
    /// MoAs taken from a HoA's mapping because another HoA answered from them.
    public var claimsSettled: UInt64 = 0
    /// Learned MoAs whose proof ran out (nothing signed from them for `proof-lifetime`),
    /// limited as a first contact's until they answer a probe.
    public var proofsLapsed: UInt64 = 0
    /// Cookie replies sent instead of handling a message, while under load.
    public var cookiesSent: UInt64 = 0
    /// Cookie replies from peers that answered a message of this node (sent again with it).
    public var cookiesReceived: UInt64 = 0
    /// Keepalives sent to peers' signaling ports from behind NAT, and received from peers
    /// behind NAT (docs/datapath.md, "Behind NAT").
    public var keepalivesSent: UInt64 = 0
    public var keepalivesReceived: UInt64 = 0
    /// Datagrams that are not a well-formed signaling message.
    public var refusedMalformed: UInt64 = 0
    /// Datagrams over the per-source or global rate limit.
    public var refusedRateLimited: UInt64 = 0
    /// Messages naming another node as receiver.
    public var refusedWrongReceiver: UInt64 = 0
    /// Messages from a HoA with no pinned or published key.
    public var refusedUnknownKey: UInt64 = 0
    /// Messages whose signature does not verify with the sender's key (forged).
    public var refusedBadSignature: UInt64 = 0
    /// Binding updates with a sequence number at or below one already accepted.
    public var refusedReplayed: UInt64 = 0
    /// Challenges, responses and acknowledgements that match nothing this node is waiting for.
    public var refusedUnexpected: UInt64 = 0

    /// From the first send of an alert to its acknowledgement, one sample per acknowledged
    /// alert: how long each peer took to follow a move.
    public var alertAcknowledged = DurationHistogram()

    /// Peers a move held whose hold ended because the IMS did not say which public address
    /// it sees in time (``PublicAddressWaits``): their traffic went before their alert.
    public var publicAddressWaitsExpired: UInt64 = 0

    public init() {}

    /// Every counter with its metric name.
    public var named: [(name: String, value: UInt64)] {
        [("updates_sent", updatesSent), ("updates_retransmitted", updatesRetransmitted),
         ("acks_received", acksReceived), ("updates_unanswered", updatesUnanswered),
         ("peers_looked_up_again", peersLookedUpAgain),
         ("first_packet_lookups", firstPacketLookups), ("first_packet_lookups_deferred", firstPacketLookupsDeferred),
         ("peers_dropped", peersDropped), ("mappings_lapsed", mappingsLapsed),
         ("public_address_waits_expired", publicAddressWaitsExpired),
         ("updates_received", updatesReceived),
         ("challenges_sent", challengesSent), ("challenges_answered", challengesAnswered),
         ("challenges_unanswered", challengesUnanswered),
         ("bindings_adopted", bindingsAdopted), ("acks_sent", acksSent),
         ("probes_sent", probesSent), ("probes_answered", probesAnswered),
         ("probes_unanswered", probesUnanswered), ("probes_received", probesReceived),
         ("idle_peers_dropped", idlePeersDropped), ("claims_settled", claimsSettled),
         ("proofs_lapsed", proofsLapsed),
         ("cookies_sent", cookiesSent), ("cookies_received", cookiesReceived),
         ("keepalives_sent", keepalivesSent), ("keepalives_received", keepalivesReceived),
         ("refused_malformed", refusedMalformed), ("refused_rate_limited", refusedRateLimited),
         ("refused_wrong_receiver", refusedWrongReceiver), ("refused_unknown_key", refusedUnknownKey),
         ("refused_bad_signature", refusedBadSignature), ("refused_replayed", refusedReplayed),
         ("refused_unexpected", refusedUnexpected)]
    }
}

/// A histogram of durations with fixed buckets, as Prometheus exposes one: the count of
/// samples at or below each bound, their sum and their number.
public struct DurationHistogram: Sendable, Equatable, Codable {
    /// Upper bounds of the buckets, milliseconds; a last bucket takes everything above.
    public static let boundsMilliseconds: [UInt64] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000]

    /// Samples per bucket (not cumulative), one more than there are bounds.
    public private(set) var buckets: [UInt64]
    /// The sum of all samples, milliseconds.
    public private(set) var sumMilliseconds: UInt64 = 0
    /// How many samples.
    public private(set) var count: UInt64 = 0

    public init() { buckets = Array(repeating: 0, count: Self.boundsMilliseconds.count + 1) }

    /// Adds one sample.
    public mutating func record(milliseconds: UInt64) {
        let index = Self.boundsMilliseconds.firstIndex { milliseconds <= $0 } ?? Self.boundsMilliseconds.count
        buckets[index] += 1
        sumMilliseconds &+= milliseconds
        count += 1
    }

    /// Samples at or below each bound, then all of them (Prometheus's `le` buckets).
    public var cumulative: [UInt64] {
        var running: UInt64 = 0
        return buckets.map { running += $0; return running }
    }
}
