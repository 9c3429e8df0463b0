import MATDNS
import MATPacket

/// Phase 2 of a batch, under the lock: zone work and one journal commit for all accepted updates.
extension IMSCore {
    enum Worked {
        case reply([UInt8]?)
        case query(QueryJob, QueryAnswer, generation: UInt64)
        /// An update with its final RCODE (NOERROR may still turn SERVFAIL at commit).
        case update(UpdateJob, DNSResponseCode, ZoneDiff?)
        case replayed(UpdateJob)
        /// Refused: a node key would pass one of the zone's update limits (an ``IMSEvent``).
        case limited(UpdateJob, LimitViolation)
        case axfr(TransferJob, ZoneStore)
        case ixfr(TransferJob, [DNSResourceRecord])
        case ixfrUpToDate(TransferJob, DNSResourceRecord)
        case counters(DNSMessage, TSIGContext?, IMSCounters)
    }

    func work(_ prepared: Prepared, state: inout CoreState, transport: IMSTransport,
                      counters: inout IMSCounters) -> Worked {
        switch prepared {
        case .reply(let bytes):
            return .reply(bytes)
        case .counters(let message, let tsig):
            var snapshot = state.counters
            snapshot.merge(counters)
            return .counters(message, tsig, snapshot)
        case .query(let job):
            counters.add(.queries)
            let answer = state.zones[job.zone].store.answer(name: job.question.name, owner: job.question.name, type: job.question.type,
                                      allTypesForAny: transport == .tcp)
            if answer.responseCode == .nxDomain {
                counters.add(.queriesNXDomain)
            } else if answer.answers.isEmpty && answer.authoritative {
                counters.add(.queriesNoData)
            }
            return .query(job, answer, generation: generation.load(ordering: .acquiring))
        case .transfer(let job):
            let zone = state.zones[job.zone]
            switch job.kind {
            case .axfr:
                counters.add(.axfrServed)
                return .axfr(job, zone.store)
            case .ixfr(let serial):
                let current = zone.store.soaRecord
                if !SerialNumber.isNewer(zone.store.serial, than: serial) {
                    return .ixfrUpToDate(job, current)
                }
                if transport == .udp {
                    // RFC 1995 §2: over UDP, only the SOA; the client retries over TCP.
                    return .ixfrUpToDate(job, current)
                }
                counters.add(.ixfrServed)
                if let start = zone.history.firstIndex(where: { $0.oldSerial == serial }) {
                    return .ixfr(job, TransferBuilder.ixfrRecords(current: current, diffs: Array(zone.history[start...])))
                }
                // History does not reach back that far: a full zone in IXFR form.
                return .axfr(job, zone.store)
            }
        case .update(let job):
            guard let zone = job.zone else {
                counters.add(.updatesRefusedNotAuth)
                return .update(job, .notAuth, nil)
            }
            let context = job.context
            guard state.replay.admit(key: context.keyName, time: context.data.timeSigned, mac: context.data.mac) else {
                counters.add(.updatesRefusedReplay)
                return .replayed(job)
            }
            let policy = policies[zone]
            let role = policy.role(of: context.keyName)
            guard role != .none else {
                counters.add(.updatesRefusedPolicy)
                return .update(job, .refused, nil)
            }
            let result = state.zones[zone].store.process(job.request, role: role, policy: policy)
            if let violation = result.violation {
                counters.add(.updatesRefusedLimit)
                return .limited(job, violation)
            }
            switch result.responseCode {
            case .noError: break
            case .refused: counters.add(.updatesRefusedPolicy)
            default: counters.add(.updatesRefusedPrerequisite)
            }
            guard let diff = result.diff else {
                if result.responseCode == .noError { counters.add(.updatesNoChange) }
                return .update(job, result.responseCode, nil)
            }
            if let journal = state.zones[zone].journal {
                let stamp = SignerStamp(keyName: context.keyName, timeSigned: context.data.timeSigned, mac: context.data.mac)
                guard journal.stage(diff, signer: stamp) else {
                    state.zones[zone].store.revert(diff)
                    counters.add(.updatesFailedJournal)
                    return .update(job, .servFail, nil)
                }
            }
            return .update(job, .noError, diff)
        }
    }

    /// Writes the batch's journal records, one write and sync per zone. If a zone's
    /// journal fails, that zone's updates of this batch are undone (newest first) and
    /// answered SERVFAIL.
    func commit(_ results: inout [Worked], state: inout CoreState, counters: inout IMSCounters,
                        changed: inout [(Int, UInt32)]) {
        var byZone: [Int: [Int]] = [:]
        for (index, result) in results.enumerated() {
            if case .update(let job, .noError, .some(_)) = result, let zone = job.zone { byZone[zone, default: []].append(index) }
        }
        if !byZone.isEmpty {
            // Even a failed commit (rolled back) must retire answers computed meanwhile.
            generation.add(1, ordering: .acquiringAndReleasing)
        }
        for (zone, indices) in byZone.sorted(by: { $0.key < $1.key }) {
            var failed = false
            if let journal = state.zones[zone].journal {
                do {
                    try journal.commit()
                } catch {
                    record(.journalCommitFailed(zone: zoneConfigs[zone].name, error: "\(error)"))
                    failed = true
                }
            }
            for index in indices {
                guard case .update(_, _, .some(let diff)) = results[index] else { continue }
                if failed {
                    counters.add(.updatesFailedJournal)
                } else {
                    counters.add(.updatesAccepted)
                    state.zones[zone].history.append(diff)
                    state.expiry[zone]?.track(diff, store: state.zones[zone].store, now: monotonic())
                }
            }
            if failed {
                for index in indices.reversed() {
                    guard case .update(let job, _, .some(let diff)) = results[index] else { continue }
                    state.zones[zone].store.revert(diff)
                    results[index] = .update(job, .servFail, nil)
                }
                continue
            }
            let limit = zoneConfigs[zone].ixfrHistory
            if state.zones[zone].history.count > limit {
                state.zones[zone].history.removeFirst(state.zones[zone].history.count - limit)
            }
            if let journal = state.zones[zone].journal,
               journal.compactIfNeeded(threshold: configuration.journalCompactBytes, store: state.zones[zone].store,
                                       stamps: state.replay.stamps) {
                counters.add(.journalCompactions)
            }
            changed.append((zone, state.zones[zone].store.serial))
        }
    }
}

/// Registration lifetimes: mappings no newer registration renewed in time are removed.
extension IMSCore {
    /// Removes every mapping whose registration lifetime has passed (``MappingExpiry``):
    /// its MoAs and its PTRs, as one journaled change per mapping, with NOTIFY as for an
    /// update. The server calls it every second; returns how many mappings expired. A
    /// journal that fails leaves them in place, to be tried again at the next call.
    @discardableResult
    public func expireMappings() -> Int {
        let now = monotonic()
        var changed: [(Int, UInt32)] = []
        var expired: [DNSName] = []
        state.withLock { state in
            for zone in state.zones.indices {
                guard var expiry = state.expiry[zone] else { continue }
                let due = expiry.due(at: now)
                guard !due.isEmpty else { continue }
                var diffs: [ZoneDiff] = []
                var names: [DNSName] = []
                for name in due {
                    let operations = expiry.expire(name, in: state.zones[zone].store)
                    guard let diff = state.zones[zone].store.apply(operations) else { continue }
                    if let journal = state.zones[zone].journal, !journal.stage(diff, signer: nil) {
                        state.zones[zone].store.revert(diff)
                        record(.expiryNotEncodable(name: name))
                        continue
                    }
                    diffs.append(diff)
                    names.append(name)
                }
                if let journal = state.zones[zone].journal, !diffs.isEmpty {
                    do {
                        try journal.commit()
                    } catch {
                        for diff in diffs.reversed() { state.zones[zone].store.revert(diff) }
                        state.counters.add(.updatesFailedJournal, diffs.count)
                        record(.expiryCommitFailed(zone: zoneConfigs[zone].name, count: names.count, error: "\(error)"))
                        continue
                    }
                }
                state.expiry[zone] = expiry
                guard !diffs.isEmpty else { continue }
                generation.add(1, ordering: .acquiringAndReleasing)
                state.zones[zone].history += diffs
                let limit = zoneConfigs[zone].ixfrHistory
                if state.zones[zone].history.count > limit {
                    state.zones[zone].history.removeFirst(state.zones[zone].history.count - limit)
                }
                state.counters.add(.mappingsExpired, diffs.count)
                changed.append((zone, state.zones[zone].store.serial))
                expired += names
            }
        }
        for name in expired { record(.mappingExpired(name: name)) }
        if !changed.isEmpty, let handler = changeHandler.withLock({ $0 }) {
            for (zone, serial) in changed { handler(zone, serial) }
        }
        return expired.count
    }
}
