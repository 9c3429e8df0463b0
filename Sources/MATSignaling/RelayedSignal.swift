#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto
import MATPacket

/// A signaling message (docs/signaling.md) carried through a relay: encapsulation kind 7
/// (``EncapWire``), for two nodes whose NATs drop what comes to their `signaling-port`
/// (docs/signaling.md, "Signaling through the relay").
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | encapsulation header, kind 7 |
/// | 8 | 17 | origin: family byte (4 or 6) and 16 address bytes, as in signaling; zero from the sender |
/// | 25 | 16 | MAC: HMAC-SHA256(receiver's relay secret, origin and message) cut to 16 bytes; zero from the sender |
/// | 41 | 116 to 1200 | the signaling message, as sent on `signaling-port` (magic `MATs`) |
///
/// The sender leaves the origin and MAC zero. The relay routes by the message's receiver
/// HoA, only from a binding that registered its sender HoA, and writes into the origin the
/// address that binding's registrations come from (the sender's NAT's public address): the
/// receiver treats the message as sent from there, so "the response comes from the MoA
/// that was challenged" keeps its meaning through the relay. The relay then writes the
/// MAC with the secret the receiving binding agreed on with the relay through its signed
/// registration (``RelaySecret``, ``RelayRegistration``, ``RelayAnswer``): the origin is the relay's word only when the
/// MAC says the relay wrote it, as anyone can send a datagram with the relay's address as
/// its source. Pure; reading and stamping allocate nothing of their own (swift-crypto's
/// digest contexts are its allocations).
public enum RelayedSignal {
    public static let originOffset = EncapWire.headerLength
    public static let macOffset = originOffset + addressLength
    public static let macLength = 16
    public static let signalOffset = macOffset + macLength
    static let addressLength = 17
    /// The shortest framing of a message: its header and signature.
    public static let minimumLength = signalOffset + SignalCodec.headerLength + SignalCodec.signatureLength
    public static let maximumLength = signalOffset + SignalCodec.maximumLength

    /// Whether `datagram` (whose encapsulation header was read) has a relayed signal's
    /// length and carries something that starts as a signaling message.
    static func fits(_ datagram: UnsafeRawBufferPointer) -> Bool {
        guard (minimumLength...maximumLength).contains(datagram.count) else { return false }
        for (index, byte) in SignalWire.magic.enumerated() where datagram[signalOffset + index] != byte { return false }
        return true
    }

    /// `signal` (a sealed message) framed for the relay, with a zero origin and MAC.
    public static func wrap(_ signal: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: signalOffset)
        bytes.withUnsafeMutableBytes { EncapWire.writeHeader(.relayedSignal, at: $0.baseAddress!) }
        return bytes + signal
    }

    /// The message's sender and receiver HoAs as its header names them (not verified:
    /// the relay routes by them, the receiver verifies the signature); nil when either
    /// is badly encoded. `datagram` must be one ``EncapWire/parse(_:)`` took as a relayed
    /// signal.
    public static func addresses(_ datagram: UnsafeRawBufferPointer) -> (sender: IPAddress, receiver: IPAddress)? {
        guard datagram.count >= minimumLength else { return nil }
        do {
            return (try SignalWire.address(datagram, at: signalOffset + SignalWire.senderOffset),
                    try SignalWire.address(datagram, at: signalOffset + SignalWire.receiverOffset))
        } catch {
            return nil
        }
    }

    /// The receiver HoA a sealed signaling message names (not verified); nil for anything
    /// that is not framed as one (an encapsulation keepalive, a cookie reply).
    public static func receiver(ofSignal bytes: [UInt8]) -> IPAddress? {
        guard bytes.count >= SignalCodec.headerLength + SignalCodec.signatureLength,
              bytes.starts(with: SignalWire.magic) else { return nil }
        do {
            return try SignalWire.address(bytes, at: SignalWire.receiverOffset)
        } catch {
            return nil
        }
    }

    /// The origin the relay wrote; nil when it is zero or badly encoded.
    public static func origin(_ datagram: UnsafeRawBufferPointer) -> IPAddress? {
        guard datagram.count >= signalOffset else { return nil }
        do {
            return try SignalWire.address(datagram, at: originOffset)
        } catch {
            return nil
        }
    }

    /// Writes `origin` into `datagram` (a relayed signal ``EncapWire/parse(_:)`` took) and
    /// the MAC over it and the message with the receiving binding's `secret` (the relay,
    /// before it sends it on). Writes the bytes in place.
    public static func stamp(_ origin: IPAddress, for secret: RelaySecret, in datagram: UnsafeMutableRawBufferPointer) {
        guard datagram.count >= signalOffset, let base = datagram.baseAddress else { return }
        let at = base + originOffset
        switch origin {
        case .v4(let v4):
            at.storeBytes(of: 4, as: UInt8.self)
            at.storeBytes(of: v4.value.bigEndian, toByteOffset: 1, as: UInt32.self)
            (at + 5).initializeMemory(as: UInt8.self, repeating: 0, count: addressLength - 5)
        case .v6(let v6):
            at.storeBytes(of: 6, as: UInt8.self)
            at.storeBytes(of: v6.high.bigEndian, toByteOffset: 1, as: UInt64.self)
            at.storeBytes(of: v6.low.bigEndian, toByteOffset: 9, as: UInt64.self)
        }
        mac(UnsafeRawBufferPointer(datagram), secret).withUnsafeBytes { code in
            (base + macOffset).copyMemory(from: code.baseAddress!, byteCount: macLength)
        }
    }

    /// Whether the MAC in `datagram` is the one `secret` gives its origin and message: the
    /// relay this node agreed on `secret` with stamped it, and neither was changed since. Compares in
    /// time independent of where a difference is. False for anything shorter than the
    /// framing.
    public static func isAuthentic(_ datagram: UnsafeRawBufferPointer, secret: RelaySecret) -> Bool {
        guard datagram.count >= signalOffset else { return false }
        return mac(datagram, secret).withUnsafeBytes { code in
            var difference: UInt8 = 0
            for index in 0..<macLength { difference |= code[index] ^ datagram[macOffset + index] }
            return difference == 0
        }
    }

    private static func mac(_ datagram: UnsafeRawBufferPointer, _ secret: RelaySecret) -> HashedAuthenticationCode<SHA256> {
        var hmac = secret.primed
        hmac.update(data: UnsafeRawBufferPointer(rebasing: datagram[originOffset..<macOffset]))
        hmac.update(data: UnsafeRawBufferPointer(rebasing: datagram[signalOffset...]))
        return hmac.finalize()
    }
}

/// The 32-byte key with which a relay authenticates what it stamps on the signals it
/// passes to a node (``RelayedSignal``): agreed on by the node's exchange key in its
/// signed registration (``RelayRegistration``) and the relay's in its answer
/// (``RelayAnswer``), never sent (``RelayExchangeKey``). Deliberately not
/// `CustomStringConvertible`.
public struct RelaySecret: Sendable {
    public static let length = 32
    /// The secret's bytes.
    public let bytes: [UInt8]
    /// HMAC's state after the key (set up once, not per signal).
    let primed: HMAC<SHA256>

    /// `bytes` as a secret; nil unless it has ``length`` bytes.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        self.bytes = bytes
        primed = HMAC<SHA256>(key: SymmetricKey(data: bytes))
    }

    /// A fresh secret from the system's CSPRNG (for tests and fuzzing: matd agrees on its
    /// secrets, ``RelayExchangeKey``).
    public static func random() -> RelaySecret {
        var generator = SystemRandomNumberGenerator()
        return RelaySecret((0..<length).map { _ in UInt8.random(in: .min ... .max, using: &generator) })!
    }
}
