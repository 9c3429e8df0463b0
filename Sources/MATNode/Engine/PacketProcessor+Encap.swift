import MATPacket

/// The direction and hold decisions of the UDP encapsulation's per-packet work
/// (docs/datapath.md, "Behind NAT"), with no I/O: the engine hands the IP packet here and
/// sends or delivers it as this says, so each decision has a unit test.
extension PacketProcessor {
    /// Where an application's packet (`packet`, the IP header first, `length` bytes) goes
    /// when its peer's traffic goes in UDP: the preferred MoA of its destination HoA, when
    /// it leaves this node's HoA for a peer with a mapping whose traffic is not held. Nil
    /// leaves it to the translation, which drops and keeps a held peer's packets as for the
    /// direct path.
    @inlinable
    public func encapsulationDestination(_ packet: UnsafeRawPointer, length: Int) -> IPAddress? {
        guard length >= 20 else { return nil }
        switch packet.load(as: UInt8.self) >> 4 {
        case 4:
            guard IPv4Address(loadingFrom: packet, offset: 12) == addresses.home4 else { return nil }
            let destination = IPv4Address(loadingFrom: packet, offset: 16)
            guard let peer = table.preferredMoA(forHoA: destination),
                  held.isEmpty || !held.contains(.v4(destination)),
                  familyHolds.isEmpty || !familyHolds.holds(.v4(destination)) else { return nil }
            return .v4(peer)
        case 6 where length >= 40:
            guard IPv6Address(loadingFrom: packet, offset: 8) == addresses.home6 else { return nil }
            let destination = IPv6Address(loadingFrom: packet, offset: 24)
            guard let peer = table.preferredMoA(forHoA: destination),
                  held.isEmpty || !held.contains(.v6(destination)),
                  familyHolds.isEmpty || !familyHolds.holds(.v6(destination)) else { return nil }
            return .v6(peer)
        default:
            return nil
        }
    }

    /// The MoA the peer that sent a carried packet (`packet`, the inner IP header first,
    /// `length` bytes) sends from: its inner source HoA's preferred MoA, when the packet is
    /// for this node's HoA; nil otherwise. A carried packet is the peer's only when it came
    /// from that MoA (or from the relay standing for it), so a spoofed datagram cannot
    /// inject traffic from a HoA whose peer is elsewhere.
    @inlinable
    public func carriedPeerMoA(_ packet: UnsafeRawPointer, length: Int) -> IPAddress? {
        guard length >= 20 else { return nil }
        switch packet.load(as: UInt8.self) >> 4 {
        case 4:
            guard IPv4Address(loadingFrom: packet, offset: 16) == addresses.home4 else { return nil }
            return table.preferredMoA(forHoA: IPv4Address(loadingFrom: packet, offset: 12)).map { .v4($0) }
        case 6 where length >= 40:
            guard IPv6Address(loadingFrom: packet, offset: 24) == addresses.home6 else { return nil }
            return table.preferredMoA(forHoA: IPv6Address(loadingFrom: packet, offset: 8)).map { .v6($0) }
        default:
            return nil
        }
    }
}
