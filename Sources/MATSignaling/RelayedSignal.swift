import MATPacket

/// A signaling message (docs/signaling.md) carried through a relay: encapsulation kind 7
/// (``EncapWire``), for two nodes whose NATs drop what comes to their `signaling-port`
/// (docs/signaling.md, "Signaling through the relay").
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | encapsulation header, kind 7 |
/// | 8 | 17 | origin: family byte (4 or 6) and 16 address bytes, as in signaling; zero from the sender |
/// | 25 | 116 to 1200 | the signaling message, as sent on `signaling-port` (magic `MATs`) |
///
/// The sender leaves the origin zero. The relay routes by the message's receiver HoA, only
/// from a binding that registered its sender HoA, and writes into the origin the address
/// that binding's registrations come from (the sender's NAT's public address): the
/// receiver treats the message as sent from there, so "the response comes from the MoA
/// that was challenged" keeps its meaning through the relay. Pure, allocation-free reading.
public enum RelayedSignal {
    public static let originOffset = EncapWire.headerLength
    public static let signalOffset = originOffset + addressLength
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

    /// `signal` (a sealed message) framed for the relay, with a zero origin.
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

    /// Writes `origin` into the datagram at `base` (the relay, before it sends it on).
    public static func stamp(_ origin: IPAddress, at base: UnsafeMutableRawPointer) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(addressLength)
        SignalWire.append(origin, to: &bytes)
        (base + originOffset).copyMemory(from: bytes, byteCount: addressLength)
    }
}
