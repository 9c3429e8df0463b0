import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import Testing

@Suite("Zone transfers: AXFR, IXFR, multi-message TSIG")
struct TransferTests {
    let local = IPEndpoint("127.0.0.1:40000", defaultPort: 53)!
    let remote = IPEndpoint("192.0.2.77:40000", defaultPort: 53)!

    func transferRequest(_ type: DNSType, serial: UInt32? = nil) throws -> [UInt8] {
        var message = DNSMessage(header: DNSHeader(id: 42), questions: [DNSQuestion(name: zoneName, type: type)])
        if let serial {
            message.authorities = [DNSResourceRecord(name: zoneName, ttl: 0, data: .soa(DNSSOA(
                primary: name("ns.mat.example."), mailbox: name("h.mat.example."), serial: serial,
                refresh: 0, retry: 0, expire: 0, minimum: 0)))]
        }
        return try message.encode()
    }

    func records(_ replies: [[UInt8]]) throws -> [DNSResourceRecord] {
        try replies.flatMap { try DNSMessage(bytes: $0).answers }
    }

    @Test func axfrIsSOAEverythingSOA() throws {
        let core = try makeCore()
        try send(update(adminKey) { u in
            u.add(node1, ttl: 10, a("192.0.2.10"))
            u.add(moa("192.0.2.10"), ttl: 10, .ptr(node1))
        }, to: core)
        let replies = core.handleStream(try transferRequest(.axfr), from: local)
        let all = try records(replies)
        #expect(all.first?.type == .soa && all.last?.type == .soa && all.first == all.last)
        #expect(all.count == 6)  // SOA, NS, glue A, node A, PTR, SOA
        #expect(all.contains { $0.data == .ptr(node1) })
        #expect(try DNSMessage(bytes: replies[0]).header.isAuthoritative)
        #expect(core.counters[.axfrServed] == 1)
    }

    @Test func axfrNeedsTCPAndPermission() throws {
        let core = try makeCore()
        let udp = try DNSMessage(bytes: try #require(core.handleDatagram(try transferRequest(.axfr), from: local)))
        #expect(rcode(udp) == .formErr)
        let refused = try DNSMessage(bytes: try #require(core.handleStream(try transferRequest(.axfr), from: remote).first))
        #expect(rcode(refused) == .refused)
        #expect(core.counters[.transfersRefused] == 1)
        // An admin key or the transfer key opens it from anywhere.
        let signed = try TSIG.sign(try transferRequest(.axfr), key: transferKey, now: baseTime)
        let replies = core.handleStream(signed.bytes, from: remote)
        #expect(try records(replies).first?.type == .soa)
    }

    @Test func aLargeSignedAXFRIsAValidTSIGStream() throws {
        let core = try makeCore()
        for batch in 0..<8 {
            try send(update(adminKey, at: baseTime + UInt64(batch)) { u in
                for i in 0..<200 {
                    let owner = hoa("198.51.\(100 + batch).\(i)")
                    u.add(owner, ttl: 10, a("203.0.113.\(i)"))
                    u.add(owner, ttl: 10, .txt(strings: ["v=1", "seq=\(i)"]))
                }
            }, to: core)
        }
        let signed = try TSIG.sign(try transferRequest(.axfr), key: transferKey, now: baseTime)
        let replies = core.handleStream(signed.bytes, from: remote)
        #expect(replies.count > 3)
        #expect(replies.allSatisfy { $0.count < 65535 })
        var prior = signed.mac
        for (index, reply) in replies.enumerated() {
            let outcome = index == 0
                ? TSIG.verifyResponse(reply, key: transferKey, requestMAC: prior, now: baseTime)
                : TSIG.verifySubsequentResponse(reply, key: transferKey, priorMAC: prior, now: baseTime)
            let context = try #require(outcome.context)
            #expect(outcome == .verified(context), "message \(index)")
            prior = context.data.mac
        }
        // Tampering with a later message breaks the chain.
        var tampered = replies[1]
        tampered[3] ^= 0x01  // the RCODE: covered by the MAC, framing intact
        let firstMAC = try #require(DNSMessage(bytes: replies[0]).tsig?.data.mac)
        #expect(TSIG.verifySubsequentResponse(tampered, key: transferKey, priorMAC: firstMAC, now: baseTime).tsigError == .badSig)
        #expect(try records(replies).count == 8 * 400 + 3 + 1)
    }

    @Test func ixfrSendsOnlyTheChanges() throws {
        let core = try makeCore()
        let start = try #require(core.zone(zoneName)).serial
        try send(update(node1Key, at: baseTime) { $0.add(node1, ttl: 10, a("192.0.2.10")) }, to: core)
        try send(update(node1Key, at: baseTime + 1) { u in
            u.deleteRRset(node1, type: .a)
            u.add(node1, ttl: 10, a("192.0.2.20"))
        }, to: core)
        let current = try #require(core.zone(zoneName)).serial
        let all = try records(core.handleStream(try transferRequest(.ixfr, serial: start), from: local))
        let soaSerials = all.compactMap { record -> UInt32? in
            if case .soa(let s) = record.data { return s.serial }
            return nil
        }
        #expect(soaSerials == [current, start, start &+ 1, start &+ 1, current, current])
        #expect(all.filter { $0.type == .a }.map(\.data) == [a("192.0.2.10"), a("192.0.2.10"), a("192.0.2.20")])

        let upToDate = try records(core.handleStream(try transferRequest(.ixfr, serial: current), from: local))
        #expect(upToDate.count == 1 && upToDate[0].type == .soa)
        // Too old for the history: the whole zone, AXFR style.
        let full = try records(core.handleStream(try transferRequest(.ixfr, serial: start &- 100), from: local))
        #expect(full.first?.type == .soa && full.last?.type == .soa && full.count == 5)
        // Over UDP only the SOA, telling the client to come back over TCP.
        let udp = try DNSMessage(bytes: try #require(core.handleDatagram(try transferRequest(.ixfr, serial: start), from: local)))
        #expect(udp.answers.count == 1 && udp.answers[0].type == .soa)
        #expect(core.counters[.ixfrServed] == 2)
    }
}
