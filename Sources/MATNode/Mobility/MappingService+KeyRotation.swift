#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATPacket
import MATSignaling
import Synchronization

/// `matctl rotate-key`: a new signing key for a running node (docs/operations.md, "Key
/// rotation"). The new key is written to the key file first (so a crash keeps it), then
/// signs every message from then on, and is registered in the IMS at once, for every HoA;
/// peers take it at their next lookup of the node (within a record TTL), which also starts
/// the node's sequence numbers afresh at each of them. Messages signed with the old key
/// no longer verify anywhere that has the new one.
extension MappingService {
    /// Rotates the signing key and returns once every registration carries the new key
    /// (or at once without an IMS key, or after `timeout` seconds with an error).
    public func rotateKey(timeout: Double = 30) -> KeyRotationReport {
        let ticket = KeyRotationTicket()
        keyRotationRequests.withLock { $0.append(ticket) }
        wakeup.signal()
        guard ticket.done.wait(timeout: .now() + timeout) == .success, let report = ticket.report.withLock({ $0 }) else {
            return KeyRotationReport(error: "no answer within \(Int(timeout)) s")
        }
        return report
    }

    /// On the service thread: starts the rotations asked for, and finishes those whose
    /// registrations all carry the new key.
    func rotateKeys(now: UInt64) {
        for ticket in keyRotationRequests.withLock({ queue -> [KeyRotationTicket] in
            defer { queue.removeAll() }
            return queue
        }) {
            start(ticket, now: now)
        }
        keyRotations.removeAll { rotation in
            let families = registrations.families
            let done = families.allSatisfy { confirmedKeys[$0] == rotation.publicKey }
            if done {
                rotation.ticket.finish(KeyRotationReport(previousKey: rotation.previousKey, publicKey: rotation.publicKey,
                                                         registered: families.isEmpty ? nil : true,
                                                         milliseconds: now - rotation.startedAt))
                return true
            }
            if now >= rotation.startedAt + 60_000 {
                rotation.ticket.finish(KeyRotationReport(
                    error: "the IMS has not confirmed the new key after 60 s; it goes on trying (see the log)",
                    previousKey: rotation.previousKey, publicKey: rotation.publicKey, registered: false,
                    milliseconds: now - rotation.startedAt))
                return true
            }
            // A registration that was on its way with the old key pushed the next one out
            // by half a lifetime: ask for one with the new key again.
            registrations.renew(where: { confirmedKeys[$0] != rotation.publicKey }, at: now)
            return false
        }
    }

    private func start(_ ticket: KeyRotationTicket, now: UInt64) {
        let path = config.signingKeyFile ?? config.stateDirectory + "/signing.key"
        let previous = signaling.publicKey.base64
        let fresh = SigningKey.generate()
        do {
            try SigningKeyFile.write(fresh, to: path)
        } catch {
            log(.error, "matd: rotating the signing key failed: \(error); the old key stays")
            ticket.finish(KeyRotationReport(error: "writing \(path): \(error)"))
            return
        }
        signaling.replaceKey(fresh)
        let publicKey = fresh.publicKey.base64
        log(.notice, "matd: new signing key \(path) (public key \(publicKey), was \(previous)); registering it")
        EventLog.shared.post("key_rotated", ["key": publicKey, "previous": previous])
        registrations.renewAll(at: now)
        keyRotations.append(PendingKeyRotation(ticket: ticket, previousKey: previous, publicKey: publicKey, startedAt: now))
    }
}

/// `matctl rotate-key`: what the rotation did.
public struct KeyRotationReport: Codable, Sendable, Equatable {
    /// Why nothing changed; nil when the key was rotated.
    public var error: String?
    /// The public key before, base64.
    public var previousKey: String
    /// The public key now, base64: what peers check this node's alerts with.
    public var publicKey: String
    /// Whether every registration carries the new key; nil without an IMS key.
    public var registered: Bool?
    /// From the request to the last registration's confirmation, milliseconds.
    public var milliseconds: UInt64

    public init(error: String? = nil, previousKey: String = "", publicKey: String = "", registered: Bool? = nil,
                milliseconds: UInt64 = 0) {
        self.error = error
        self.previousKey = previousKey
        self.publicKey = publicKey
        self.registered = registered
        self.milliseconds = milliseconds
    }
}

/// A rotation waiting for its registrations.
struct PendingKeyRotation {
    var ticket: KeyRotationTicket
    var previousKey: String
    var publicKey: String
    var startedAt: UInt64
}

/// Where the service thread leaves a rotation's report for the control thread.
final class KeyRotationTicket: Sendable {
    let done = DispatchSemaphore(value: 0)
    let report = Mutex<KeyRotationReport?>(nil)

    func finish(_ result: KeyRotationReport) {
        report.withLock { $0 = result }
        done.signal()
    }
}

extension MappingService {
    /// A peer's message does not verify with the key the IMS last gave for it: the peer may
    /// have rotated its key since this node's last lookup. Asks the IMS for the key again,
    /// at most once per peer every 5 s and within the signaling's global lookup budget,
    /// so forged messages cannot make the node a query generator. A pinned key changes
    /// only with the configuration.
    func keyMayHaveChanged(for hoa: IPAddress, mayLookUp: () -> Bool) -> Bool {
        guard !config.peers.contains(where: { $0.homeAddress == hoa && $0.publicKey != nil }),
              client != nil, config.domainPrefixes.contains(where: { $0.contains(hoa) }) else { return false }
        if lookingUp.contains(PendingLookup(hoa: hoa, purpose: .key)) { return true }
        let now = Self.milliseconds()
        guard keyLookups.allows(hoa, now: now), mayLookUp() else { return false }
        keyLookups.record(hoa, now: now)
        lookUp(hoa, for: .key)
        return true
    }
}
