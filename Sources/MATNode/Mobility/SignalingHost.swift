import MATPacket
import MATSignaling

/// What the signaling needs from the mapping service that owns it. ``SignalingMachine``
/// asks the questions (addresses, keys, MoAs in use, lookups) through its
/// ``SignalingEnvironment`` while it decides; the rest are the ``SignalingAction``s that
/// ``Signaling`` carries out after each event, so the service may call back into the
/// signaling from them.
protocol SignalingHost: AnyObject {
    /// The node's HoAs and current MoAs.
    var nodeAddresses: NodeAddresses { get }
    /// The key bound to `hoa`: pinned in the configuration or published in the IMS; when
    /// not known yet, a lookup may be on its way (`keyArrived` follows its answer), if
    /// `mayLookUp` (asked only right before one would start) allows it.
    func verifyingKey(for hoa: IPAddress, mayLookUp: () -> Bool) -> KeyAnswer
    /// The MoAs this node sends `hoa`'s traffic to now (empty for an unknown peer).
    func currentMoAs(of hoa: IPAddress) -> [IPAddress]
    /// A peer's verified update announces `moas`, of which `unproven` are now challenged:
    /// send there already, within the anti-amplification limit, until `adopt` or
    /// `challengeFailed`. `updateBytes`, the update's size, counts as received from each.
    func tryOut(hoa: IPAddress, moas: [IPAddress], unproven: [IPAddress], sequence: UInt64, updateBytes: UInt64)
    /// A peer proved it is reachable at `moas` (each answered its own challenge, or was
    /// proven before): send its traffic there from now on.
    func adopt(hoa: IPAddress, moas: [IPAddress], lifetime: UInt32, sequence: UInt64)
    /// No MoA of update `sequence` from `hoa` answered its challenge: undo `tryOut`.
    func challengeFailed(hoa: IPAddress, sequence: UInt64)
    /// A signed message of `hoa`'s answered something only this node sent (a probe, a
    /// challenge or an update of this node's): `hoa` is alive and, when `moa` is given,
    /// reachable there. `key` is the key the answer verified with when it is not the one
    /// bound to `hoa` (a probe of a key an IMS answer named).
    func reached(hoa: IPAddress, at moa: IPAddress?, key: VerifyingKey?)
    /// Nothing answered from `moa` for `hoa`: a probe's or a challenge's last wait ended.
    func unreachable(hoa: IPAddress, at moa: IPAddress)
    /// A peer challenged this node's update: it has the update and takes packets from the
    /// new MoA, so the traffic held for it may flow before its ack.
    func peerIsAlive(hoa: IPAddress)
    /// A peer acknowledged this node's mapping, or will not: its traffic may flow again.
    func settled(hoa: IPAddress, acknowledged: Bool)
    /// Alerts to `hoa` go unanswered (it may have moved too): look it up in the IMS again
    /// (`redirect` follows the answer). Returns false without an IMS.
    func lookUpAgain(hoa: IPAddress) -> Bool
    /// A message from `hoa` does not verify with the key bound to it, which the IMS may
    /// have replaced (a rotation): whether a lookup of its key is on its way now (bounded
    /// as for unknown senders; `keyArrived` follows its answer).
    func keyMayHaveChanged(for hoa: IPAddress, mayLookUp: () -> Bool) -> Bool
}

/// What the service knows of a signaling peer's key.
enum KeyAnswer {
    case known(VerifyingKey)
    /// Asked of the IMS; the message waits for the answer.
    case lookingUp
    case unknown
}

/// How a peer's alerts went, for `matctl peers`.
public struct PeerSignalState: Sendable, Equatable {
    public enum Alert: String, Sendable {
        case none, acknowledged, awaitingAck = "awaiting_ack", unanswered
    }
    /// The last alert to this peer: acknowledged, still waiting, or given up on.
    public var alert = Alert.none
    /// When the last acknowledgement came (monotonic milliseconds).
    public var lastAckAt: UInt64?
    /// From the update to its acknowledgement, when it was sent only once.
    public var roundTripMilliseconds: UInt64?
}
