import MATDNS
import MATPacket

/// Phase 1 of a batch, with no shared state: parsing, TSIG, what each request asks for.
extension IMSCore {
    struct QueryJob {
        var message: DNSMessage
        var question: DNSQuestion
        var zone: Int
        var tsig: TSIGContext?
        var udpLimit: Int
        /// Set for plain queries (no TSIG), whose answer may be cached.
        var cacheKey: [UInt8]? = nil
    }

    struct UpdateJob {
        var raw: [UInt8]
        var message: DNSMessage
        var request: DNSUpdateRequest
        var context: TSIGContext
        var zone: Int?
    }

    enum TransferKind {
        case axfr
        case ixfr(serial: UInt32)
    }

    struct TransferJob {
        var message: DNSMessage
        var kind: TransferKind
        var zone: Int
        var tsig: TSIGContext?
    }

    enum Prepared {
        case reply([UInt8]?)
        case query(QueryJob)
        case update(UpdateJob)
        case transfer(TransferJob)
        case counters(DNSMessage, TSIGContext?)
    }

    func prepare(_ request: IMSRequest, transport: IMSTransport, now: UInt64,
                         counters: inout IMSCounters) -> Prepared {
        let bytes = request.bytes
        guard let header = RawHeader(bytes), !header.isResponse else {
            counters.add(.malformedDropped)
            return .reply(nil)
        }
        switch header.opcode {
        case .update:
            return prepareUpdate(bytes, now: now, counters: &counters)
        case .query:
            break
        default:
            counters.add(.notImplemented)
            return .reply(RawHeader.reply(to: bytes, rcode: header.opcode == .notify ? .refused : .notImp,
                                          echoQuestion: true))
        }
        let message: DNSMessage
        do {
            message = try DNSMessage(bytes: bytes)
        } catch {
            counters.add(.malformedFormErr)
            return .reply(RawHeader.reply(to: bytes, rcode: .formErr, echoQuestion: false))
        }
        var tsig: TSIGContext? = nil
        if message.additionals.contains(where: { $0.type == .tsig }) || message.answers.contains(where: { $0.type == .tsig })
            || message.authorities.contains(where: { $0.type == .tsig }) {
            let outcome = TSIG.verifyRequest(bytes, keyring: keyring, now: now)
            guard case .verified(let context) = outcome else { return tsigFailure(bytes, outcome, now: now, counters: &counters) }
            tsig = context
        }
        guard message.questions.count == 1 else {
            counters.add(.malformedFormErr)
            return .reply(simpleReply(to: message, rcode: .formErr, tsig: tsig, now: now))
        }
        let options = message.additionals.filter { $0.type == .opt }
        guard options.count <= 1, options.first.map({ $0.name.isRoot }) ?? true else {
            counters.add(.malformedFormErr)
            return .reply(simpleReply(to: message, rcode: .formErr, tsig: tsig, now: now))
        }
        if let edns = message.edns, edns.version != 0 {
            counters.add(.badVersion)
            return .reply(simpleReply(to: message, rcode: .badVers, tsig: tsig, now: now))
        }
        let question = message.questions[0]
        if question.questionClass == .ch {
            if question.name == Self.countersName, question.type == .txt || question.type == .any,
               request.source?.isLoopback == true {
                return .counters(message, tsig)
            }
            counters.add(.queriesRefused)
            return .reply(simpleReply(to: message, rcode: .refused, tsig: tsig, now: now))
        }
        guard question.questionClass == .in || question.questionClass == .any,
              let zone = zoneIndex(for: question.name) else {
            counters.add(.queriesRefused)
            return .reply(simpleReply(to: message, rcode: .refused, tsig: tsig, now: now, authoritative: false))
        }
        switch question.type {
        case .axfr, .ixfr:
            let isAXFR = question.type == .axfr
            guard question.name == zoneConfigs[zone].name else {
                counters.add(.transfersRefused)
                return .reply(simpleReply(to: message, rcode: .notAuth, tsig: tsig, now: now))
            }
            guard transferAllowed(zone: zone, source: request.source, tsig: tsig) else {
                counters.add(.transfersRefused)
                return .reply(simpleReply(to: message, rcode: .refused, tsig: tsig, now: now))
            }
            if isAXFR {
                guard transport == .tcp else {
                    // RFC 5936 §4.2: AXFR is a TCP-only operation.
                    counters.add(.malformedFormErr)
                    return .reply(simpleReply(to: message, rcode: .formErr, tsig: tsig, now: now))
                }
                return .transfer(TransferJob(message: message, kind: .axfr, zone: zone, tsig: tsig))
            }
            guard let soa = message.authorities.first, case .soa(let clientSOA) = soa.data else {
                counters.add(.malformedFormErr)
                return .reply(simpleReply(to: message, rcode: .formErr, tsig: tsig, now: now))
            }
            return .transfer(TransferJob(message: message, kind: .ixfr(serial: clientSOA.serial), zone: zone, tsig: tsig))
        case _ where question.name == WhoAmI.name(in: zoneConfigs[zone].name):
            counters.add(.queries)
            return .reply(whoAmIReply(to: message, question: question, source: request.source, tsig: tsig, now: now))
        default:
            let limit: Int
            if let edns = message.edns {
                limit = max(512, min(Int(edns.udpPayloadSize), configuration.maxUDPSize))
            } else {
                limit = 512
            }
            return .query(QueryJob(message: message, question: question, zone: zone, tsig: tsig, udpLimit: limit))
        }
    }

    /// UPDATE: authenticate on the raw bytes (one framing scan and one HMAC) before
    /// anything in the message is allocated.
    func prepareUpdate(_ bytes: [UInt8], now: UInt64, counters: inout IMSCounters) -> Prepared {
        let outcome = TSIG.verifyRequest(bytes, keyring: keyring, now: now)
        guard case .verified(let context) = outcome else {
            if outcome == .unsigned {
                counters.add(.updatesRefusedUnsigned)
                return .reply(RawHeader.reply(to: bytes, rcode: .refused, echoQuestion: true))
            }
            return tsigFailure(bytes, outcome, now: now, counters: &counters)
        }
        let message: DNSMessage
        do {
            message = try DNSMessage(bytes: bytes)
        } catch {
            counters.add(.updatesRefusedFormErr)
            return .reply(signedHeaderReply(bytes, rcode: .formErr, context: context, now: now))
        }
        let request: DNSUpdateRequest
        do {
            request = try DNSUpdateRequest(message)
        } catch {
            counters.add(error.responseCode == .notZone ? .updatesRefusedNotZone : .updatesRefusedFormErr)
            return .reply(simpleReply(to: message, rcode: error.responseCode, tsig: context, now: now, authoritative: false))
        }
        let zone = request.zoneClass == .in ? zoneConfigs.firstIndex(where: { $0.name == request.zone }) : nil
        return .update(UpdateJob(raw: bytes, message: message, request: request, context: context, zone: zone))
    }

    func tsigFailure(_ bytes: [UInt8], _ outcome: TSIGOutcome, now: UInt64, counters: inout IMSCounters) -> Prepared {
        switch outcome {
        case .badKey: counters.add(.tsigBadKey)
        case .badSig: counters.add(.tsigBadSig)
        case .badTime: counters.add(.tsigBadTime)
        case .badTrunc: counters.add(.tsigBadTrunc)
        default: counters.add(.tsigFormErr)
        }
        return .reply(TSIG.errorResponse(to: bytes, outcome: outcome, keyring: keyring, now: now))
    }

    func zoneIndex(for name: DNSName) -> Int? {
        // Longest match, should zones ever nest (the configuration forbids it today).
        var best: Int? = nil
        for (index, zone) in zoneConfigs.enumerated() where name.isSubdomain(of: zone.name) {
            if best == nil || zone.name.labelCount > zoneConfigs[best!].name.labelCount { best = index }
        }
        return best
    }

    func transferAllowed(zone: Int, source: IPEndpoint?, tsig: TSIGContext?) -> Bool {
        let config = zoneConfigs[zone]
        if let tsig, config.adminKeys.contains(tsig.keyName) { return true }
        let rules = config.allowTransfer.isEmpty
            ? config.notify.compactMap { IMSPrefix($0.address.description) }.map(TransferRule.prefix)
            : config.allowTransfer
        for rule in rules {
            switch rule {
            case .any: return true
            case .key(let name): if tsig?.keyName == name { return true }
            case .prefix(let prefix): if let source, prefix.contains(source.address) { return true }
            }
        }
        return false
    }
}
