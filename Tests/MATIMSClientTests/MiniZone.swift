import MATDNS
import MATPacket
@testable import MATIMSClient

/// A tiny authoritative zone for tests: answers queries, applies TSIG-signed updates
/// under the mapping policy (a key may write A/AAAA/TXT at its own name and PTRs under
/// `moa.<zone>`), and signs its replies. Knobs let tests make it misbehave.
struct MiniZone: Sendable {
    var zone = Fixture.zone
    var records: [DNSResourceRecord] = []
    var keyring = TSIGKeyring([Fixture.keyA])
    /// Answer updates NOERROR without changing anything.
    var ignoreUpdates = false
    /// Answer updates NOERROR without signing the reply.
    var unsignedSuccess = false
    /// Apply updates but answer BADTIME, as a server does to the resent copy of an update
    /// whose first copy it applied (a replay).
    var refuseAppliedUpdatesAsReplays = false
    /// Answer signed queries unsigned, as someone on the path without the key would.
    var unsignedAnswers = false

    /// The reply to `request` at time `now`, or nil to stay silent.
    mutating func handle(_ request: [UInt8], now: UInt64) -> [UInt8]? {
        guard let message = try? DNSMessage(bytes: request), !message.header.isResponse else { return nil }
        if message.header.opcode == .update {
            return update(request, message: message, now: now)
        }
        guard let question = message.questions.first else { return nil }
        let atName = records.filter { $0.name == question.name }
        var reply = message.response(code: atName.isEmpty ? .nxDomain : .noError)
        reply.edns = nil
        reply.answers = atName.filter { $0.type == question.type }
        guard let bytes = try? reply.encode() else { return nil }
        // A signed query gets a signed answer, as mat-ims, BIND and Knot give.
        guard !unsignedAnswers, case .verified(let context) = TSIG.verifyRequest(request, keyring: keyring, now: now),
              let key = keyring.key(named: context.keyName) else { return bytes }
        return try? TSIG.signResponse(bytes, key: key, request: context, now: now).bytes
    }

    private mutating func update(_ request: [UInt8], message: DNSMessage, now: UInt64) -> [UInt8]? {
        let outcome = TSIG.verifyRequest(request, keyring: keyring, now: now)
        guard case .verified(let context) = outcome else {
            if outcome == .unsigned { return try? message.response(code: .refused).encode() }
            return TSIG.errorResponse(to: request, outcome: outcome, keyring: keyring, now: now)
        }
        let key = keyring.key(named: context.keyName)!
        var code = DNSResponseCode.noError
        if let update = try? DNSUpdateRequest(message), update.zone == zone {
            if allowed(update, keyName: context.keyName) {
                if !ignoreUpdates { apply(update) }
                if refuseAppliedUpdatesAsReplays {
                    return TSIG.errorResponse(to: request, outcome: .badTime(context), keyring: keyring, now: now)
                }
            } else {
                code = .refused
            }
        } else {
            code = .formErr
        }
        var reply = message.response(code: code)
        reply.edns = nil
        guard let bytes = try? reply.encode() else { return nil }
        if unsignedSuccess && code == .noError { return bytes }
        return try? TSIG.signResponse(bytes, key: key, request: context, now: now).bytes
    }

    private func allowed(_ update: DNSUpdateRequest, keyName: DNSName) -> Bool {
        let moa = try! zone.prepending(label: "moa") // valid constant
        func ok(_ name: DNSName, _ type: DNSType) -> Bool {
            (name == keyName && [.a, .aaaa, .txt].contains(type))
                || (name.isSubdomain(of: moa) && name != moa && type == .ptr)
        }
        return update.operations.allSatisfy { op in
            switch op {
            case .add(let rr): ok(rr.name, rr.type)
            case .deleteRRset(let name, let type): ok(name, type)
            case .deleteRecord(let name, let data): ok(name, data.type)
            case .deleteAllRRsets: false
            }
        }
    }

    private mutating func apply(_ update: DNSUpdateRequest) {
        for op in update.operations {
            switch op {
            case .add(let rr):
                if !records.contains(where: { $0.name == rr.name && $0.data == rr.data }) { records.append(rr) }
            case .deleteRRset(let name, let type):
                records.removeAll { $0.name == name && $0.type == type }
            case .deleteRecord(let name, let data):
                records.removeAll { $0.name == name && $0.data == data }
            case .deleteAllRRsets(let name):
                records.removeAll { $0.name == name }
            }
        }
    }

    /// Publishes a mapping directly, as another node's registration would.
    mutating func publish(hoa: IPAddress, moas: [IPAddress], sequence: UInt64?, ttl: UInt32 = 10,
                          publicKey: String? = nil) {
        let owner = Fixture.names.hoaName(for: hoa)
        records.removeAll { $0.name == owner }
        for moa in moas {
            records.append(DNSResourceRecord(name: owner, ttl: ttl, data: MappingNames.addressRecord(moa)))
            records.append(DNSResourceRecord(name: Fixture.names.moaName(for: moa), ttl: ttl, data: .ptr(owner)))
        }
        if let sequence {
            records.append(DNSResourceRecord(name: owner, ttl: ttl, data: MappingNames.versionRecord(sequence: sequence,
                                                                                         publicKey: publicKey)))
        }
    }

    /// Records at `name` of `type`.
    func rrset(_ name: DNSName, _ type: DNSType) -> [DNSRecordData] {
        records.filter { $0.name == name && $0.type == type }.map(\.data)
    }
}
