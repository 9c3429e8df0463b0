import MATLog
import MATPacket
import MATSignaling

/// What ``SignalingMachine`` asks of its surroundings while it decides: the node's
/// addresses, the keys bound to peers, the mappings in use, IMS lookups and sequence
/// numbers. The daemon answers from the mapping service and the sequence store; a unit
/// test answers from fixed values, so every decision runs without sockets or root.
protocol SignalingEnvironment {
    /// The node's HoAs and the MoAs it announces.
    var nodeAddresses: NodeAddresses { get }
    /// As ``SignalingHost/verifyingKey(for:mayLookUp:)``.
    func verifyingKey(for hoa: IPAddress, mayLookUp: () -> Bool) -> KeyAnswer
    /// As ``SignalingHost/keyMayHaveChanged(for:mayLookUp:)``.
    func keyMayHaveChanged(for hoa: IPAddress, mayLookUp: () -> Bool) -> Bool
    /// As ``SignalingHost/currentMoAs(of:)``.
    func currentMoAs(of hoa: IPAddress) -> [IPAddress]
    /// As ``SignalingHost/lookUpAgain(hoa:)``: starts a lookup, so it is asked only when
    /// the machine wants one.
    func lookUpAgain(hoa: IPAddress) -> Bool
    /// The next sequence number for `what`, or nil when the counter cannot be persisted:
    /// a number that might repeat after a crash is never used.
    func takeSequence(for what: String) -> UInt64?
}

/// What ``SignalingMachine`` decided should happen, in the order it should happen; the
/// driver (``Signaling``) carries each out. The mapping effects are the ``SignalingHost``
/// calls of the same names.
enum SignalingAction: Equatable {
    /// Send `bytes` (sealed, with any cookie attached) to the signaling port of `to`.
    case transmit([UInt8], to: IPAddress)
    /// ``SignalingHost/tryOut(hoa:moas:unproven:sequence:updateBytes:)``.
    case tryOut(hoa: IPAddress, moas: [IPAddress], unproven: [IPAddress], sequence: UInt64, updateBytes: UInt64)
    /// ``SignalingHost/adopt(hoa:moas:lifetime:sequence:)``.
    case adopt(hoa: IPAddress, moas: [IPAddress], lifetime: UInt32, sequence: UInt64)
    /// ``SignalingHost/challengeFailed(hoa:sequence:)``.
    case challengeFailed(hoa: IPAddress, sequence: UInt64)
    /// ``SignalingHost/reached(hoa:at:key:)``.
    case reached(hoa: IPAddress, at: IPAddress?, key: VerifyingKey?)
    /// ``SignalingHost/unreachable(hoa:at:)``.
    case unreachable(hoa: IPAddress, at: IPAddress)
    /// ``SignalingHost/peerIsAlive(hoa:)``.
    case peerIsAlive(hoa: IPAddress)
    /// ``SignalingHost/settled(hoa:acknowledged:)``.
    case settled(hoa: IPAddress, acknowledged: Bool)
    /// An event for `matctl monitor` (``EventLog``).
    case event(String, [String: String])
    /// A line for the log.
    case log(LogLevel, String)
}
