import MATNode
import MATPacket
import Testing

/// `public-address = auto` (docs/config.md, "Behind NAT"): what the IMS's answer to "which
/// address do you see" makes the node publish (``PublicAddresses/judge(_:failed:for:hasServer:domainPrefixes:)``),
/// for IPv6 MoAs above all, where the answer is usually the MoA itself (clouds route IPv6)
/// and anything else needs a reason.
@Suite struct PublicAddressAnswerTests {
    static let local6 = IPAddress("2001:db8:d::70")!
    static let prefixes = [IPPrefix("198.51.100.0/24")!, IPPrefix("2001:db8:100::/64")!]

    static func judge(_ answer: String?, failed: Bool = false, local: IPAddress = local6,
                      hasServer: Bool = true) -> PublicAddresses.Answer {
        PublicAddresses.judge(answer.map { IPAddress($0)! }, failed: failed, for: local, hasServer: hasServer,
                              domainPrefixes: prefixes)
    }

    @Test func theIMSSeeingTheMoAItselfIsNoNAT() {
        #expect(Self.judge("2001:db8:d::70") == .seen(Self.local6))
    }

    /// A prefix translator (NPTv6) in front of the node: the IMS sees another global
    /// address, which is published (the peers' challenge is what proves it reaches the node).
    @Test func anotherGlobalAddressIsPublished() {
        #expect(Self.judge("2001:db8:e::70") == .seen(IPAddress("2001:db8:e::70")!))
    }

    @Test func noAnswerAtAllIsAskedAgainAndNothingPublished() {
        #expect(Self.judge(nil, failed: true) == .failed)
        // Even with no server of the family: the question failed, it did not say "none".
        #expect(Self.judge(nil, failed: true, hasServer: false) == .failed)
    }

    @Test func noRecordPublishesTheMoAAsItIs() {
        #expect(Self.judge(nil) == .notAnswered)
        #expect(Self.judge(nil, hasServer: false) == .noServer)
    }

    @Test(arguments: [
        ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("ff02::1", "multicast"),
        ("::ffff:203.0.113.60", "an IPv4-mapped address (write the IPv4 address)"),
        ("2001:db8:100::5", "it lies in a domain-prefix (home addresses are not mobile addresses)"),
        ("203.0.113.60", "an IPv4 address for an IPv6 one"),
    ])
    func anAddressPeersCannotSendToIsNotTaken(answer: String, reason: String) {
        #expect(Self.judge(answer) == .unusable(IPAddress(answer)!, reason: reason))
    }

    @Test func anIPv6AnswerForAnIPv4MoAIsNotTaken() {
        let local = IPAddress("192.0.2.70")!
        #expect(Self.judge("2001:db8:d::70", local: local)
                == .unusable(Self.local6, reason: "an IPv6 address for an IPv4 one"))
        #expect(Self.judge("203.0.113.60", local: local) == .seen(IPAddress("203.0.113.60")!))
        #expect(Self.judge("127.0.0.1", local: local) == .unusable(IPAddress("127.0.0.1")!, reason: "loopback"))
    }
}
