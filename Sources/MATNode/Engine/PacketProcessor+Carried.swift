import MATPacket

extension PacketProcessor {
    /// Whether a packet carried in UDP encapsulation from `moa`, already found to be from
    /// the peer that sends from there, may be delivered as that peer's: not while `moa` is
    /// a first contact's MoA whose probe is not answered yet (``Command/limitUntilProven(_:)``),
    /// the same rule as for the packets the engine translates (``overBudget(_:length:direction:)``).
    /// What comes from a MoA under check counts as received from it either way (`length`
    /// bytes, the inner packet), for its path's allowance; a refused packet is counted as
    /// the TUN path counts it (`unvalidatedPath`). No lookup while nothing is under check.
    @inlinable
    public mutating func admitsCarried(from moa: IPAddress, length: Int) -> Bool {
        guard !unvalidated.isEmpty, unvalidated[moa] != nil else { return true }
        unvalidated[moa]!.received &+= UInt64(length)
        guard !unvalidated[moa]!.deliversInbound else { return true }
        counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] &+= 1
        return false
    }
}
