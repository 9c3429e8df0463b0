import MATPacket

/// The engine's side of a move's holds (``PeerHolds``): every mapped peer of a family whose
/// MoA changed is held by one flag per family, not by one entry per peer, so neither the
/// service nor the engine does work per peer before the move's first alert goes out. Each
/// peer's hold then ends on its own (``PacketProcessor/Command/release(_:)``), kept here as
/// an exception until the family's hold ends (``PacketProcessor/Command/releaseFamily(_:)``,
/// once every peer the move holds was released).
///
/// A family's hold is the move's: it holds the peers mapped when it began. A peer whose
/// mapping comes in later (a first contact, an alert from a peer not known before) was
/// not alerted by the move and is not held by it; one whose mapping went and came back
/// meanwhile (the table replaced it after a removal) still is. Pure: the engine thread
/// owns it inside ``PacketProcessor``.
public struct FamilyHolds: Sendable {
    private struct Hold: Sendable {
        /// Peers released since the hold began.
        var released: Set<IPAddress> = []
        /// Peers whose mapping left the table during the hold: still the move's if it comes back.
        var left: Set<IPAddress> = []
    }

    private var holds: [AddressFamily: Hold] = [:]

    public init() {}

    /// Whether no family is held.
    public var isEmpty: Bool { holds.isEmpty }

    /// The families held.
    public var families: Set<AddressFamily> { Set(holds.keys) }

    /// Holds every mapped peer of `family`, those released by an earlier hold too: a new
    /// move is announced to each of them again.
    public mutating func hold(_ family: AddressFamily) { holds[family] = Hold() }

    /// Ends `family`'s hold.
    public mutating func end(_ family: AddressFamily) { holds[family] = nil }

    /// `hoa`'s hold ended; its family's hold no longer holds it.
    public mutating func released(_ hoa: IPAddress) { holds[hoa.family]?.released.insert(hoa) }

    /// A mapping of `hoa` went into a table that had none: a peer new since the hold began
    /// is not the move's, unless its mapping only went and came back.
    public mutating func mappingAdded(_ hoa: IPAddress) {
        guard var hold = holds[hoa.family], !hold.left.contains(hoa) else { return }
        holds[hoa.family] = nil   // unshared, so the insert does not copy the set
        hold.released.insert(hoa)
        holds[hoa.family] = hold
    }

    /// `hoa`'s mapping left the table.
    public mutating func mappingRemoved(_ hoa: IPAddress) {
        guard var hold = holds[hoa.family], !hold.released.contains(hoa) else { return }
        holds[hoa.family] = nil
        hold.left.insert(hoa)
        holds[hoa.family] = hold
    }

    /// Whether `hoa`'s family is held and `hoa` was released from that hold (or is new
    /// since it began): the kernel fast path may translate for it again (``FastPathGates``).
    public func isReleased(_ hoa: IPAddress) -> Bool { holds[hoa.family]?.released.contains(hoa) ?? false }

    /// Whether the packets to `hoa`, a mapped peer, are held by its family's hold.
    public func holds(_ hoa: IPAddress) -> Bool {
        guard let hold = holds[hoa.family] else { return false }
        return !hold.released.contains(hoa)
    }
}
