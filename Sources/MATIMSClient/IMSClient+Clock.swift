import MATDNS
import MATWire

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
                serverTime = BigEndian.u48(context.data.otherData, at: 0)
            }
            return (Int64(bitPattern: serverTime &- received), exchange.server)
        default:
            throw .responseNotAuthenticated(outcome)
        }
    }
}

extension IMSClient {
    /// How far the IMS's clock was ahead of this host's (seconds; negative when behind) at
    /// the latest signed answer that verified (a lookup's or an update's): its TSIG "time
    /// signed", which the MAC over the request's MAC covers, so that only the server can
    /// have written it and only for this request (RFC 8945 §5.3). Nil before one. A node
    /// takes its sequence numbers' floor from it (``clockCorrection`` comes only from a
    /// refusal for time, which BIND and Knot send only past the 300 s fudge): a restored
    /// guest whose clock is a minute behind learns the time at its first signed exchange
    /// with any of them. It does not change what TSIG signs with.
    public var serverTimeAhead: Int64? { state.withLock { $0.serverTimeAhead } }

    /// Notes the time the server signed a verified answer with (``serverTimeAhead``).
    func noteSignedTime(_ outcome: TSIGOutcome) {
        guard case .verified(let context) = outcome else { return }
        let ahead = Int64(bitPattern: context.data.timeSigned &- clock())
        state.withLock { $0.serverTimeAhead = ahead }
    }

    /// Seconds this client adds to the host's clock for TSIG: the IMS's time minus the
    /// host's, as the IMS last said in a signed BADTIME refusal; 0 until then.
    public var clockCorrection: Int64 { state.withLock { $0.clockCorrection } }

    /// The time TSIG signs and checks with: the host's clock plus ``clockCorrection``.
    func tsigNow() -> UInt64 {
        let correction = clockCorrection
        let now = clock()
        return correction >= 0 ? now &+ UInt64(correction) : now - min(now, correction.magnitude)
    }

    /// Takes the server's time from a TSIG refusal for time that verifies with `key`
    /// against the request (so only the server, not someone on the path, can set it):
    /// the host's clock is outside the fudge, or was stepped back behind a request the
    /// server already took (its replay protection refuses anything signed more than a
    /// second before that). TSIG then signs with the server's time, so a clock step costs
    /// one refused request instead of blocking every registration until the host's clock
    /// catches up or is fixed. Returns whether the correction changed (worth a retry).
    func learnServerTime(from exchange: DNSExchange, key: TSIGKey, requestMAC: [UInt8]) -> Bool {
        let outcome = TSIG.verifyResponse(exchange.bytes, key: key, requestMAC: requestMAC, now: tsigNow())
        let context: TSIGContext
        switch outcome {
        case .verified(let verified) where verified.data.error == .badTime: context = verified
        case .badTime(let verified): context = verified
        default: return false
        }
        var serverTime = context.data.timeSigned
        if context.data.error == .badTime, context.data.otherData.count == 6 {
            serverTime = BigEndian.u48(context.data.otherData, at: 0)
        }
        let correction = Int64(bitPattern: serverTime &- clock())
        let previous = state.withLock { state -> Int64 in
            defer { state.clockCorrection = correction }
            return state.clockCorrection
        }
        // Within a second of what is in use: the refusal is not about this clock.
        guard (correction - previous).magnitude > 1 else { return false }
        count { $0.clockCorrections += 1 }
        log(.warning, "the IMS \(exchange.server) refused a request for its time: its clock is \(correction) s from this "
            + "host's (was \(previous) s); TSIG uses the IMS's time from now on")
        return true
    }
}
