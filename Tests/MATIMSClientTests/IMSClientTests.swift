import MATDNS
import MATPacket
import Testing
@testable import MATIMSClient

/// A client in front of an in-memory IMS with a hand-driven clock.
struct Harness {
    let clock = TestClock()
    let log = LogRecorder()
    let ims: FakeExchanger
    let client: IMSClient

    init(key: TSIGKey? = Fixture.keyA, maxStaleness: UInt64? = nil, zone: (inout MiniZone) -> Void = { _ in }) {
        var mini = MiniZone()
        zone(&mini)
        ims = FakeExchanger(zone: mini, clock: clock)
        let configuration = IMSClientConfiguration(names: Fixture.names, servers: [ims.server], key: key,
                                                   maxStaleness: maxStaleness, confirmationAttempts: 2,
                                                   confirmationDelayMilliseconds: 1)
        client = IMSClient(configuration: configuration, transport: ims, clock: clock.closure, log: log.logger)
    }
}

@Suite("IMS client: lookups, cache, stale answers")
struct LookupTests {
    @Test func lookupReadsMoAsSequenceAndTTL() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20"), ip("192.0.2.21")], sequence: 4, ttl: 10) }
        let answer = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(answer.moas == [ip("192.0.2.20"), ip("192.0.2.21")])
        #expect(answer.sequence == 4)
        #expect(answer.ttl == 10)
        #expect(answer.source == .ims(h.ims.server))
        #expect(!answer.isStale)
        // One TXT query and one A query, straight to the IMS, no recursion wanted.
        #expect(h.ims.requests.map { $0.questions[0].type } == [.txt, .a])
        #expect(h.ims.requests.allSatisfy { !$0.header.recursionDesired && $0.edns?.udpPayloadSize == 1232 })
        let mapping = answer.peerMapping(expiresAt: 99)
        #expect(mapping.hoa == Fixture.hoaB && mapping.sequence == 4)
        #expect(mapping.moas.map(\.address) == answer.moas)
        #expect(mapping.moas.map(\.priority) == [0, 1])
        #expect(mapping.moas.allSatisfy { $0.flags == .confirmed && $0.expiresAt == 99 })
    }

    /// Someone on the path answers without the node's key (a MoA, a key and a sequence of
    /// their own): the answer is not taken, and the forgery is counted and logged. A node
    /// without a key asks unsigned and takes unsigned answers.
    @Test func answersToSignedQueriesMustBeSignedBack() throws {
        let forged = Harness {
            $0.publish(hoa: Fixture.hoaB, moas: [ip("203.0.113.66")], sequence: UInt64.max)
            $0.unsignedAnswers = true
        }
        #expect(throws: IMSClientError.self) { try forged.client.lookup(hoa: Fixture.hoaB) }
        #expect(forged.client.statistics.unauthenticatedResponses == 1)
        #expect(forged.log.contains(.warning, "is not signed with"), "\(forged.log.all)")
        #expect(forged.ims.requests.allSatisfy { $0.tsig != nil }, "every query is signed")

        let genuine = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 4) }
        #expect(try genuine.client.lookup(hoa: Fixture.hoaB).moas == [ip("192.0.2.20")])
        let keyless = Harness(key: nil) {
            $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 4)
            $0.unsignedAnswers = true
        }
        #expect(try keyless.client.lookup(hoa: Fixture.hoaB).moas == [ip("192.0.2.20")])
        #expect(keyless.ims.requests.allSatisfy { $0.tsig == nil })
    }

    @Test func ipv6LookupAsksForAAAA() throws {
        let hoa = ip("2001:db8:100::20")
        let h = Harness { $0.publish(hoa: hoa, moas: [ip("2001:db8:2::20")], sequence: 1) }
        let answer = try h.client.lookup(hoa: hoa)
        #expect(answer.moas == [ip("2001:db8:2::20")])
        #expect(h.ims.requests.map { $0.questions[0].type } == [.txt, .aaaa])
    }

    @Test func freshEntriesComeFromTheCacheUntilTheTTLRunsOut() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 1, ttl: 10) }
        _ = try h.client.lookup(hoa: Fixture.hoaB)
        h.ims.withZone { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.30")], sequence: 2, ttl: 10) }
        h.clock.advance(9)
        let cached = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(cached.source == .cache)
        #expect(cached.moas == [ip("192.0.2.20")])
        #expect(cached.remainingTTL(at: h.clock.now) == 1)
        h.clock.advance(1)
        let refreshed = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(refreshed.source == .ims(h.ims.server))
        #expect(refreshed.moas == [ip("192.0.2.30")] && refreshed.sequence == 2)
        // Bypassing the cache, e.g. after a path failure.
        h.ims.withZone { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.40")], sequence: 3, ttl: 10) }
        #expect(try h.client.lookup(hoa: Fixture.hoaB, allowCached: false).moas == [ip("192.0.2.40")])
        let stats = h.client.statistics
        #expect(stats.lookups == 3 && stats.cacheHits == 1 && stats.staleAnswersServed == 0)
    }

    @Test func staleEntryIsServedWhileTheIMSIsUnreachable() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 1, ttl: 10) }
        _ = try h.client.lookup(hoa: Fixture.hoaB)
        h.ims.down = true
        h.clock.advance(100)
        let stale = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(stale.isStale)
        #expect(stale.moas == [ip("192.0.2.20")] && stale.sequence == 1)
        #expect(stale.remainingTTL(at: h.clock.now) == 0)
        #expect(h.client.statistics.staleAnswersServed == 1)
        #expect(h.client.statistics.named.contains { $0.name == "stale_answers_served" && $0.value == 1 })
        #expect(h.log.contains(.warning, "serving stale mapping"))
        #expect(h.log.contains(.warning, "90 s past its TTL"))
        // Back online: fresh again, not stale.
        h.ims.down = false
        let fresh = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(!fresh.isStale && fresh.source == .ims(h.ims.server))
        #expect(h.client.statistics.staleAnswersServed == 1)
    }

    @Test func unreachableWithoutCacheThrows() {
        let h = Harness()
        h.ims.down = true
        #expect(throws: IMSClientError.unreachable(.allServersFailed([DNSServerFailure(server: h.ims.server, error: .timeout)]))) {
            try h.client.lookup(hoa: Fixture.hoaB)
        }
        #expect(h.client.statistics.staleAnswersServed == 0)
    }

    @Test func staleEntriesHaveAnOptionalAgeLimit() throws {
        let h = Harness(maxStaleness: 60) { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 1, ttl: 10) }
        _ = try h.client.lookup(hoa: Fixture.hoaB)
        h.ims.down = true
        h.clock.advance(70)
        #expect(try h.client.lookup(hoa: Fixture.hoaB).isStale)
        h.clock.advance(1)
        #expect(throws: IMSClientError.self) { try h.client.lookup(hoa: Fixture.hoaB) }
    }

    @Test func authoritativeNoMappingClearsTheCache() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 1, ttl: 10) }
        _ = try h.client.lookup(hoa: Fixture.hoaB)
        h.ims.withZone { $0.records.removeAll() }
        h.clock.advance(11)
        #expect(throws: IMSClientError.noMapping(Fixture.hoaB)) { try h.client.lookup(hoa: Fixture.hoaB) }
        h.ims.down = true
        // Nothing left to serve stale.
        #expect(throws: IMSClientError.self) { try h.client.lookup(hoa: Fixture.hoaB) }
        #expect(h.client.statistics.noMapping == 1)
    }

    @Test func lookupReadsThePublicKeyAndTheCacheKeepsIt() throws {
        let h = Harness {
            $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 4, ttl: 10, publicKey: Fixture.publicKeyB)
        }
        let fresh = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(fresh.publicKey == Fixture.publicKeyB && fresh.sequence == 4)
        #expect(fresh.description.contains("seq=4 key=PUAXw+hD… ttl=10"))
        let cached = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(cached.source == .cache && cached.publicKey == Fixture.publicKeyB)
        h.ims.down = true
        h.clock.advance(100)
        let stale = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(stale.isStale && stale.publicKey == Fixture.publicKeyB)
        // A new registration without a key: the key is gone from the next answer.
        h.ims.down = false
        h.ims.withZone { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 5) }
        let keyless = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(keyless.sequence == 5 && keyless.publicKey == nil)
        #expect(!keyless.description.contains("key="))
    }

    @Test func malformedPublicKeyReadsAsNone() throws {
        let h = Harness {
            $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 4, publicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==")
        }
        let answer = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(answer.sequence == 4 && answer.moas == [ip("192.0.2.20")])
        #expect(answer.publicKey == nil)
    }

    @Test func mappingWithoutVersionHasNoSequence() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: nil) }
        let answer = try h.client.lookup(hoa: Fixture.hoaB)
        #expect(answer.sequence == nil && answer.publicKey == nil)
        #expect(answer.peerMapping().sequence == 0)
    }

    @Test func cacheEvictsTheLongestExpired() {
        var cache = MappingCache(capacity: 2)
        func answer(_ hoa: String, at time: UInt64) -> PeerMappingAnswer {
            PeerMappingAnswer(hoa: ip(hoa), moas: [], sequence: 1, ttl: 10, fetchedAt: time, source: .cache)
        }
        var keyed = answer("198.51.100.9", at: 100)
        keyed.publicKey = Fixture.publicKeyA
        var one = MappingCache(capacity: 4)
        one.store(keyed)
        #expect(one.fresh(keyed.hoa, now: 105)?.publicKey == Fixture.publicKeyA)
        #expect(one.stale(keyed.hoa, now: 500, maxStaleness: nil)?.publicKey == Fixture.publicKeyA)
        cache.store(answer("198.51.100.1", at: 100))
        cache.store(answer("198.51.100.2", at: 50))
        cache.store(answer("198.51.100.3", at: 200))
        #expect(cache.count == 2)
        #expect(cache.stale(ip("198.51.100.2"), now: 300, maxStaleness: nil) == nil)
        #expect(cache.fresh(ip("198.51.100.3"), now: 209)?.source == .cache)
        #expect(cache.fresh(ip("198.51.100.3"), now: 210) == nil)
        #expect(cache.stale(ip("198.51.100.3"), now: 210, maxStaleness: 0)?.source == .stale)
        #expect(cache.stale(ip("198.51.100.3"), now: 211, maxStaleness: 0) == nil)
    }
}

@Suite("IMS client: reverse lookups")
struct ReverseLookupTests {
    @Test func ptrHintConfirmedByForwardName() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 3) }
        let result = try h.client.reverseLookup(moa: ip("192.0.2.20"))
        #expect(result.hoa == Fixture.hoaB)
        #expect(result.mapping.sequence == 3)
        #expect(h.ims.requests.map { $0.questions[0].type } == [.ptr, .txt, .a])
    }

    @Test func ptrNotBackedByForwardNameIsRejected() throws {
        // B's PTR claims 192.0.2.99, but B's forward name does not list it.
        let h = Harness {
            $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 3)
            $0.records.append(DNSResourceRecord(name: Fixture.names.moaName(for: ip("192.0.2.99")), ttl: 10,
                                                data: .ptr(Fixture.names.hoaName(for: Fixture.hoaB))))
        }
        #expect(throws: IMSClientError.reverseNotConfirmed(moa: ip("192.0.2.99"), candidates: [Fixture.hoaB])) {
            try h.client.reverseLookup(moa: ip("192.0.2.99"))
        }
        #expect(h.client.statistics.reverseUnconfirmed == 1)
    }

    @Test func ptrOutsideTheHoAZoneIsNotFollowed() throws {
        let h = Harness {
            $0.records.append(DNSResourceRecord(name: Fixture.names.moaName(for: ip("192.0.2.20")), ttl: 10,
                                                data: .ptr(name("evil.example."))))
        }
        #expect(throws: IMSClientError.reverseNotConfirmed(moa: ip("192.0.2.20"), candidates: [])) {
            try h.client.reverseLookup(moa: ip("192.0.2.20"))
        }
        #expect(h.ims.requests.count == 1)
    }

    @Test func staleForwardAnswerNeverConfirms() throws {
        let h = Harness { $0.publish(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 3) }
        _ = try h.client.lookup(hoa: Fixture.hoaB)
        h.ims.down = true
        #expect(throws: IMSClientError.self) { try h.client.reverseLookup(moa: ip("192.0.2.20")) }
    }
}
