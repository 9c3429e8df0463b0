import MATPacket

/// The MAT rewrite rules applied to one packet, with no I/O: the engine reads a packet,
/// hands it here with the direction it came from, and writes it on if this says so.
///
/// - Outbound (an application's packet from the TUN device): source HoA -> own MoA,
///   destination peer HoA -> the peer's preferred MoA.
/// - Inbound (a packet diverted from the uplink): source peer MoA -> peer HoA (the receive
///   rule: only sources that are a known peer's MoA are translated), destination own MoA
///   -> own HoA.
/// - ICMP errors: the quoted packet ran the other way, so it gets the mirrored rewrite.
public struct PacketProcessor: ~Copyable {
    /// Peers' mappings, owned here: the engine thread is the only reader and writer.
    public var table: MappingTable
    public var addresses: NodeAddresses
    public var counters = EngineCounters()
    /// The destination HoA of the last packet refused for want of a mapping, until taken.
    public var lastMiss: IPAddress?
    /// Peers whose outbound packets wait until they confirm this node's new mapping.
    public var held: Set<IPAddress> = []
    /// Families whose every mapped peer is held since a move, but for those released since.
    public var familyHolds = FamilyHolds()
    /// The peer HoA of the last packet dropped because it was held, until taken.
    public var lastHeld: IPAddress?
    /// The last packet dropped because its unvalidated path's budget was spent, until taken.
    public var lastLimited: LimitedPacket?
    /// MoAs a peer announced whose reachability check is still out, with what was sent to
    /// and received from each: at most `amplificationFactor` times the bytes received may go.
    public var unvalidated: [IPAddress: PathBudget] = [:]
    /// How many bytes may be sent to an unvalidated MoA per byte received from it.
    public static let amplificationFactor: UInt64 = 3

    /// Where a packet refused by the unvalidated-path budget was going: the engine keeps
    /// the last one per flow and sends it when the check of `moa` ends, so a bulk sender
    /// whose ACKs were dropped gets the newest one at once instead of waiting for its
    /// retransmission timer.
    public struct LimitedPacket: Sendable, Equatable {
        public var peer: IPAddress
        public var moa: IPAddress
    }

    /// Bytes exchanged with an unvalidated MoA, and what each flow sent there.
    ///
    /// No one flow may spend more than half of what may go: in the round trip a check
    /// takes, a bulk connection's ACKs of data still in flight (hundreds of them at 50 ms)
    /// would otherwise use it all and starve a ping, a probe or another connection.
    public struct PathBudget: Sendable, Equatable {
        public var received: UInt64 = 0
        public var sent: UInt64 = 0
        /// Whether packets from the MoA are translated (delivered as its peer's) before the
        /// check ends: false for a MoA only an IMS answer names (``Command/limitUntilProven(_:)``).
        public var deliversInbound = true
        /// Bytes sent per flow, for the first `trackedFlows` flows.
        var sentByFlow: [PacketFlow: UInt64] = [:]
        /// Bytes sent by flows past the first `trackedFlows`, which share one account.
        var sentByUntrackedFlows: UInt64 = 0
        static let trackedFlows = 64
        public init() {}

        /// Charges `length` bytes of `flow` if both the path's allowance (`factor` times
        /// what was received) and the flow's half of it leave room; false otherwise.
        mutating func charge(_ flow: PacketFlow, length: UInt64, factor: UInt64) -> Bool {
            let allowance = received &* factor
            guard sent &+ length <= allowance else { return false }
            if sentByFlow[flow] == nil && sentByFlow.count >= Self.trackedFlows {
                guard sentByUntrackedFlows &+ length <= allowance / 2 else { return false }
                sentByUntrackedFlows &+= length
            } else {
                guard sentByFlow[flow, default: 0] &+ length <= allowance / 2 else { return false }
                sentByFlow[flow, default: 0] &+= length
            }
            sent &+= length
            return true
        }
    }

    /// The peers whose packets were translated inbound, for the control plane's idle
    /// probing (``ReceiveMarks``).
    public var inboundPeers = ReceiveMarks()

    public init(table: consuming MappingTable, addresses: NodeAddresses) {
        self.table = table
        self.addresses = addresses
    }

    /// Which way a packet is travelling.
    public enum Direction: Sendable { case outbound, inbound }

    /// What became of one packet.
    public enum Outcome: Equatable, Sendable {
        /// Translated in place; send it on.
        case forward
        /// Refused by the packet core (malformed).
        case malformed(DropReason)
        /// Refused by the MAT rules.
        case refused(EngineDropReason)
    }

    /// A change of the table, the addresses or the holds, applied between packets.
    public enum Command: Sendable {
        case setAddresses(NodeAddresses)
        case replaceMapping(PeerMapping)
        case removeMapping(IPAddress)
        /// Drop outbound packets to this HoA until `.release` (counted as awaiting_binding).
        case hold(IPAddress)
        case release(IPAddress)
        /// As `.hold` for every peer of the family mapped now, each until its `.release`
        /// or `.releaseFamily` (``FamilyHolds``): a move holds them all in one command.
        case holdFamily(AddressFamily)
        case releaseFamily(AddressFamily)
        /// Send at most three times what was received from this MoA (starting with
        /// `received` bytes: the update that announced it) until `.endLimit`.
        case limitUntilValidated(IPAddress, received: UInt64)
        /// As `.limitUntilValidated(moa, received: 0)`, and packets from the MoA are
        /// dropped, not delivered as the peer's, until `.endLimit`: a first contact's MoA,
        /// which only an IMS answer names and which may be a dead peer's old address held
        /// by another host now (the probe signed with the peer's key proves it).
        case limitUntilProven(IPAddress)
        /// The check of this MoA is over: it answered (`validated`), or it did not and the
        /// packets kept for it must not go there (the mapping leaves it after this).
        case endLimit(IPAddress, validated: Bool)
    }

    /// A mapping the table refused, with what the table holds for that HoA instead, so
    /// the control plane can take the table's word for it.
    public struct Refusal: Sendable, Equatable {
        public var offered: PeerMapping
        public var error: MappingError
        public var current: PeerMapping?
    }

    /// Applies `command`; returns the refusal when the table would not take a mapping.
    public mutating func apply(_ command: Command) -> Refusal? {
        switch command {
        case .setAddresses(let addresses):
            self.addresses = addresses
        case .replaceMapping(let mapping):
            let added = !familyHolds.isEmpty && table.mapping(for: mapping.hoa) == nil
            do {
                try table.replace(mapping)
                if added { familyHolds.mappingAdded(mapping.hoa) }
            } catch {
                counters.refusedMappings &+= 1
                return Refusal(offered: mapping, error: error, current: table.mapping(for: mapping.hoa))
            }
        case .removeMapping(let hoa):
            table.remove(hoa: hoa)
            if !familyHolds.isEmpty { familyHolds.mappingRemoved(hoa) }
        case .hold(let hoa):
            held.insert(hoa)
        case .release(let hoa):
            held.remove(hoa)
            familyHolds.released(hoa)
        case .holdFamily(let family):
            familyHolds.hold(family)
        case .releaseFamily(let family):
            familyHolds.end(family)
        case .limitUntilValidated(let moa, let received):
            if unvalidated[moa] == nil {
                var budget = PathBudget()
                budget.received = received
                unvalidated[moa] = budget
            }
        case .limitUntilProven(let moa):
            var budget = unvalidated[moa] ?? PathBudget()
            budget.deliversInbound = false
            unvalidated[moa] = budget
        case .endLimit(let moa, _):
            unvalidated[moa] = nil
        }
        return nil
    }

    /// Handles one packet read from the TUN device: decides its direction, drops it while
    /// its peer is held, translates it in place. Returns true when it should be written back.
    ///
    /// Applications send from the HoA; a packet from elsewhere to this node's MoA was
    /// diverted from the uplink. At home (MoA == HoA) the source alone tells them apart.
    @inlinable
    public mutating func handle(_ base: UnsafeMutableRawPointer, length: Int, checksum: ChecksumMode) -> Bool {
        let direction: Direction = isInbound(base, length: length) ? .inbound : .outbound
        if direction == .outbound && !(held.isEmpty && familyHolds.isEmpty), let peer = heldPeer(base, length: length) {
            counters.engineDrops[Int(EngineDropReason.awaitingBinding.rawValue)] &+= 1
            lastHeld = peer
            return false
        }
        if !unvalidated.isEmpty, let limited = overBudget(base, length: length, direction: direction) {
            counters.engineDrops[Int(EngineDropReason.unvalidatedPath.rawValue)] &+= 1
            // An inbound packet from an unproven MoA is not kept: it is no packet of the peer's.
            if direction == .outbound { lastLimited = limited }
            return false
        }
        return process(base, length: length, direction: direction, checksum: checksum)
    }

    /// Credits what arrives from an unvalidated MoA, and refuses it if the MoA is not
    /// proven to be its peer's yet (``PathBudget/deliversInbound``); charges what goes to
    /// one, if the budget and the flow's share of it allow. Returns where a refused packet
    /// was going (for an inbound one, its source), or nil to go on. Only runs while some
    /// MoA is unvalidated.
    @usableFromInline
    mutating func overBudget(_ packet: UnsafeMutableRawPointer, length: Int, direction: Direction) -> LimitedPacket? {
        let version = packet.load(as: UInt8.self) >> 4
        guard (version == 4 && length >= 20) || (version == 6 && length >= 40) else { return nil }
        let moa: IPAddress
        switch direction {
        case .inbound:
            moa = version == 4 ? .v4(IPv4Address(loadingFrom: UnsafeRawPointer(packet), offset: 12))
                : .v6(IPv6Address(loadingFrom: UnsafeRawPointer(packet), offset: 8))
            // One hash lookup: the index serves the credit and the check (as admitsCarried's).
            guard let index = unvalidated.index(forKey: moa) else { return nil }
            unvalidated.values[index].received &+= UInt64(length)
            guard !unvalidated.values[index].deliversInbound, let hoa = table.hoa(forMoA: moa) else { return nil }
            return LimitedPacket(peer: hoa, moa: moa)
        case .outbound:
            let hoa: IPAddress = version == 4 ? .v4(IPv4Address(loadingFrom: UnsafeRawPointer(packet), offset: 16))
                : .v6(IPv6Address(loadingFrom: UnsafeRawPointer(packet), offset: 24))
            guard let preferred = table.preferredMoA(forHoA: hoa), unvalidated[preferred] != nil else { return nil }
            let flow = PacketFlow(packet: UnsafeRawPointer(packet), length: length, peer: hoa)
            let charged = unvalidated[preferred]!.charge(flow, length: UInt64(length), factor: Self.amplificationFactor)
            return charged ? nil : LimitedPacket(peer: hoa, moa: preferred)
        }
    }

    @inlinable
    func isInbound(_ packet: UnsafeMutableRawPointer, length: Int) -> Bool {
        switch packet.load(as: UInt8.self) >> 4 {
        case 4 where length >= 20:
            let source = IPv4Address(loadingFrom: UnsafeRawPointer(packet), offset: 12)
            let destination = IPv4Address(loadingFrom: UnsafeRawPointer(packet), offset: 16)
            return source != addresses.home4 && destination == addresses.mobile4
        case 6 where length >= 40:
            let source = IPv6Address(loadingFrom: UnsafeRawPointer(packet), offset: 8)
            let destination = IPv6Address(loadingFrom: UnsafeRawPointer(packet), offset: 24)
            return source != addresses.home6 && destination == addresses.mobile6
        default:
            return false
        }
    }

    /// The destination HoA of a packet to a held peer, or nil.
    @usableFromInline
    func heldPeer(_ packet: UnsafeMutableRawPointer, length: Int) -> IPAddress? {
        let destination: IPAddress
        switch packet.load(as: UInt8.self) >> 4 {
        case 4 where length >= 20: destination = .v4(IPv4Address(loadingFrom: UnsafeRawPointer(packet), offset: 16))
        case 6 where length >= 40: destination = .v6(IPv6Address(loadingFrom: UnsafeRawPointer(packet), offset: 24))
        default: return nil
        }
        guard held.contains(destination)
                || familyHolds.holds(destination) && table.preferredMoA(forHoA: destination) != nil else { return nil }
        return destination
    }

    /// Translates the packet of `length` bytes at `base` in place. Returns true when it
    /// should be sent on, false when it was dropped (and counted).
    @inlinable
    public mutating func process(
        _ base: UnsafeMutableRawPointer, length: Int, direction: Direction, checksum: ChecksumMode
    ) -> Bool {
        let outcome: Outcome
        var packetLength = 0
        do {
            let layout = try PacketLayout.parse(UnsafeRawPointer(base), length: length)
            packetLength = layout.packetLength
            switch (layout.family, direction) {
            case (.ipv4, .outbound):
                outcome = outbound(base, layout, home: addresses.home4, mobile: addresses.mobile4, checksum: checksum)
            case (.ipv6, .outbound):
                outcome = outbound(base, layout, home: addresses.home6, mobile: addresses.mobile6, checksum: checksum)
            case (.ipv4, .inbound):
                outcome = inbound(base, layout, home: addresses.home4, mobile: addresses.mobile4, checksum: checksum)
            case (.ipv6, .inbound):
                outcome = inbound(base, layout, home: addresses.home6, mobile: addresses.mobile6, checksum: checksum)
            }
        } catch {
            outcome = .malformed(error)
        }
        switch outcome {
        case .forward:
            if direction == .outbound {
                counters.outboundPackets &+= 1
                counters.outboundBytes &+= UInt64(packetLength)
            } else {
                counters.inboundPackets &+= 1
                counters.inboundBytes &+= UInt64(packetLength)
                inboundPeers.mark(translated: UnsafeRawPointer(base))
            }
            return true
        case .malformed(let reason):
            counters.packetDrops[Int(reason.rawValue)] &+= 1
            return false
        case .refused(let reason):
            counters.engineDrops[Int(reason.rawValue)] &+= 1
            if reason == .noMapping { lastMiss = Self.destination(base) }
            return false
        }
    }

    /// The destination address of a packet that parsed.
    @usableFromInline
    static func destination(_ base: UnsafeMutableRawPointer) -> IPAddress {
        base.load(as: UInt8.self) >> 4 == 4
            ? .v4(IPv4Address(loadingFrom: UnsafeRawPointer(base), offset: 16))
            : .v6(IPv6Address(loadingFrom: UnsafeRawPointer(base), offset: 24))
    }

    @inlinable
    func outbound<A: PacketAddress & PeerLookup>(
        _ base: UnsafeMutableRawPointer, _ layout: PacketLayout, home: A?, mobile: A?, checksum: ChecksumMode
    ) -> Outcome {
        let source = A(loadingFrom: UnsafeRawPointer(base), offset: layout.sourceOffset)
        let destination = A(loadingFrom: UnsafeRawPointer(base), offset: layout.destinationOffset)
        guard let home, source == home else { return .refused(.notFromHomeAddress) }
        guard let mobile else { return .refused(.noMobileAddress) }
        guard let peerMobile = A.preferredMoA(in: table, forHoA: destination) else { return .refused(.noMapping) }
        return translate(base, layout, checksum: checksum,
                         outerSource: source, newSource: mobile,
                         outerDestination: destination, newDestination: peerMobile)
    }

    @inlinable
    func inbound<A: PacketAddress & PeerLookup>(
        _ base: UnsafeMutableRawPointer, _ layout: PacketLayout, home: A?, mobile: A?, checksum: ChecksumMode
    ) -> Outcome {
        let source = A(loadingFrom: UnsafeRawPointer(base), offset: layout.sourceOffset)
        let destination = A(loadingFrom: UnsafeRawPointer(base), offset: layout.destinationOffset)
        guard let home, let mobile, destination == mobile else { return .refused(.notToMobileAddress) }
        guard let peerHome = A.hoa(in: table, forMoA: source) else {
            return inboundErrorFromRouter(base, layout, home: home, mobile: mobile, checksum: checksum)
        }
        return translate(base, layout, checksum: checksum,
                         outerSource: source, newSource: peerHome,
                         outerDestination: destination, newDestination: home)
    }

    /// An ICMP error from a router on the path (not a peer) about a packet we sent to a peer,
    /// such as "fragmentation needed": path MTU discovery of the HoA connection needs it,
    /// so the outer destination and the quoted addresses go back to HoAs.
    @inlinable
    func inboundErrorFromRouter<A: PacketAddress & PeerLookup>(
        _ base: UnsafeMutableRawPointer, _ layout: PacketLayout, home: A, mobile: A, checksum: ChecksumMode
    ) -> Outcome {
        guard let quote = layout.quote else { return .refused(.unknownPeer) }
        let v4 = A.family == .ipv4
        let quotedSource = A(loadingFrom: UnsafeRawPointer(base), offset: quote.offset + (v4 ? 12 : 8))
        let quotedDestination = A(loadingFrom: UnsafeRawPointer(base), offset: quote.offset + (v4 ? 16 : 24))
        guard quotedSource == mobile, let peerHome = A.hoa(in: table, forMoA: quotedDestination) else {
            return .refused(.unknownPeer)
        }
        do {
            try Translator.translate(base, layout: layout, rewrite: AddressRewrite(destination: home),
                                     quoteRewrite: AddressRewrite(source: home, destination: peerHome),
                                     checksum: checksum)
            return .forward
        } catch {
            return .malformed(error)
        }
    }

    /// Rewrites the outer addresses, and for an ICMP error the quoted packet's: it went
    /// the other way, so its source was the outer destination and its destination the
    /// outer source. Only addresses that match are rewritten.
    @inlinable
    func translate<A: PacketAddress>(
        _ base: UnsafeMutableRawPointer, _ layout: PacketLayout, checksum: ChecksumMode,
        outerSource: A, newSource: A, outerDestination: A, newDestination: A
    ) -> Outcome {
        var quoteRewrite = AddressRewrite<A>.unchanged
        if let quote = layout.quote {
            let v4 = A.family == .ipv4
            let quotedSource = A(loadingFrom: UnsafeRawPointer(base), offset: quote.offset + (v4 ? 12 : 8))
            let quotedDestination = A(loadingFrom: UnsafeRawPointer(base), offset: quote.offset + (v4 ? 16 : 24))
            quoteRewrite = AddressRewrite(
                source: quotedSource == outerDestination ? newDestination : nil,
                destination: quotedDestination == outerSource ? newSource : nil)
        }
        do {
            try Translator.translate(base, layout: layout,
                                     rewrite: AddressRewrite(source: newSource, destination: newDestination),
                                     quoteRewrite: quoteRewrite, checksum: checksum)
            return .forward
        } catch {
            return .malformed(error)
        }
    }
}

/// The mapping-table lookups for one address family, so the rewrite rules are written once.
public protocol PeerLookup {
    static func preferredMoA(in table: borrowing MappingTable, forHoA hoa: Self) -> Self?
    static func hoa(in table: borrowing MappingTable, forMoA moa: Self) -> Self?
}

extension IPv4Address: PeerLookup {
    @inlinable
    public static func preferredMoA(in table: borrowing MappingTable, forHoA hoa: Self) -> Self? { table.preferredMoA(forHoA: hoa) }
    @inlinable
    public static func hoa(in table: borrowing MappingTable, forMoA moa: Self) -> Self? { table.hoa(forMoA: moa) }
}

extension IPv6Address: PeerLookup {
    @inlinable
    public static func preferredMoA(in table: borrowing MappingTable, forHoA hoa: Self) -> Self? { table.preferredMoA(forHoA: hoa) }
    @inlinable
    public static func hoa(in table: borrowing MappingTable, forMoA moa: Self) -> Self? { table.hoa(forMoA: moa) }
}
