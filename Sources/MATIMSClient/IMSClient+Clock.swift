import MATDNS

extension IMSClient {
    /// How far the IMS server's clock is from this host's, in seconds (server minus here),
    /// and which server said so: from a SOA query of the zone signed with `key`. A signed
    /// answer carries the server's time; a BADTIME refusal carries it in its other data
    /// (RFC 8945 §5.2.3). Registrations fail once this passes the TSIG fudge (300 s), so
    /// `matctl doctor` reports it.
    public func clockOffset(using key: TSIGKey) throws(IMSClientError) -> (seconds: Int64, server: DNSServerAddress) {
        var message = DNSMessage(header: DNSHeader(id: UInt16.random(in: .min ... .max)),
                                 questions: [DNSQuestion(name: configuration.names.zone, type: .soa)])
        message.edns = EDNS(udpPayloadSize: 1232)
        let now = clock()
        let signed: TSIGSignedMessage
        do { signed = try message.signed(with: key, now: now) } catch { throw .encoding(error) }
        let exchange: DNSExchange
        do {
            exchange = try transport.exchange(signed.bytes, servers: configuration.servers, retryOn: [.servFail, .refused])
        } catch {
            throw .unreachable(error)
        }
        let received = clock()
        let outcome = TSIG.verifyResponse(exchange.bytes, key: key, requestMAC: signed.mac, now: received)
        switch outcome {
        case .verified(let context), .badTime(let context):
            var serverTime = context.data.timeSigned
            if context.data.error == .badTime, context.data.otherData.count == 6 {
                serverTime = context.data.otherData.reduce(0) { $0 << 8 | UInt64($1) }
            }
            return (Int64(bitPattern: serverTime &- received), exchange.server)
        default:
            throw .responseNotAuthenticated(outcome)
        }
    }
}
