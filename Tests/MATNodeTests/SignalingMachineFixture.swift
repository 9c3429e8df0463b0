import MATPacket
import MATSignaling
import Testing
@testable import MATNode

/// The surroundings of a ``SignalingMachine`` in a unit test: fixed addresses, the keys
/// this node knows, which lookups the IMS would take, and counted sequence numbers.
final class FakeSignalingEnvironment: SignalingEnvironment {
    var nodeAddresses = NodeAddresses(home4: IPv4Address("192.0.2.1")!, mobile4: IPv4Address("198.51.100.1")!)
    /// Keys bound to peers (pinned or learned).
    var keys: [IPAddress: VerifyingKey] = [:]
    /// The MoAs each peer's traffic goes to now.
    var inUse: [IPAddress: [IPAddress]] = [:]
    /// Whether an IMS is configured: unknown and perhaps rotated keys are looked up.
    var hasIMS = false
    /// Lookups started, in order: keys (`key`) and unanswering peers (`again`).
    private(set) var lookups: [(hoa: IPAddress, purpose: String)] = []
    private var sequence: UInt64 = 1_000

    func verifyingKey(for hoa: IPAddress, mayLookUp: () -> Bool) -> KeyAnswer {
        if let key = keys[hoa] { return .known(key) }
        guard hasIMS, mayLookUp() else { return .unknown }
        lookups.append((hoa, "key"))
        return .lookingUp
    }

    func keyMayHaveChanged(for hoa: IPAddress, mayLookUp: () -> Bool) -> Bool {
        guard hasIMS, mayLookUp() else { return false }
        lookups.append((hoa, "key"))
        return true
    }

    func currentMoAs(of hoa: IPAddress) -> [IPAddress] { inUse[hoa] ?? [] }

    func lookUpAgain(hoa: IPAddress) -> Bool {
        guard hasIMS else { return false }
        lookups.append((hoa, "again"))
        return true
    }

    func takeSequence(for what: String) -> UInt64? {
        sequence += 1
        return sequence
    }
}

/// Addresses, keys and message helpers shared by the signaling machine's tests.
enum SignalingFixture {
    static let home = IPAddress("192.0.2.1")!
    static let mobile = IPAddress("198.51.100.1")!
    static let peer = IPAddress("192.0.2.20")!
    static let peerMoA = IPAddress("198.51.100.20")!
    static let peerNewMoA = IPAddress("203.0.113.20")!
    static let ownKey = try! SigningKey(rawRepresentation: (0..<32).map { UInt8($0) })
    static let peerKey = try! SigningKey(rawRepresentation: (32..<64).map { UInt8($0) })
    static let forger = try! SigningKey(rawRepresentation: (64..<96).map { UInt8($0) })

    /// A machine of this node with `peer`'s key known and its traffic going to `peerMoA`.
    static func machine(admission: SignalAdmission = SignalAdmission()) -> (SignalingMachine, FakeSignalingEnvironment) {
        let environment = FakeSignalingEnvironment()
        environment.keys[peer] = peerKey.publicKey
        environment.inUse[peer] = [peerMoA]
        return (SignalingMachine(key: ownKey, lifetime: 600, admission: admission), environment)
    }

    /// An alert to the peer at its MoA in use, at time 0: what was sent.
    static func announce(_ machine: inout SignalingMachine, _ environment: FakeSignalingEnvironment) throws -> [SignalingAction] {
        let actions = machine.announce(to: peer, at: peerMoA, now: 0, environment: environment)
        return try #require(actions)
    }

    /// `body` from the peer to this node, sealed with `key`.
    static func fromPeer(_ body: SignalBody, sequence: UInt64, key: SigningKey = peerKey) -> [UInt8] {
        SignalCodec.seal(SignalMessage(sequence: sequence, sender: peer, receiver: home, body: body), with: key)
    }

    /// An update from the peer announcing `moas`.
    static func update(_ moas: [IPAddress], sequence: UInt64, key: SigningKey = peerKey) -> [UInt8] {
        fromPeer(.bindingUpdate(moas: moas, lifetime: 300), sequence: sequence, key: key)
    }

    /// The datagrams among `actions`, each opened and verified with this node's key.
    static func sent(_ actions: [SignalingAction]) -> [(message: SignalMessage, to: IPAddress, bytes: [UInt8])] {
        actions.compactMap { action in
            guard case .transmit(let bytes, let to) = action else { return nil }
            guard let message = try? SignalCodec.open(bytes).verify(with: ownKey.publicKey) else {
                Issue.record("sent something that is not a message of this node: \(bytes.count) bytes")
                return nil
            }
            return (message, to, bytes)
        }
    }

    /// The actions other than datagrams, events and log lines: what the service is asked to do.
    static func effects(_ actions: [SignalingAction]) -> [SignalingAction] {
        actions.filter {
            switch $0 {
            case .transmit, .event, .log: false
            default: true
            }
        }
    }
}

extension SignalingMachine {
    /// ``receive(_:from:now:environment:)`` of an array.
    mutating func receive(_ bytes: [UInt8], from source: IPAddress, now: UInt64,
                          environment: FakeSignalingEnvironment) -> [SignalingAction] {
        bytes.withUnsafeBytes { receive($0, from: source, now: now, environment: environment) }
    }
}
