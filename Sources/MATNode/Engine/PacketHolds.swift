import MATPacket

/// Which dropped packets the engine keeps while their peer is held or their unvalidated
/// path's budget is spent, and which go or are thrown away when that ends: the decisions
/// only, with no I/O. The bytes stay in the engine's buffers, buffer `i` holding what
/// `slots[i]` describes, so every decision has a unit test without a TUN device.
///
/// The last packet dropped for each flow (``PacketFlow``: peer, protocol, ports) is kept,
/// in a few slots shared by all peers, and sent once the peer is released or the
/// unvalidated MoA it was going to answers: a TCP sender whose segments (or ACKs) were
/// dropped meanwhile has backed its timer off, and one packet of the flow delivered at
/// once brings the ACK that restarts it. (With one slot per peer, the slot often held a
/// UDP datagram or another connection's segment, and the TCP flow waited for its
/// retransmission timer: 400 ms at 50 ms RTT.)
struct PacketHolds {
    /// What one slot holds.
    struct Slot: Equatable {
        /// The flow of the kept packet; nil when the slot is free.
        var flow: PacketFlow?
        /// The unvalidated MoA whose budget refused the packet; nil for a hold.
        var waitingFor: IPAddress?
        /// The packet's length with its virtio header.
        var length = 0
        /// When it was kept, in keeps: the oldest slot is reused first, and a released
        /// peer's packets go out in the order they came.
        var keptAt: UInt64 = 0
    }

    /// How many packets the engine keeps at most, all peers together.
    static let slotCount = 16

    private(set) var slots: [Slot]
    private var keeps: UInt64 = 0

    init(slotCount: Int = Self.slotCount) {
        slots = Array(repeating: Slot(), count: max(1, slotCount))
    }

    /// Takes a dropped packet of `flow` (`length` bytes, refused by the budget of `moa`,
    /// or held when nil): it replaces its flow's kept packet, else goes to a free slot,
    /// else to the one kept longest ago. Returns the slot the engine copies it into.
    mutating func keep(_ flow: PacketFlow, waitingFor moa: IPAddress?, length: Int) -> Int {
        var index = 0
        for candidate in slots.indices {
            let slot = slots[candidate]
            if slot.flow == flow { index = candidate; break }
            let best = slots[index]
            if best.flow != nil && (slot.flow == nil || slot.keptAt < best.keptAt) { index = candidate }
        }
        keeps &+= 1
        slots[index] = Slot(flow: flow, waitingFor: moa, length: length, keptAt: keeps)
        return index
    }

    /// What `command` ends, applied to the kept packets: returns the slots to translate
    /// and send now, oldest first, each freed already.
    ///
    /// - `.release(peer)`: the peer's held packets (not those waiting for a MoA's check).
    /// - `.endLimit(moa, validated: true)`: the packets waiting for `moa`.
    /// - `.endLimit(moa, validated: false)`: none; those waiting for `moa` are thrown away,
    ///   as the mapping leaves that MoA.
    mutating func ended(by command: PacketProcessor.Command) -> [Int] {
        switch command {
        case .release(let peer):
            return take { $0.flow?.peer == peer && $0.waitingFor == nil }
        case .endLimit(let moa, validated: true):
            return take { $0.waitingFor == moa }
        case .endLimit(let moa, validated: false):
            for index in slots.indices where slots[index].waitingFor == moa {
                slots[index].flow = nil
                slots[index].waitingFor = nil
            }
            return []
        default:
            return []
        }
    }

    /// The number of slots holding a packet.
    var count: Int { slots.count(where: { $0.flow != nil }) }

    private mutating func take(where which: (Slot) -> Bool) -> [Int] {
        let taken = slots.indices.filter { slots[$0].flow != nil && which(slots[$0]) }
            .sorted { slots[$0].keptAt < slots[$1].keptAt }
        for index in taken { slots[index].flow = nil }
        return taken
    }
}
