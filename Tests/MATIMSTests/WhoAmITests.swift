import MATDNS
@testable import MATIMS
@testable import MATIMSCore
import MATPacket
import Testing

/// "What is my address" (docs/ims.md): an A or AAAA query for whoami.<zone> gets the
/// address the query came from, never a cached answer for someone else.
@Suite("whoami: the address the IMS sees")
struct WhoAmITests {
    let whoami = WhoAmI.name(in: zoneName)

    @Test func answersWithTheSourceAddressOfEachClient() throws {
        let core = try makeCore()
        for source in ["203.0.113.60:40000", "192.0.2.70:53"] {
            let endpoint = try #require(IPEndpoint(source, defaultPort: nil))
            // Twice each, so a cached answer for the first client would show up for the second.
            for _ in 0..<2 {
                let reply = try query(core, whoami, .a, source: endpoint)
                #expect(rcode(reply) == .noError && reply.header.isAuthoritative)
                #expect(reply.answers.map(\.data) == [.a(IPv4Address(String(source.prefix { $0 != ":" }))!.value)])
                #expect(reply.answers.first?.ttl == 0)
            }
        }
        let v6 = try query(core, whoami, .aaaa, tcp: true, source: IPEndpoint("[2001:db8:d::70]:5000", defaultPort: nil))
        #expect(v6.answers.map(\.data) == [.aaaa(high: IPv6Address("2001:db8:d::")!.high, low: 0x70)])
    }

    @Test func aMappedIPv4ClientGetsItsIPv4Address() throws {
        let core = try makeCore()
        let reply = try query(core, whoami, .a, source: IPEndpoint("[::ffff:203.0.113.60]:1", defaultPort: nil))
        #expect(reply.answers.map(\.data) == [.a(IPv4Address("203.0.113.60")!.value)])
    }

    @Test func theOtherFamilyOrTypeOrNoSourceIsNoData() throws {
        let core = try makeCore()
        let source = IPEndpoint("192.0.2.70:1", defaultPort: nil)
        for (type, from) in [(DNSType.aaaa, source), (.txt, source), (.a, nil)] {
            let reply = try query(core, whoami, type, source: from)
            #expect(rcode(reply) == .noError && reply.answers.isEmpty, "\(type)")
        }
    }

    @Test func aSignedQueryGetsASignedAnswer() throws {
        let core = try makeCore()
        var message = DNSMessage(header: DNSHeader(id: 9), questions: [DNSQuestion(name: whoami, type: .a)])
        message.edns = EDNS(udpPayloadSize: 1232)
        let signed = try message.signed(with: node1Key, now: baseTime)
        let reply = try #require(core.handleDatagram(signed.bytes, from: IPEndpoint("203.0.113.60:7", defaultPort: nil)))
        let outcome = TSIG.verifyResponse(reply, key: node1Key, requestMAC: signed.mac, now: baseTime)
        #expect(outcome.context.map { .verified($0) } == outcome)
        #expect(try DNSMessage(bytes: reply).answers.map(\.data) == [.a(IPv4Address("203.0.113.60")!.value)])
    }
}
