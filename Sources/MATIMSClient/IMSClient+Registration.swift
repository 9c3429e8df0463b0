import Glibc
import MATDNS
import MATPacket

extension IMSClient {
    /// Publishes `hoa -> moas` at `sequence` and confirms it took effect.
    ///
    /// `publicKey` is the node's Ed25519 public key, standard base64 of its 32 octets
    /// (44 characters with the padding): it is published in the version TXT as
    /// `"key=<publicKey>"`, bound to the HoA by this TSIG-signed update, so that receivers
    /// of the node's signed mobility alerts can verify them. Nil publishes no key (and
    /// removes one published before). A key that is not valid base64 of 32 octets is
    /// refused before anything is sent (``IMSClientError/invalidPublicKey(_:)``).
    ///
    /// Sends one TSIG-signed UPDATE (see ``RegistrationBuilder``) to the servers in order,
    /// checks the reply's TSIG against the request, then queries the accepting server
    /// until the forward name holds exactly `moas`, `seq=<sequence>` and the key. The caller
    /// persists `sequence` before calling and never reuses it. PTRs of MoAs this client
    /// published earlier are removed; after a restart the previous MoAs are read from the
    /// IMS first. An empty `moas` deregisters (the TXT, and so the sequence, stays). The
    /// update is signed with the key named after `hoa`'s name
    /// (``IMSClientConfiguration/signingKey(for:)``), so one client registers every HoA of
    /// a dual-stack node.
    ///
    /// A signed BADTIME refusal (this host's clock outside the fudge, or stepped back
    /// behind the last update the server took) teaches the client the server's time and
    /// the update is sent once more at once, signed with it.
    @discardableResult
    public func register(hoa: IPAddress, moas: [IPAddress], sequence: UInt64,
                         publicKey: String? = nil) throws(IMSClientError) -> RegistrationResult {
        try register(hoa: hoa, moas: moas, sequence: sequence, publicKey: publicKey, retried: false)
    }

    private func register(hoa: IPAddress, moas: [IPAddress], sequence: UInt64, publicKey: String?,
                          retried: Bool) throws(IMSClientError) -> RegistrationResult {
        guard let key = configuration.signingKey(for: hoa) else { throw .noKey }
        if let stray = moas.first(where: { $0.family != hoa.family }) {
            throw .familyMismatch(hoa: hoa, moa: stray)
        }
        if let publicKey, !MappingNames.isValidPublicKey(publicKey) { throw .invalidPublicKey(publicKey) }
        let wanted = RegistrationBuilder.unique(moas)
        let previous = previouslyPublished(hoa)
        let correctionUsed = clockCorrection
        let builder = RegistrationBuilder(names: configuration.names, ttl: configuration.recordTTL,
                                          lifetime: configuration.registrationLifetime, relay: configuration.relay)
        let signed: TSIGSignedMessage
        do {
            signed = try builder.signedUpdate(id: UInt16.random(in: .min ... .max), hoa: hoa, moas: wanted,
                                              sequence: sequence, publicKey: publicKey, previousMoAs: previous,
                                              key: key, now: tsigNow())
        } catch {
            throw .encoding(error)
        }
        let exchange: DNSExchange
        do {
            exchange = try transport.exchange(signed.bytes, servers: configuration.servers, retryOn: [])
        } catch {
            log(.warning, "registration of \(hoa) seq=\(sequence) not sent: \(error)")
            throw .unreachable(error)
        }
        do {
            try checkUpdateReply(exchange, key: key, requestMAC: signed.mac, hoa: hoa, sequence: sequence)
        } catch .updateRefused(let rcode, let tsigError, let authenticated) where tsigError == .badTime {
            // The transport resends an update whose reply was lost or late; a server that
            // applied the first copy refuses the second as a replay. The zone then holds this
            // very registration (its sequence number is new), which the read-back shows.
            guard (try? confirm(hoa: hoa, moas: wanted, sequence: sequence, publicKey: publicKey,
                                server: exchange.server)) != nil else {
                // The server's time may also have come with the read-back's refused query.
                if !retried, learnServerTime(from: exchange, key: key, requestMAC: signed.mac)
                    || (clockCorrection - correctionUsed).magnitude > 1 {
                    return try register(hoa: hoa, moas: moas, sequence: sequence, publicKey: publicKey, retried: true)
                }
                throw .updateRefused(rcode: rcode, tsigError: tsigError, authenticated: authenticated)
            }
            log(.info, "registration of \(hoa) seq=\(sequence) was applied by its first copy; the resent one was refused as a replay")
        }
        state.withLock { $0.published[hoa] = wanted }

        let confirmation = try confirm(hoa: hoa, moas: wanted, sequence: sequence, publicKey: publicKey,
                                       server: exchange.server)
        count { $0.registrations += 1 }
        log(.info, "registered \(confirmation)")
        let removed = previous.filter { !wanted.contains($0) }
        return RegistrationResult(hoa: hoa, moas: wanted, sequence: sequence, publicKey: publicKey,
                                  server: exchange.server, removedMoAs: removed, confirmation: confirmation)
    }

    /// The MoAs whose PTRs the next update should drop: what this client last had
    /// accepted, or else what the IMS holds now (empty if it cannot be read).
    private func previouslyPublished(_ hoa: IPAddress) -> [IPAddress] {
        if let known = state.withLock({ $0.published[hoa] }) { return known }
        let found = try? fetch(hoa: hoa, servers: configuration.servers, now: clock())
        return found?.moas ?? []
    }

    /// Accepts only a NOERROR reply whose TSIG verifies against the request's MAC;
    /// everything else is a refusal (counted, logged) or an unauthenticated reply.
    private func checkUpdateReply(_ exchange: DNSExchange, key: TSIGKey, requestMAC: [UInt8], hoa: IPAddress,
                                  sequence: UInt64) throws(IMSClientError) {
        let rcode = exchange.message.extendedResponseCode
        let outcome = TSIG.verifyResponse(exchange.bytes, key: key, requestMAC: requestMAC, now: tsigNow())
        let refusal: IMSClientError
        switch outcome {
        case .verified(let context):
            noteSignedTime(outcome)
            if rcode == .noError && context.data.error == .noError { return }
            let tsigError = context.data.error == .noError ? nil : context.data.error
            refusal = .updateRefused(rcode: rcode, tsigError: tsigError, authenticated: true)
        case .unsignedError(let context):
            refusal = .updateRefused(rcode: rcode, tsigError: context.data.error, authenticated: false)
        default:
            guard rcode != .noError else {
                count { $0.unauthenticatedResponses += 1 }
                log(.error, "registration of \(hoa) seq=\(sequence): reply from \(exchange.server) failed TSIG (\(outcome))")
                throw .responseNotAuthenticated(outcome)
            }
            refusal = .updateRefused(rcode: rcode, tsigError: nil, authenticated: false)
        }
        count { $0.refusedUpdates += 1 }
        log(.error, "registration of \(hoa) seq=\(sequence) at \(exchange.server): \(refusal)")
        throw refusal
    }

    /// Reads the forward name back from `server` until it matches (MoAs, sequence and
    /// public key, a missing key included), a few times.
    private func confirm(hoa: IPAddress, moas: [IPAddress], sequence: UInt64, publicKey: String?,
                         server: DNSServerAddress) throws(IMSClientError) -> PeerMappingAnswer {
        var found: PeerMappingAnswer?
        for attempt in 0..<max(1, configuration.confirmationAttempts) {
            if attempt > 0 { usleep(UInt32(max(0, configuration.confirmationDelayMilliseconds)) * 1000) }
            let now = clock()
            found = try? fetch(hoa: hoa, servers: [server], now: now)
            if let answer = found, answer.sequence == sequence, answer.publicKey == publicKey,
               Set(answer.moas) == Set(moas) {
                // Our own mapping is as good as any peer's answer: cache it.
                state.withLock { $0.cache.store(answer) }
                return answer
            }
        }
        count { $0.confirmationFailures += 1 }
        log(.error, "registration of \(hoa) seq=\(sequence) accepted by \(server) but reads back as "
            + (found?.description ?? "nothing"))
        throw .notConfirmed(found: found)
    }
}
