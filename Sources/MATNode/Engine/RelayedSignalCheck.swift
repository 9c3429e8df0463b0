import MATPacket
import MATSignaling

/// Whether a node takes a relayed signal (``RelayedSignal``) as its relay's word on where
/// the message came from: only from its relay's address and `encap-port`, only with the
/// MAC the relay writes with a secret this node agreed on with it (``RelaySecrets``: a
/// source address is easily forged, so the first alone would let anyone pick the origin:
/// docs/security.md, N4), and only with an origin stamped. The MAC is checked before the
/// origin is read. Pure and allocation-free apart from the MAC's digest contexts.
enum RelayedSignalCheck {
    /// The origin to treat the message as sent from at `now`; nil to refuse the datagram.
    static func origin(_ datagram: UnsafeRawBufferPointer, from sender: RelayTable.Binding, relay: RelayTable.Binding?,
                       secrets: RelaySecrets, now: UInt64) -> IPAddress? {
        guard let relay, sender == relay, secrets.authenticate(datagram, now: now) else { return nil }
        return RelayedSignal.origin(datagram)
    }
}
