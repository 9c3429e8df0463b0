import MATPacket
import MATWire

/// The kind of a signaling message: the `type` byte at offset 5 of the header.
public enum SignalType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// A node announces the MoAs its HoA is reachable at now.
    case bindingUpdate = 1
    /// The receiver of a binding update says whether it took it.
    case bindingAck = 2
    /// The receiver of a binding update checks that the sender really is at the new MoA.
    case challenge = 3
    /// The mover's answer to a challenge, sent from the MoA being checked.
    case challengeResponse = 4

    public var description: String {
        switch self {
        case .bindingUpdate: "bindingUpdate"
        case .bindingAck: "bindingAck"
        case .challenge: "challenge"
        case .challengeResponse: "challengeResponse"
        }
    }
}

/// The outcome a binding acknowledgement reports. Any other wire value is refused with
/// ``SignalError/unknownStatus(_:)``.
public enum AckStatus: UInt8, Sendable, CaseIterable {
    /// The binding was taken: the receiver now sends to the new MoAs.
    case accepted = 0
    /// The binding was refused (for example, the challenge failed or the table is full).
    case refused = 1
}

/// A 16-byte random value a challenge carries and its response echoes.
///
/// Held as two 64-bit halves, each most significant byte first, so it is a plain value
/// with no heap storage.
public struct Nonce: Hashable, Sendable, CustomStringConvertible {
    /// Bytes 0-7, first byte most significant.
    public let high: UInt64
    /// Bytes 8-15, first byte most significant.
    public let low: UInt64

    /// Wraps the two halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Builds a nonce from exactly 16 bytes (a precondition: anything else traps).
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "a nonce is 16 bytes, got \(bytes.count)")
        high = BigEndian.u64(bytes, at: 0)
        low = BigEndian.u64(bytes, at: 8)
    }

    /// A fresh nonce from the system's cryptographically secure generator.
    public static func random() -> Nonce {
        var generator = SystemRandomNumberGenerator()
        return Nonce(high: generator.next(), low: generator.next())
    }

    /// The sixteen bytes in wire order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    /// Lower-case hex, 32 digits.
    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// What a message says, by type.
public enum SignalBody: Equatable, Sendable {
    /// The sender's HoA is reachable at `moas` (1 to 8, all of the HoA's family) for
    /// `lifetime` seconds.
    case bindingUpdate(moas: [IPAddress], lifetime: UInt32)
    /// Acknowledges the binding update numbered `sequence`.
    case bindingAck(sequence: UInt64, status: AckStatus)
    /// Asks the mover to echo `nonce` from the new MoA, for the update numbered `sequence`.
    case challenge(nonce: Nonce, sequence: UInt64)
    /// Echoes the challenge's `nonce` for the update numbered `sequence`.
    case challengeResponse(nonce: Nonce, sequence: UInt64)

    /// The message type this body belongs to.
    public var type: SignalType {
        switch self {
        case .bindingUpdate: .bindingUpdate
        case .bindingAck: .bindingAck
        case .challenge: .challenge
        case .challengeResponse: .challengeResponse
        }
    }
}

/// One signaling message, as sealed by ``SignalCodec/seal(_:with:)`` and returned by
/// ``UnverifiedSignal/verify(with:)``.
///
/// Both HoAs must be of one family (a HoA talks to HoAs of its own family), and a binding
/// update carries 1 to ``SignalCodec/maximumMoAs`` MoAs of that family too;
/// ``validate()`` checks this, and sealing a message that breaks it traps.
public struct SignalMessage: Equatable, Sendable {
    /// The sender's counter. Binding updates from one sender must carry increasing numbers
    /// (see ``ReplayGuard``); the other types number their own sends the same way.
    public var sequence: UInt64
    /// The sender's home address.
    public var sender: IPAddress
    /// The home address of the node the message is for.
    public var receiver: IPAddress
    /// What the message says.
    public var body: SignalBody

    /// Builds a message.
    public init(sequence: UInt64, sender: IPAddress, receiver: IPAddress, body: SignalBody) {
        self.sequence = sequence
        self.sender = sender
        self.receiver = receiver
        self.body = body
    }

    /// The message type, from the body.
    public var type: SignalType { body.type }

    /// Checks the rules the wire format imposes beyond the field layout: sender and
    /// receiver of one family, and for a binding update 1 to 8 MoAs of that family.
    /// ``SignalCodec/seal(_:with:)`` requires a message that passes.
    public func validate() throws(SignalError) {
        guard sender.family == receiver.family else { throw .familyMismatch }
        if case .bindingUpdate(let moas, _) = body {
            guard !moas.isEmpty else { throw .noAddresses }
            guard moas.count <= SignalCodec.maximumMoAs else { throw .tooManyAddresses }
            guard moas.allSatisfy({ $0.family == sender.family }) else { throw .familyMismatch }
        }
    }
}
