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
        // One hash lookup: the index serves the credit and the check.
        guard !unvalidated.isEmpty, let index = unvalidated.index(forKey: moa) else { return true }
        unvalidated.values[index].received &+= UInt64(length)
        guard !unvalidated.values[index].deliversInbound else { return true }
        counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] &+= 1
        return false
    }
}

/// What becomes of a relayed packet (``PacketProcessor/admitsRelayed(_:length:from:port:relay:endpoints:)``).
public enum RelayedAdmission: Equatable, Sendable {
    /// Written into the TUN device as the peer's.
    case deliver
    /// Not from this node's relay, not for its HoA, or from a HoA whose peer it does not
    /// reach in UDP: counted as `encap_relay_refused`.
    case refused
    /// From a peer whose MoA is a first contact's under check: already counted as
    /// `unvalidated_path`.
    case unproven
}

extension PacketProcessor {
    /// Whether a relayed packet (`packet`, the inner IP header first, `length` bytes) that
    /// came from `source`:`port` may be delivered as its peer's. The relay stands for the
    /// peer's MoA, so the MoA it is judged by is the one its inner source HoA is mapped to
    /// (``carriedPeerMoA(_:length:)``), not the relay's address: it must come from `relay`,
    /// that MoA must be one this node reaches in UDP (`endpoints`; only for those does the
    /// relay stand in), and then the rule for carried packets holds for that MoA
    /// (``admitsCarried(from:length:)``): a first contact's MoA under check delivers nothing
    /// through the relay either.
    public mutating func admitsRelayed(_ packet: UnsafeRawPointer, length: Int, from source: IPAddress,
                                       port: UInt16, relay: RelayTable.Binding,
                                       endpoints: borrowing EncapEndpoints) -> RelayedAdmission {
        guard source == relay.address, port == relay.port,
              let peer = carriedPeerMoA(packet, length: length),
              endpoints.port(for: peer) != nil else { return .refused }
        return admitsCarried(from: peer, length: length) ? .deliver : .unproven
    }
}
