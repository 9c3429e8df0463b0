import MATPacket
import MATSignaling

/// Whether a node takes a relayed signal (``RelayedSignal``) as its relay's word on where
/// the message came from: only from its relay's address and `encap-port`, only with the
/// MAC the relay writes with the secret this node registered (a source address is easily
/// forged, so the first alone would let anyone pick the origin: docs/security.md, N4), and
/// only with an origin stamped. The MAC is checked before the origin is read. Pure and
/// allocation-free apart from the MAC's digest contexts.
enum RelayedSignalCheck {
    /// The origin to treat the message as sent from; nil to refuse the datagram.
    static func origin(_ datagram: UnsafeRawBufferPointer, from sender: RelayTable.Binding, relay: RelayTable.Binding?,
                       secret: RelaySecret) -> IPAddress? {
        guard let relay, sender == relay, RelayedSignal.isAuthentic(datagram, secret: secret) else { return nil }
        return RelayedSignal.origin(datagram)
    }
}
