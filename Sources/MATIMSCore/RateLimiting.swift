import MATDNS

extension IMSCore {
    /// Charges each UDP request to its source prefix, then hands what passes to
    /// `process` and puts the replies back in request order; a limited request gets
    /// nothing (drop) or an empty truncated reply (slip). This runs before any parsing,
    /// cache lookup or signing, so a flood costs one table lookup per datagram. A limited
    /// request carrying a TSIG record that verifies is served anyway (`rrl-tsig-exempt`):
    /// its signer holds a key, so it is no spoofed source. That costs one HMAC, as the
    /// request would cost unlimited, and only for requests that carry a TSIG record.
    func rateLimited(_ requests: [IMSRequest], process: ([IMSRequest]) -> [[[UInt8]]]) -> [[[UInt8]]] {
        let now = monotonic()
        var verdicts = rateLimiter.withLock { limiter in
            requests.map { request -> ResponseRateLimiter.Verdict in
                // Only what would be answered is charged: a datagram dropped anyway is free.
                guard let source = request.source, let header = RawHeader(request.bytes), !header.isResponse else {
                    return .pass
                }
                return limiter.debit(source.address, now: now)
            }
        }
        guard verdicts.contains(where: { $0 != .pass }) else { return process(requests) }
        var delta = IMSCounters()
        for index in verdicts.indices where verdicts[index] != .pass {
            if case .verified = TSIG.verifyRequest(requests[index].bytes, keyring: keyring, now: clock()) {
                verdicts[index] = .pass
                delta.add(.rrlTSIGExempt)
            } else {
                delta.add(verdicts[index] == .drop ? .rrlDropped : .rrlSlipped)
            }
        }
        count(delta)
        let passed = requests.indices.filter { verdicts[$0] == .pass }.map { requests[$0] }
        var answers = (passed.isEmpty ? [] : process(passed)).makeIterator()
        return requests.indices.map { index in
            switch verdicts[index] {
            case .pass: answers.next() ?? []
            case .drop: []
            case .slip: RawHeader.truncated(to: requests[index].bytes).map { [$0] } ?? []
            }
        }
    }
}
