import MATDNS

/// Builds AXFR (RFC 5936) and IXFR (RFC 1995) responses as a sequence of messages, each
/// well under 64 KiB so that a TSIG record always fits, signed per RFC 8945 §5.3.1 when
/// the request was signed: the first message chains the request MAC, each later one the
/// MAC of the message before it.
enum TransferBuilder {
    /// Records per message are cut by an uncompressed size estimate at this many octets.
    static let targetSize = 16 * 1024

    /// A full transfer: SOA, every other record, SOA.
    static func axfrRecords(_ store: ZoneStore) -> [DNSResourceRecord] {
        var records = store.allRecords()
        records.append(store.soaRecord)
        return records
    }

    /// An incremental transfer from the first diff's old serial to the current SOA:
    /// current SOA, then per change old SOA, deletions, new SOA, additions, then the
    /// current SOA again.
    static func ixfrRecords(current: DNSResourceRecord, diffs: [ZoneDiff]) -> [DNSResourceRecord] {
        var records: [DNSResourceRecord] = [current]
        for diff in diffs {
            records.append(diff.oldSOA)
            records += diff.deleted
            records.append(diff.newSOA)
            records += diff.added
        }
        records.append(current)
        return records
    }

    /// Splits `records` into answer sections of response messages for `request`. The
    /// question is echoed in the first message only (RFC 5936 §2.2).
    static func messages(for request: DNSMessage, records: [DNSResourceRecord]) -> [DNSMessage] {
        let header = DNSHeader(id: request.header.id, isResponse: true, opcode: .query, isAuthoritative: true)
        var result: [DNSMessage] = []
        var current = DNSMessage(header: header, questions: request.questions)
        var estimate = 12
        for record in records {
            let size = record.name.wireLength + 10 + RecordPacker.rdataEstimate(record.data)
            if estimate + size > targetSize && !current.answers.isEmpty {
                result.append(current)
                current = DNSMessage(header: header)
                estimate = 12
            }
            current.answers.append(record)
            estimate += size
        }
        result.append(current)
        return result
    }

    /// Encodes the messages and, when `signing` is given, signs them as one TSIG stream.
    static func encode(_ messages: [DNSMessage], signing: (key: TSIGKey, context: TSIGContext)?,
                       now: UInt64) -> [[UInt8]]? {
        var out: [[UInt8]] = []
        out.reserveCapacity(messages.count)
        var priorMAC: [UInt8]? = nil
        for message in messages {
            guard let bytes = try? message.encode() else { return nil }
            guard let signing else {
                out.append(bytes)
                continue
            }
            let signed: TSIGSignedMessage?
            if let prior = priorMAC {
                signed = try? TSIG.signSubsequent(bytes, key: signing.key, priorMAC: prior, now: now)
            } else {
                signed = try? TSIG.signResponse(bytes, key: signing.key, request: signing.context, now: now)
            }
            guard let signed else { return nil }
            priorMAC = signed.mac
            out.append(signed.bytes)
        }
        return out
    }
}
