import MATIMSClient
import MATLog
import MATPacket

/// What the node knows of its public addresses behind 1:1 NAT (``PublicAddresses``).
struct PublicAddressState {
    /// The MoAs registered and announced: the local ones, each replaced by its public
    /// address; nil for a family whose public address is being asked of the IMS.
    var announced = NodeAddresses()
    /// Public addresses the IMS reported, by the local MoA they were asked for.
    var learned: [IPAddress: IPAddress] = [:]
    /// Families whose public address is being asked, with the local MoA it is asked for.
    var asking: [AddressFamily: IPAddress] = [:]
    /// Families whose question failed (IMS unreachable), with when to ask again (ms).
    var retryAt: [AddressFamily: UInt64] = [:]
    /// Peers whose alerts wait for the answer, held for at most a while (``PublicAddressWaits``).
    var waiting = PublicAddressWaits()
}

/// Behind 1:1 NAT: the engine and the diversion keep the local MoA, the IMS and the peers
/// get the public one. With `auto`, a move asks the IMS first, and the registration and
/// the alerts of that family wait for its answer (one IMS round trip), since an alert
/// naming the private address would send the peers' traffic nowhere.
extension MappingService {
    /// Works out the announced MoAs for the local ones in `next`. `moved` (the local MoA
    /// of a family changed, or a live migration or `matctl rebind` forces an announcement)
    /// forgets what the IMS said for the family: behind another NAT the same private
    /// address has another public one. Returns the families being asked now.
    @discardableResult
    func refreshAnnounced(for next: NodeAddresses, moved: Bool, now: UInt64) -> Set<AddressFamily> {
        var announced = next
        guard !config.publicAddresses.entries.isEmpty else {
            publicState.announced = next
            publishAnnounced()
            return []
        }
        var asking: Set<AddressFamily> = []
        for local in next.mobileAddresses {
            var value: IPAddress? = local
            switch config.publicAddresses.resolve(local, interface: uplink(carrying: local)) {
            case .unchanged:
                break
            case .fixed(let address):
                value = address
            case .ask:
                if moved { publicState.learned[local] = nil }
                value = publicState.learned[local]
                if value == nil {
                    askPublicAddress(of: local, now: now)
                    // Without an IMS to ask (an [ims] section gone on reload) nothing waits.
                    if publicState.asking[local.family] == local { asking.insert(local.family) } else { value = local }
                }
            }
            switch (local, value) {
            case (.v4, .v4(let a)?): announced.mobile4 = a
            case (.v6, .v6(let a)?): announced.mobile6 = a
            case (.v4, _): announced.mobile4 = nil
            case (.v6, _): announced.mobile6 = nil
            }
        }
        if announced != publicState.announced, asking.isEmpty, announced.mobileAddresses != next.mobileAddresses {
            log("matd: behind NAT: publishing \(announced.mobileDescription) for \(next.mobileDescription)")
        }
        publicState.announced = announced
        publishAnnounced()
        return asking
    }

    /// The MoAs to register for `family`: the announced one first, then the other local
    /// candidates (best first, the MoA itself the first of its family) whose public
    /// address is known without asking. Nil while it is asked.
    func registrationMoAs(family: AddressFamily, candidates: [IPAddress]) -> [IPAddress]? {
        guard let first = publicState.announced.mobileAddresses.first(where: { $0.family == family }) else {
            return publicState.asking[family] == nil ? [] : nil
        }
        var moas = [first]
        for local in candidates.filter({ $0.family == family }).dropFirst() {
            let value: IPAddress? = switch config.publicAddresses.resolve(local, interface: uplink(carrying: local)) {
            case .unchanged: local
            case .fixed(let address): address
            case .ask: publicState.learned[local]
            }
            if let value, !moas.contains(value) { moas.append(value) }
        }
        return moas
    }

    /// Queues the question for `local`'s public address, unless the same one is out.
    private func askPublicAddress(of local: IPAddress, now: UInt64) {
        guard let client, publicState.asking[local.family] != local else { return }
        publicState.asking[local.family] = local
        publicState.retryAt[local.family] = nil
        imsWorker.submit(.publicAddress(client, family: local.family, local: local))
    }

    /// Asks again for families whose last question found no IMS, and ends the holds of the
    /// peers that have waited for an answer too long (``PublicAddressWaits/timeout``).
    func askPublicAddressesAgain(now: UInt64) {
        // A hold that already ended another way (the peer's sign of life to an earlier
        // alert) has nothing left to release.
        let expired = publicState.waiting.expire(now: now).filter(peerHolds.isHeld)
        if !expired.isEmpty {
            log(.warning, "matd: the IMS has not said which public address it sees for \(PublicAddressWaits.timeout / 1_000) s; "
                + "releasing the traffic of \(expired.count) peer(s) held for it (their alerts go when it answers)")
            for hoa in expired {
                signaling.countPublicAddressWaitExpired()
                endHold(hoa, .notAlerted, now: now)
            }
        }
        for (family, due) in publicState.retryAt where due <= now {
            publicState.retryAt[family] = nil
            guard let local = addresses.mobileAddresses.first(where: { $0.family == family }) else { continue }
            askPublicAddress(of: local, now: now)
        }
    }

    /// The IMS's answer: the announced MoA of the family follows, the registration is
    /// updated, and the alerts that waited go out.
    func learnedPublicAddress(family: AddressFamily, local: IPAddress,
                              _ result: Result<IPAddress?, IMSClientError>, now: UInt64) {
        guard publicState.asking[family] == local else { return }
        publicState.asking[family] = nil
        // An answer about an address the node has left since is of no use.
        guard addresses.mobileAddresses.contains(local) else { return }
        let answer: IPAddress?, failed: Bool
        switch result {
        case .success(let address): (answer, failed) = (address, false)
        case .failure: (answer, failed) = (nil, true)
        }
        let hasServer = client?.configuration.servers.contains(where: { $0.address.family == family }) ?? false
        switch PublicAddresses.judge(answer, failed: failed, for: local, hasServer: hasServer,
                                     domainPrefixes: config.domainPrefixes) {
        case .seen(let address):
            publicState.learned[local] = address
            log("matd: the IMS sees \(local) as \(address)\(address == local ? " (no NAT)" : "")")
        case .noServer:
            publicState.learned[local] = local
            log("matd: no \(family) IMS server to ask which address it sees; publishing \(local) as it is")
        case .notAnswered:
            // BIND and Knot do not answer the question: publish the local address, say why.
            publicState.learned[local] = local
            log(.warning, "matd: the IMS does not say which address it sees (not mat-ims?); publishing \(local) "
                + "as it is: behind NAT, set public-address to the public address")
        case .unusable(let address, let reason):
            publicState.learned[local] = local
            log(.warning, "matd: the IMS sees \(local) as \(address), which cannot be a public address (\(reason)); "
                + "publishing \(local) as it is: behind NAT, set public-address to the public address")
        case .failed:
            publicState.retryAt[family] = now + 2_000
            if case .failure(let error) = result {
                log(.warning, "matd: asking the IMS for the public address of \(local) failed: \(error); asking again in 2 s")
            }
            return
        }
        refreshAnnounced(for: addresses, moved: false, now: now)
        if let moas = registrationMoAs(family: family, candidates: host.uplinkAddresses()) {
            registrations.moasChanged(family, to: moas, at: now)
        }
        register(now: now)
        for peer in publicState.waiting.answered(family) where !signaling.announce(to: peer.hoa, at: peer.moa, now: now) {
            endHold(peer.hoa, .notAlerted, now: now)
        }
    }

    /// The uplink whose addresses include `local`, when some entry names an uplink.
    private func uplink(carrying local: IPAddress) -> String? {
        guard config.publicAddresses.entries.contains(where: { $0.uplink != nil }) else { return nil }
        return config.uplinks.first { host.uplinkAddresses(only: $0).contains(local) }
    }

    private func publishAnnounced() {
        let announced = publicState.announced
        publishedAnnounced.withLock { $0 = announced }
    }

    /// The MoAs registered and announced now (public ones behind NAT), for `matctl status`.
    public var announcedAddresses: NodeAddresses { publishedAnnounced.withLock { $0 } }
}
