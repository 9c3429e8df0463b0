import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import Testing

@Suite("Update policy: a node key writes only its own names")
struct PolicyTests {
    @Test func rolesFollowTheKeyName() {
        let policy = UpdatePolicy(testZone())
        #expect(policy.role(of: adminKey.name) == .admin)
        #expect(policy.role(of: node1) == .node(node1))
        #expect(policy.role(of: name("10.100.51.198.HOA.mat.example.")) == .node(name("10.100.51.198.hoa.mat.example.")))
        #expect(policy.role(of: transferKey.name) == .none)
        #expect(policy.role(of: name("hoa.mat.example.")) == .none)
    }

    @Test func aNodeUpdatesItsOwnNameInBothFamilies() throws {
        let core = try makeCore()
        let v4 = try send(update(node1Key) { u in
            u.deleteRRset(node1, type: .a)
            u.add(node1, ttl: 10, a("192.0.2.10"))
            u.add(node1, ttl: 10, aaaa("2001:db8:1::10"))
            u.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=7"]))
        }, to: core)
        #expect(rcode(v4) == .noError)
        let v6 = try send(update(node6Key) { $0.add(node6, ttl: 10, aaaa("2001:db8:2::10")) }, to: core)
        #expect(rcode(v6) == .noError)
        #expect(try #require(core.zone(zoneName)).rrset(at: node6, type: .aaaa) != nil)
        // Deleting all its own RRsets is allowed: they are all of permitted types.
        let wipe = try send(update(node1Key, at: baseTime + 1) { $0.deleteAllRRsets(node1) }, to: core)
        #expect(rcode(wipe) == .noError)
        #expect(try #require(core.zone(zoneName)).rrsets(at: node1) == nil)
    }

    @Test func aNodeRegistersWithItsPublicKeyInTheVersionTXT() throws {
        // The registration matd sends (MATIMSClient's RegistrationBuilder) with a key:
        // TXT "v=1" "seq=<n>" "key=<base64 Ed25519 public key>".
        let core = try makeCore()
        let publicKey = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" // RFC 8032 §7.1 test 1
        let version = DNSRecordData.txt(strings: ["v=1", "seq=3", "key=\(publicKey)"])
        let reply = try send(update(node1Key) { u in
            u.deleteRRset(node1, type: .a)
            u.deleteRRset(node1, type: .aaaa)
            u.deleteRRset(node1, type: .txt)
            u.add(node1, ttl: 10, a("192.0.2.10"))
            u.add(node1, ttl: 10, version)
            u.deleteRRset(moa("192.0.2.10"), type: .ptr)
            u.add(moa("192.0.2.10"), ttl: 10, .ptr(node1))
        }, to: core)
        #expect(rcode(reply) == .noError)
        // Read back over UDP and TCP, as peers do.
        for tcp in [false, true] {
            let answer = try query(core, node1, .txt, edns: 1232, tcp: tcp)
            #expect(rcode(answer) == .noError && answer.header.isAuthoritative)
            #expect(answer.answers.map(\.data) == [version])
            #expect(answer.answers.first?.ttl == 10)
        }
        // Another node's key cannot replace that key.
        let forged = try send(update(node2Key, at: baseTime + 1) { u in
            u.deleteRRset(node1, type: .txt)
            u.add(node1, ttl: 10, .txt(strings: ["v=1", "seq=4", "key=PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw="]))
        }, to: core)
        #expect(rcode(forged) == .refused)
        #expect(try #require(core.zone(zoneName)).rrset(at: node1, type: .txt)?.records == [version])
    }

    @Test func aNodeMayNotTouchAnotherNodesName() throws {
        let core = try makeCore()
        try send(update(node2Key) { $0.add(node2, ttl: 10, a("192.0.2.20")) }, to: core)
        var time = baseTime
        for build: (inout DNSUpdateBuilder) -> Void in [
            { $0.add(node2, ttl: 10, a("203.0.113.66")) },
            { $0.deleteRRset(node2, type: .a) },
            { $0.deleteAllRRsets(node2) },
            { $0.delete(node2, a("192.0.2.20")) },
            { $0.add(name("mat.example."), ttl: 10, a("203.0.113.66")) },
            { $0.add(name("www.mat.example."), ttl: 10, a("203.0.113.66")) },
            { $0.add(name("x.10.100.51.198.hoa.mat.example."), ttl: 10, a("203.0.113.66")) },
        ] {
            time += 1
            let reply = try send(update(node1Key, at: time, build), to: core)
            #expect(rcode(reply) == .refused)
        }
        #expect(try #require(core.zone(zoneName)).rrset(at: node2, type: .a)?.records == [a("192.0.2.20")])
        #expect(core.counters[.updatesRefusedPolicy] == 7)
    }

    @Test func aNodeMayWriteOnlyTheConfiguredTypesAtItsName() throws {
        let core = try makeCore()
        for (offset, data) in [DNSRecordData.ns(name("evil.example.")), .cname(node2), .ptr(node2),
                               .mx(preference: 1, exchange: node2)].enumerated() {
            let reply = try send(update(node1Key, at: baseTime + UInt64(offset)) { $0.add(node1, ttl: 10, data) }, to: core)
            #expect(rcode(reply) == .refused, "type \(data.type)")
        }
        // With node-types = ANY the same key may write them (except NS).
        let open = try makeCore { $0.zones[0].nodeTypes = nil }
        #expect(rcode(try send(update(node1Key) { $0.add(node1, ttl: 10, .mx(preference: 1, exchange: node2)) }, to: open)) == .noError)
        #expect(rcode(try send(update(node1Key, at: baseTime + 1) { $0.add(node1, ttl: 10, .ns(node2)) }, to: open)) == .refused)
    }

    @Test func reversePointersUnderMoAMustPointAtTheKeysOwnName() throws {
        let core = try makeCore()
        let first = moa("192.0.2.10")
        let ok = try send(update(node1Key) { $0.add(first, ttl: 10, .ptr(node1)) }, to: core)
        #expect(rcode(ok) == .noError)
        let forged = try send(update(node1Key, at: baseTime + 1) { $0.add(moa("192.0.2.11"), ttl: 10, .ptr(node2)) }, to: core)
        #expect(rcode(forged) == .refused)
        let wrongType = try send(update(node1Key, at: baseTime + 2) { $0.add(moa("192.0.2.12"), ttl: 10, a("192.0.2.12")) }, to: core)
        #expect(rcode(wrongType) == .refused)
        // node2 takes over the MoA: it may add its own PTR, not remove node1's. Its deletion
        // of the PTR set removes its own PTR only (UpdatePolicy.narrowed).
        #expect(rcode(try send(update(node2Key) { $0.add(first, ttl: 10, .ptr(node2)) }, to: core)) == .noError)
        #expect(rcode(try send(update(node2Key, at: baseTime + 1) { $0.deleteRRset(first, type: .ptr) }, to: core)) == .noError)
        #expect(try #require(core.zone(zoneName)).rrset(at: first, type: .ptr)?.records == [.ptr(node1)])
        #expect(rcode(try send(update(node2Key, at: baseTime + 2) { $0.add(first, ttl: 10, .ptr(node2)) }, to: core)) == .noError)
        #expect(rcode(try send(update(node2Key, at: baseTime + 2) { $0.delete(first, .ptr(node1)) }, to: core)) == .refused)
        #expect(rcode(try send(update(node2Key, at: baseTime + 3) { $0.deleteAllRRsets(first) }, to: core)) == .refused)
        // node1 cleans up its own pointer.
        #expect(rcode(try send(update(node1Key, at: baseTime + 3) { $0.delete(first, .ptr(node1)) }, to: core)) == .noError)
        #expect(try #require(core.zone(zoneName)).rrset(at: first, type: .ptr)?.records == [.ptr(node2)])
        #expect(rcode(try send(update(node2Key, at: baseTime + 4) { $0.deleteRRset(first, type: .ptr) }, to: core)) == .noError)
    }

    /// A node registering a MoA whose PTR still names a node that left it (killed, its
    /// mapping not expired yet): the registration goes in at once, the old node's PTR
    /// stays beside the new one, and the peers settle the two claims by reachability.
    @Test func aRegistrationAtAMoAStillClaimedByAnotherNodeGoesInAndLeavesThatClaim() throws {
        let core = try makeCore()
        let taken = moa("192.0.2.10")
        #expect(rcode(try send(update(node1Key) { u in
            u.deleteRRset(taken, type: .ptr)
            u.add(taken, ttl: 10, .ptr(node1))
        }, to: core)) == .noError)
        let registration = try send(update(node2Key) { u in
            u.deleteRRset(node2, type: .a)
            u.add(node2, ttl: 10, a("192.0.2.10"))
            u.deleteRRset(taken, type: .ptr)
            u.add(taken, ttl: 10, .ptr(node2))
        }, to: core)
        #expect(rcode(registration) == .noError)
        let zone = try #require(core.zone(zoneName))
        #expect(Set(zone.rrset(at: taken, type: .ptr)?.records ?? []) == [.ptr(node1), .ptr(node2)])
        #expect(zone.rrset(at: node2, type: .a)?.records == [a("192.0.2.10")])
        // Still not: another node's PTR by name, or the whole name.
        #expect(rcode(try send(update(node2Key, at: baseTime + 1) { $0.delete(taken, .ptr(node1)) }, to: core)) == .refused)
        #expect(rcode(try send(update(node2Key, at: baseTime + 2) { $0.deleteAllRRsets(taken) }, to: core)) == .refused)
    }

    @Test func adminKeysMayChangeAnythingInTheZone() throws {
        let core = try makeCore()
        let reply = try send(update(adminKey) { u in
            u.add(node1, ttl: 10, a("192.0.2.10"))
            u.add(node2, ttl: 10, a("192.0.2.20"))
            u.add(name("ns2.mat.example."), ttl: 3600, a("192.0.2.54"))
            u.add(zoneName, ttl: 3600, .ns(name("ns2.mat.example.")))
        }, to: core)
        #expect(rcode(reply) == .noError)
        #expect(try #require(core.zone(zoneName)).rrset(at: zoneName, type: .ns)?.records.count == 2)
    }

    @Test func keysWithoutRightsAreRefused() throws {
        let core = try makeCore()
        let reply = try send(update(transferKey) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        #expect(rcode(reply) == .refused)
    }
}
