import MATPacket

/// Which peers of a family a move holds the kernel fast path translates for again: those
/// released from the hold (docs/datapath.md, "Kernel fast path").
///
/// A move holds a family in the engine with one command (``FamilyHolds``), so the kernel
/// cannot lose each peer's element then without work per peer. The family's outbound rules
/// are gated instead (``FastPathRuleset/gated``): they translate only the packets to a HoA
/// in the family's `released` set, which is emptied when the hold begins and gains each
/// peer as the engine releases it, one element per release. The peers still held have
/// their packets go on to the engine, which holds them; a peer that never answers keeps
/// only itself there, for its alert's retransmissions, not the peers released before it.
///
/// The BPF datapath has no such set: its outbound map holds only the released peers while
/// a hold is on, each written at its release (``FastPathBPF``, ``FastPathBPF6``).
///
/// Pure: the engine derives the changes from each batch of commands it applied
/// (``changes(_:holds:)``), and ``KernelFastPath`` keeps the set (``open``) to write it
/// whole after a write from scratch.
struct FastPathGates: Equatable, Sendable {
    /// What a batch of commands changed in the sets: the sets of `emptied` families are
    /// flushed first (a hold began or ended), then `released` are added.
    struct Changes: Equatable, Sendable {
        var emptied: Set<AddressFamily> = []
        var released: [IPAddress] = []

        var isEmpty: Bool { emptied.isEmpty && released.isEmpty }

        /// What these changes did to a move's hold of `family` for a datapath that had it
        /// held (`wasHeld`), `gated` saying whether the rules gate the family after them:
        /// began (or began again, a move during a move's hold: no peer of it is released
        /// then), ended, or neither. A family out of the rules for a while (no MoA for a
        /// moment) keeps its hold: only the hold's end, which empties the set, ends it.
        func hold(_ family: AddressFamily, wasHeld: Bool, gated: Bool) -> HoldChange {
            if gated && (emptied.contains(family) || !wasHeld) { return .began }
            if wasHeld && !gated && emptied.contains(family) { return .ended }
            return .unchanged
        }
    }

    /// How a batch changed a move's hold of a family (``Changes/hold(_:wasHeld:gated:)``).
    enum HoldChange: Equatable, Sendable {
        case began, ended, unchanged
    }

    /// The HoAs in the `released` sets: peers released from the hold of their family.
    private(set) var open: Set<IPAddress> = []

    /// The changes `commands`, just applied, make: a hold that began or ended empties its
    /// family's set; a peer released, or mapped anew, joins it when the hold still held
    /// its family and no longer holds the peer after the whole batch (one released and
    /// held again by a later move of the same batch does not). O(commands).
    static func changes(_ commands: [PacketProcessor.Command], holds: FamilyHolds) -> Changes {
        var changes = Changes()
        for command in commands {
            switch command {
            case .holdFamily(let family), .releaseFamily(let family):
                changes.emptied.insert(family)
            case .release(let hoa) where holds.isReleased(hoa):
                changes.released.append(hoa)
            case .replaceMapping(let mapping) where holds.isReleased(mapping.hoa):
                changes.released.append(mapping.hoa)
            default:
                break
            }
        }
        return changes
    }

    /// Takes `changes` in; O(released), and O(open) only for an emptied family (once per
    /// hold, not per peer).
    mutating func apply(_ changes: Changes) {
        if !changes.emptied.isEmpty { open = open.filter { !changes.emptied.contains($0.family) } }
        open.formUnion(changes.released)
    }

    /// Whether the rules translate the outbound packets of `hoa`, whose family `ruleset`
    /// writes: not gated, or released from the hold.
    func admits(_ hoa: IPAddress, _ ruleset: FastPathRuleset) -> Bool {
        !ruleset.gated.contains(hoa.family) || open.contains(hoa)
    }

    /// The name of `family`'s set.
    static func set(_ family: AddressFamily) -> String { family == .ipv4 ? "released4" : "released6" }

    /// The commands that make the sets of `table` hold `changes` (flushes, then additions),
    /// or, `whole`, every HoA in ``open`` after a flush of both.
    func commands(_ changes: Changes, table: String, whole: Bool) -> [String] {
        let flushed: Set<AddressFamily> = whole ? [.ipv4, .ipv6] : changes.emptied
        var batch = [AddressFamily.ipv4, .ipv6].filter(flushed.contains).map { "flush set inet \(table) \(Self.set($0))" }
        let added = whole ? Array(open) : changes.released
        for family in [AddressFamily.ipv4, .ipv6] {
            let members = added.filter { $0.family == family }
            var start = 0
            while start < members.count {
                let chunk = members[start..<min(start + FastPathRuleset.elementsPerCommand, members.count)]
                batch.append("add element inet \(table) \(Self.set(family)) { " + chunk.map(\.description).joined(separator: ", ") + " }")
                start += FastPathRuleset.elementsPerCommand
            }
        }
        return batch
    }
}
