import MATDNS
import MATPacket

/// The "what is my address" answer (``WhoAmI``): an A or AAAA query for `whoami.<zone>`
/// gets the address the query came from, TTL 0, signed when the query was. Built in the
/// first phase, with no zone state and never cached: every client gets its own address.
extension IMSCore {
    func whoAmIReply(to message: DNSMessage, question: DNSQuestion, source: IPEndpoint?,
                     tsig: TSIGContext?, now: UInt64) -> [UInt8]? {
        var response = message.response(code: .noError)
        if response.edns != nil { response.edns = EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)) }
        // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d.
        let seen: IPAddress? = source.map { endpoint in
            if case .v6(let a) = endpoint.address, a.high == 0, a.low >> 32 == 0xFFFF {
                return .v4(IPv4Address(UInt32(truncatingIfNeeded: a.low)))
            }
            return endpoint.address
        }
        switch (question.type, seen) {
        case (.a, .v4(let a)?):
            response.answers = [DNSResourceRecord(name: question.name, ttl: 0, data: .a(a.value))]
        case (.aaaa, .v6(let a)?):
            response.answers = [DNSResourceRecord(name: question.name, ttl: 0, data: .aaaa(high: a.high, low: a.low))]
        default:
            // The other family, another type, or no source (tests, fuzzing): no data.
            break
        }
        return sign(response, tsig: tsig, now: now)
    }
}
