import MATPacket
import Testing
@testable import MATNode

/// When learned mappings are looked up again (``MappingRefresh``, ``LearnedPeers``): each
/// decision, the clock passed in.
@Suite struct MappingRefreshTests {
    static let peer = IPAddress("198.51.100.20")!
    static let other = IPAddress("198.51.100.21")!

    private func learned(_ dues: [(IPAddress, UInt64)]) -> LearnedPeers {
        var learned = LearnedPeers()
        for (hoa, due) in dues {
            learned[hoa] = (PeerMapping(hoa: hoa, moas: [MoABinding(address: IPAddress("192.0.2.20")!)]), due)
        }
        return learned
    }

    @Test func anAnswerIsReadAgainWhenItsTTLRunsOutAndAStaleOneInASecond() {
        #expect(MappingRefresh.afterAnswer(remainingTTL: 10, stale: false, now: 5_000) == 15_000)
        #expect(MappingRefresh.afterAnswer(remainingTTL: 0, stale: false, now: 5_000) == 6_000, "at least a second")
        #expect(MappingRefresh.afterAnswer(remainingTTL: 300, stale: true, now: 5_000) == 6_000)
    }

    @Test func anAlertsMappingIsReadAfterTheRecordTTLOrItsLifetimeIfShorter() {
        #expect(MappingRefresh.afterAlert(lifetime: 300, recordTTL: 10, now: 1_000) == 11_000)
        #expect(MappingRefresh.afterAlert(lifetime: 5, recordTTL: 10, now: 1_000) == 6_000)
        #expect(MappingRefresh.afterAlert(lifetime: 300, recordTTL: nil, now: 1_000) == 301_000, "no IMS: its lifetime")
        #expect(MappingRefresh.afterAlert(lifetime: 0, recordTTL: 0, now: 1_000) == 2_000, "at least a second")
    }

    @Test func aProvenFirstContactIsReadAfterTheRecordTTLOrTenSecondsWithoutAnIMS() {
        #expect(MappingRefresh.afterProvenAnswer(recordTTL: 30, now: 1_000) == 31_000)
        #expect(MappingRefresh.afterProvenAnswer(recordTTL: nil, now: 1_000) == 11_000, "no [ims] section: 10 s")
        #expect(MappingRefresh.afterProvenAnswer(recordTTL: 0, now: 1_000) == 2_000, "at least a second")
    }

    /// A due mapping is asked once: not again while its lookup is on its way, for at most
    /// ``MappingRefresh/answerWait``; one not due yet is left alone.
    @Test func aDueMappingIsAskedOnceUntilItsAnswerOrTheAnswerWait() {
        var peers = learned([(Self.peer, 10_000), (Self.other, 20_000)])
        let r1 = peers.takeDueRefreshes(now: 9_999)
        #expect(r1.isEmpty)
        let r2 = peers.takeDueRefreshes(now: 10_000)
        #expect(r2 == [Self.peer])
        let r3 = peers.takeDueRefreshes(now: 10_000 + MappingRefresh.answerWait - 1)
        #expect(r3 == [Self.other])
        #expect(peers[Self.peer]?.expiresAt == 10_000 + MappingRefresh.answerWait)
        let r4 = peers.takeDueRefreshes(now: 10_000 + MappingRefresh.answerWait)
        #expect(r4 == [Self.peer],
                "an answer that never came: asked again")
    }

    @Test func aFailedRefreshIsRetriedASecondLater() {
        var peers = learned([(Self.peer, 10_000)])
        let r5 = peers.takeDueRefreshes(now: 10_000)
        #expect(r5 == [Self.peer])
        peers.refreshFailed(Self.peer, now: 12_000)
        let r6 = peers.takeDueRefreshes(now: 12_999)
        #expect(r6.isEmpty)
        let r7 = peers.takeDueRefreshes(now: 12_000 + MappingRefresh.retryAfterFailure)
        #expect(r7 == [Self.peer])
        peers.refreshFailed(Self.other, now: 12_000)
        #expect(peers[Self.other] == nil, "a failure for a peer dropped meanwhile brings nothing back")
    }
}
