import MATDNS
import MATPacket

/// Phase 3 of a batch, with no lock: replies encoded and signed.
extension IMSCore {
    func render(_ worked: Worked, transport: IMSTransport, now: UInt64) -> [[UInt8]] {
        switch worked {
        case .reply(let bytes):
            return bytes.map { [$0] } ?? []
        case .query(let job, let answer, _):
            return renderQuery(job, answer, transport: transport, now: now).map { [$0] } ?? []
        case .update(let job, let rcode, _):
            var response = job.message.response(code: rcode, authoritative: false)
            if response.edns != nil { response.edns = EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)) }
            return sign(response, tsig: job.context, now: now).map { [$0] } ?? []
        case .limited(let job, let violation):
            // Recorded here, outside the zone lock; only a key holder can cause this event.
            record(.updateRefusedByLimit(key: job.context.keyName, violation: violation))
            return render(.update(job, .refused, nil), transport: transport, now: now)
        case .replayed(let job):
            return TSIG.errorResponse(to: job.raw, outcome: .badTime(job.context), keyring: keyring, now: now).map { [$0] } ?? []
        case .axfr(let job, let store):
            return renderTransfer(job, records: TransferBuilder.axfrRecords(store), now: now)
        case .ixfr(let job, let records):
            return renderTransfer(job, records: records, now: now)
        case .ixfrUpToDate(let job, let soa):
            var response = job.message.response()
            response.edns = nil
            response.answers = [soa]
            return sign(response, tsig: job.tsig, now: now).map { [$0] } ?? []
        case .counters(let message, let tsig, let counters):
            var response = message.response(authoritative: true)
            if response.edns != nil { response.edns = EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)) }
            let name = message.questions[0].name
            response.answers = counters.lines(includeZero: true).map {
                DNSResourceRecord(name: name, class: .ch, ttl: 0, data: .txt(strings: [$0]))
            }
            // All counters take about 2 KB: over UDP that is truncated like any answer.
            let limit = message.edns.map { max(512, min(Int($0.udpPayloadSize), configuration.maxUDPSize)) } ?? 512
            let overhead = tsig.map { $0.keyName.wireLength + $0.data.algorithm.wireLength + 16 + 64 } ?? 0
            if transport == .udp, ((try? response.encode())?.count ?? .max) + overhead > limit {
                response.header.isTruncated = true
                response.answers = []
                count(.responsesTruncated)
            }
            return sign(response, tsig: tsig, now: now).map { [$0] } ?? []
        }
    }

    func renderQuery(_ job: QueryJob, _ answer: QueryAnswer, transport: IMSTransport, now: UInt64) -> [UInt8]? {
        let request = job.message
        let header = DNSHeader(id: request.header.id, isResponse: true, opcode: .query,
                               isAuthoritative: answer.authoritative, recursionDesired: request.header.recursionDesired,
                               responseCode: answer.responseCode)
        var response = DNSMessage(header: header, questions: request.questions, answers: answer.answers,
                                  authorities: answer.authorities, additionals: answer.additionals)
        let hasEDNS = request.edns != nil
        if hasEDNS { response.additionals.append(EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)).record) }
        let limit = transport == .udp ? job.udpLimit : 65535
        let overhead = job.tsig.map { $0.keyName.wireLength + $0.data.algorithm.wireLength + 16 + 64 } ?? 0
        var bytes = (try? response.encode()) ?? []
        if bytes.isEmpty || bytes.count + overhead > limit {
            // RFC 2181 §9: what does not fit is dropped whole, TC tells the client to use TCP.
            response.header.isTruncated = true
            response.answers = []
            response.authorities = []
            response.additionals = hasEDNS ? [EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize)).record] : []
            guard let truncated = try? response.encode() else { return nil }
            bytes = truncated
            count(.responsesTruncated)
        }
        guard let tsig = job.tsig, let key = keyring.key(named: tsig.keyName) else { return bytes }
        return (try? TSIG.signResponse(bytes, key: key, request: tsig, now: now))?.bytes
    }

    func renderTransfer(_ job: TransferJob, records: [DNSResourceRecord], now: UInt64) -> [[UInt8]] {
        let messages = TransferBuilder.messages(for: job.message, records: records)
        let signing = job.tsig.flatMap { context in keyring.key(named: context.keyName).map { (key: $0, context: context) } }
        return TransferBuilder.encode(messages, signing: signing, now: now) ?? []
    }

    /// A reply with only the header and question (and OPT when asked with EDNS).
    func simpleReply(to message: DNSMessage, rcode: DNSResponseCode, tsig: TSIGContext?, now: UInt64,
                             authoritative: Bool = true) -> [UInt8]? {
        var response = message.response(code: rcode, authoritative: authoritative && rcode != .refused)
        if response.edns != nil {
            var edns = EDNS(udpPayloadSize: UInt16(configuration.maxUDPSize))
            edns.extendedRCode = UInt8(truncatingIfNeeded: rcode.rawValue >> 4)
            response.edns = edns
        }
        return sign(response, tsig: tsig, now: now)
    }

    func signedHeaderReply(_ bytes: [UInt8], rcode: DNSResponseCode, context: TSIGContext, now: UInt64) -> [UInt8]? {
        guard let reply = RawHeader.reply(to: bytes, rcode: rcode, echoQuestion: false),
              let key = keyring.key(named: context.keyName) else { return nil }
        return (try? TSIG.signResponse(reply, key: key, request: context, now: now))?.bytes
    }

    func sign(_ response: DNSMessage, tsig: TSIGContext?, now: UInt64) -> [UInt8]? {
        guard let bytes = try? response.encode() else { return nil }
        guard let tsig, let key = keyring.key(named: tsig.keyName) else { return bytes }
        return (try? TSIG.signResponse(bytes, key: key, request: tsig, now: now))?.bytes
    }
}
