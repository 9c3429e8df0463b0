import MATPacket

/// The peers whose packets the engine delivered inbound since the control plane last
/// looked, translated or carried in UDP encapsulation: evidence that a learned peer is
/// alive without any signaling, which ``IdleProbing`` counts, for a limited time (a
/// peer sending bulk data needs a probe less often to show it is there).
///
/// The engine marks the source of each inbound packet it translated, or carried packet
/// it wrote into the TUN device (the peer's HoA either way), in a small direct-mapped
/// set: per packet one load and compare, and a store only for a peer's first packet
/// since the last ``take()``. The engine hands the marks over when it publishes its
/// counters (every 64 packets, translated or carried, or when it goes idle). Packets the
/// kernel fast path translates never reach the engine: the kernel notes their peers
/// itself (``FastPathHeard``). Two peers in one slot overwrite each other, so one of them
/// may miss a mark: that costs it a probe at worst, never a mapping kept on someone
/// else's packets.
public struct ReceiveMarks {
    @usableFromInline static let slotBits = 6
    @usableFromInline var v4: ContiguousArray<UInt32>
    @usableFromInline var v6: ContiguousArray<IPv6Address>
    /// Whether anything was marked since the last ``take()``.
    public var isEmpty: Bool { !marked }
    @usableFromInline var marked = false

    public init() {
        v4 = ContiguousArray(repeating: 0, count: 1 << Self.slotBits)
        v6 = ContiguousArray(repeating: IPv6Address(high: 0, low: 0), count: 1 << Self.slotBits)
    }

    /// Marks the source address of the translated packet at `packet` (a parsed IPv4 or
    /// IPv6 header; the unspecified address is never marked).
    @inlinable
    public mutating func mark(translated packet: UnsafeRawPointer) {
        if packet.load(as: UInt8.self) >> 4 == 4 {
            let source = IPv4Address(loadingFrom: packet, offset: 12).value
            let slot = Int(truncatingIfNeeded: (source &* 0x9E37_79B1) >> (32 - UInt32(Self.slotBits)))
            if v4[slot] != source {
                v4[slot] = source
                marked = true
            }
        } else {
            let source = IPv6Address(loadingFrom: packet, offset: 8)
            let slot = Int(truncatingIfNeeded: ((source.high ^ source.low) &* 0x9E37_79B9_7F4A_7C15) >> (64 - UInt64(Self.slotBits)))
            if v6[slot] != source {
                v6[slot] = source
                marked = true
            }
        }
    }

    /// The addresses marked since the last call; the marks start afresh.
    public mutating func take() -> [IPAddress] {
        guard marked else { return [] }
        marked = false
        var addresses: [IPAddress] = []
        for index in v4.indices where v4[index] != 0 {
            addresses.append(.v4(IPv4Address(v4[index])))
            v4[index] = 0
        }
        let empty = IPv6Address(high: 0, low: 0)
        for index in v6.indices where v6[index] != empty {
            addresses.append(.v6(v6[index]))
            v6[index] = empty
        }
        return addresses
    }
}
