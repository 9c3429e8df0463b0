import MATDNS

/// The sections of an answer from one zone.
public struct QueryAnswer: Sendable {
    /// NOERROR, or NXDOMAIN for a name the zone does not hold.
    public var responseCode: DNSResponseCode = .noError
    /// AA: off only for referrals below a zone cut.
    public var authoritative = true
    /// The answer section.
    public var answers: [DNSResourceRecord] = []
    /// The authority section: the SOA of a negative answer, or the NS set of a referral.
    public var authorities: [DNSResourceRecord] = []
    /// The additional section: glue for the NS records.
    public var additionals: [DNSResourceRecord] = []
}

extension ZoneStore {
    /// The SOA as it goes in the authority section of a negative answer: its TTL capped
    /// by MINIMUM (RFC 2308 §3).
    public var negativeSOA: DNSResourceRecord {
        var record = soaRecord
        record.ttl = min(record.ttl, soa.minimum)
        return record
    }

    /// Answers `type` at `name` (which must lie in the zone). `owner` is the name as the
    /// client spelled it, used for answer owners so that they compress against the
    /// question. `allTypesForAny` false gives RFC 8482 minimal ANY answers (one RRset).
    public func answer(name: DNSName, owner: DNSName, type: DNSType, allTypesForAny: Bool) -> QueryAnswer {
        var result = QueryAnswer()
        if let cut = delegation(covering: name) {
            return referral(at: cut)
        }
        var current = name
        var currentOwner = owner
        // CNAME chains inside the zone, bounded against loops.
        for _ in 0..<8 {
            guard let sets = nodes[current] else {
                if result.answers.isEmpty {
                    result.responseCode = nameExists(current) ? .noError : .nxDomain
                } else if !nameExists(current) {
                    // RFC 6604: the RCODE reflects the last name in the chain.
                    result.responseCode = .nxDomain
                }
                result.authorities = [negativeSOA]
                return result
            }
            if type == .any {
                if allTypesForAny {
                    for set in sets { result.answers += set.resourceRecords(owner: currentOwner) }
                } else if let first = sets.min(by: { $0.records.count < $1.records.count }) {
                    result.answers += first.resourceRecords(owner: currentOwner)
                }
                return result
            }
            if let set = sets.first(where: { $0.type == type }) {
                result.answers += set.resourceRecords(owner: currentOwner)
                if type == .ns { result.additionals = glue(for: set.records) }
                return result
            }
            guard let alias = sets.first(where: { $0.type == .cname }), case .cname(let target) = alias.records.first else {
                if result.answers.isEmpty { result.authorities = [negativeSOA] }
                return result
            }
            result.answers += alias.resourceRecords(owner: currentOwner)
            guard target.isSubdomain(of: origin), delegation(covering: target) == nil else { return result }
            current = target
            currentOwner = target
        }
        return result
    }

    /// A referral to the zone cut `cut`: its NS set in authority, glue in additional.
    func referral(at cut: DNSName) -> QueryAnswer {
        var result = QueryAnswer()
        result.authoritative = false
        guard let ns = rrset(at: cut, type: .ns) else { return result }
        result.authorities = ns.resourceRecords(owner: cut)
        result.additionals = glue(for: ns.records)
        return result
    }

    /// A and AAAA records of in-zone name server targets.
    func glue(for records: [DNSRecordData]) -> [DNSResourceRecord] {
        var result: [DNSResourceRecord] = []
        for case .ns(let host) in records where host.isSubdomain(of: origin) {
            for type in [DNSType.a, .aaaa] {
                if let set = rrset(at: host, type: type) { result += set.resourceRecords(owner: host) }
            }
        }
        return result
    }
}
