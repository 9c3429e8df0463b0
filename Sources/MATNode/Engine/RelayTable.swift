import MATPacket
import MATSignaling

/// A relay's registrations (docs/datapath.md, "Not yet supported: a relay for the rest"):
/// which HoAs each binding registered (a binding is the address and port a node's
/// registrations come from, its NAT's), kept `lifetime` ms after the binding's last
/// registration, and whether a relayed packet may go on. Pure: the caller verifies each
/// registration's signature before it comes here, passes the time (monotonic
/// milliseconds), counts the refusals and carries the packets.
///
/// The rules that make a relay neither an injector nor an open reflector: a packet goes on
/// only from a live binding, only when its inner source HoA is one that binding registered,
/// only to a HoA some live binding registered, and only within the sending binding's rate.
/// A HoA belongs to one binding at a time: a registration with a higher sequence number
/// takes it over (the node moved, or its NAT chose another port); one with a sequence
/// number not above the last taken for any of its HoAs is a replay and is refused.
public struct RelayTable: Sendable {
    /// Where a node's registrations come from, and where its relayed packets go.
    public struct Binding: Hashable, Sendable, CustomStringConvertible {
        public let address: IPAddress
        public let port: UInt16
        public init(address: IPAddress, port: UInt16) {
            self.address = address
            self.port = port
        }
        public var description: String {
            address.family == .ipv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
        }
    }

    public enum Registration: Equatable, Sendable {
        case accepted
        /// A sequence number not above the last taken for one of the HoAs.
        case replayed
        /// The table holds `capacity` bindings already.
        case full
    }

    /// What happens to a relayed packet.
    public enum Decision: Equatable, Sendable {
        case forward(to: Binding)
        /// The sender is not a live binding.
        case unknownSender
        /// The inner packet's source HoA is not one the sending binding registered.
        case unregisteredSource
        /// No live binding registered the destination HoA.
        case unknownDestination
        /// The sending binding sent more than its rate.
        case rateLimited
    }

    struct Entry {
        var hoas: Set<IPAddress>
        var lastSeen: UInt64
        var bucket: TokenBucket
        /// The secret agreed on with its latest registration (``RelaySecret``).
        var secret: RelaySecret?
    }

    public let lifetime: UInt64
    public let rate: UInt32
    public let burst: UInt32
    public let capacity: Int
    private var bindings: [Binding: Entry] = [:]
    /// Each registered HoA's binding and the sequence number it was taken with.
    private var owners: [IPAddress: (binding: Binding, sequence: UInt64)] = [:]
    /// When each binding lapses, in registration order: the lifetime is the same for all and
    /// the clock does not go back, so the queue is ordered by deadline and ``expire(now:)``
    /// looks only at its head. A registration appends its binding again; the entries it
    /// left behind are found stale (the binding's deadline is later now) when they reach
    /// the head. Compacted when mostly stale, so it holds O(bindings) entries.
    private var deadlines = DeadlineQueue()

    /// `lifetime`: ms a binding lives after its last registration (four keepalive
    /// intervals); `rate` and `burst`: relayed packets a second, and at once, per binding;
    /// `capacity`: the most bindings kept (a bound on memory).
    public init(lifetime: UInt64 = 60_000, rate: UInt32 = 20_000, burst: UInt32 = 2_000, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
    }

    public var count: Int { bindings.count }

    /// Deadlines queued, stale ones included (for tests of the queue's bound).
    var queuedDeadlines: Int { deadlines.count }

    /// Whether a binding holds `hoa` (as of the last lapse looked at).
    public func holds(_ hoa: IPAddress) -> Bool { owners[hoa] != nil }

    /// The HoAs `binding` holds now.
    public func hoas(of binding: Binding) -> Set<IPAddress> { bindings[binding]?.hoas ?? [] }

    /// The secret agreed on with `binding`'s latest registration, for the signals relayed to it.
    public func secret(of binding: Binding) -> RelaySecret? { bindings[binding]?.secret }

    /// Whether a registration of `hoas` with `sequence` from `binding` would be refused as
    /// a replay at `now`, as ``register(_:sequence:from:now:)`` decides it: asked before
    /// the signature is checked, so a replayed (or forged) registration costs no
    /// verification. It changes nothing but what has lapsed.
    public mutating func isReplayed(_ hoas: some Sequence<IPAddress>, sequence: UInt64, from binding: Binding, now: UInt64) -> Bool {
        expire(now: now)
        return hoas.contains { hoa in
            guard let owner = owners[hoa] else { return false }
            return sequence <= owner.sequence && !(owner.binding == binding && sequence == owner.sequence)
        }
    }

    /// A registration of `hoas` with `sequence`, its signature already verified, from
    /// `binding` at `now`. Accepted, it refreshes the binding and takes each HoA over from
    /// whichever binding held it; a binding left with no HoA is forgotten. `secret` (agreed on
    /// with the registration) replaces the binding's one before.
    public mutating func register(_ hoas: Set<IPAddress>, sequence: UInt64, secret: RelaySecret? = nil,
                                  from binding: Binding, now: UInt64) -> Registration {
        if isReplayed(hoas, sequence: sequence, from: binding, now: now) { return .replayed }
        if bindings[binding] == nil && bindings.count >= capacity { return .full }
        for hoa in hoas {
            if let previous = owners[hoa]?.binding, previous != binding {
                bindings[previous]?.hoas.remove(hoa)
                if bindings[previous]?.hoas.isEmpty == true { bindings[previous] = nil }
            }
            owners[hoa] = (binding, sequence)
        }
        var entry = bindings[binding] ?? Entry(hoas: [], lastSeen: now, bucket: TokenBucket(rate: rate, burst: burst))
        // HoAs the node no longer registers are its to give up.
        for hoa in entry.hoas.subtracting(hoas) where owners[hoa]?.binding == binding { owners[hoa] = nil }
        entry.hoas = hoas
        entry.lastSeen = now
        entry.secret = secret
        bindings[binding] = entry
        deadlines.append(binding, at: now + lifetime)
        if deadlines.count > 2 * bindings.count + 64 {
            let live = bindings, lifetime = lifetime
            deadlines.compact { binding, deadline in live[binding].map { $0.lastSeen + lifetime == deadline } ?? false }
        }
        return .accepted
    }

    /// Whether a packet from `sender` whose inner source HoA is `source`, relayed to
    /// `destination` (a HoA), goes on at `now`, and where.
    public mutating func route(from sender: Binding, source: IPAddress, destination: IPAddress, now: UInt64) -> Decision {
        guard let index = bindings.index(forKey: sender), now < bindings.values[index].lastSeen + lifetime else {
            return .unknownSender
        }
        guard bindings.values[index].hoas.contains(source) else { return .unregisteredSource }
        guard let target = owners[destination]?.binding, let targetEntry = bindings[target],
              now < targetEntry.lastSeen + lifetime else { return .unknownDestination }
        guard bindings.values[index].bucket.take(now: now) else { return .rateLimited }
        return .forward(to: target)
    }

    /// Forgets the bindings not registered again within `lifetime`; returns them. The
    /// sequence numbers of their HoAs are forgotten with them: a node that comes back after
    /// that may start again from any number, and an old registration replayed then would
    /// only hold a HoA until its node registers again. O(1) amortised: each registration's
    /// queue entry is looked at once (``deadlines``).
    @discardableResult
    public mutating func expire(now: UInt64) -> [Binding] {
        var gone: [Binding] = []
        while let (binding, deadline) = deadlines.first, deadline <= now {
            deadlines.removeFirst()
            // Stale: registered again since (a later deadline), or forgotten already.
            guard let entry = bindings[binding], entry.lastSeen + lifetime == deadline else { continue }
            for hoa in entry.hoas where owners[hoa]?.binding == binding { owners[hoa] = nil }
            bindings[binding] = nil
            gone.append(binding)
        }
        return gone
    }
}

/// ``RelayTable``'s bindings with their deadlines, oldest first: an array read from a head
/// index, its consumed front dropped once it is half the storage (amortised O(1)).
struct DeadlineQueue {
    private var items: [(binding: RelayTable.Binding, deadline: UInt64)] = []
    private var head = 0

    var count: Int { items.count - head }
    var first: (RelayTable.Binding, UInt64)? { head < items.count ? items[head] : nil }

    mutating func append(_ binding: RelayTable.Binding, at deadline: UInt64) { items.append((binding, deadline)) }

    mutating func removeFirst() {
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1_024 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
    }

    /// Keeps, in order, only the entries `live` says are still wanted.
    mutating func compact(_ live: (RelayTable.Binding, UInt64) -> Bool) {
        items = items[head...].filter { live($0.binding, $0.deadline) }
        head = 0
    }
}
