import MATPacket

/// The flow an outbound packet belongs to: the peer it is for, its transport protocol and,
/// for TCP and UDP, its two ports.
///
/// - During a hold, the engine keeps the last dropped packet of each flow (a few slots in
///   all) and sends them when the peer is released, so every TCP connection to the peer
///   gets one segment of its own through at once, and with it the ACK that restarts its
///   backed-off sender.
/// - While a peer's MoA is unvalidated, no one flow may spend more than half of what may
///   be sent there (``PacketProcessor/PathBudget``).
struct PacketFlow: Hashable, Sendable {
    /// The peer's HoA (the packet's destination before translation).
    var peer: IPAddress
    /// The transport protocol number (the last IPv6 next header).
    var transportProtocol: UInt8
    /// Source port in the high half, destination port in the low half; 0 for other
    /// protocols and for fragments after the first.
    var ports: UInt32

    /// The flow of the packet at `packet` (`length` bytes, no virtio header) sent to
    /// `peer`. A packet that does not parse still gets a flow of its own, protocol 0.
    init(packet: UnsafeRawPointer, length: Int, peer: IPAddress) {
        self.peer = peer
        let layout: PacketLayout
        do {
            layout = try PacketLayout.parse(packet, length: length)
        } catch {
            // Not reached in the engine (a packet is held or charged only once its peer
            // is known, which needs a parsed header); all such packets share one flow.
            transportProtocol = 0
            ports = 0
            return
        }
        transportProtocol = layout.transportProtocol
        if layout.transportProtocol == IPProtocolNumber.tcp || layout.transportProtocol == IPProtocolNumber.udp,
           let offset = layout.transportOffset, offset + 4 <= length {
            ports = UInt32(packet.loadUnaligned(fromByteOffset: offset, as: UInt32.self).bigEndian)
        } else {
            ports = 0
        }
    }
}
