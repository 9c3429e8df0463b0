import MATDNS
import MATPacket

/// Which mappings of a zone carry a registration lifetime, and when each runs out.
///
/// A node's registration writes `"life=<seconds>"` into the TXT at its HoA name
/// (docs/ims.md §2). If no newer registration replaces that TXT within the lifetime, the
/// node is taken for gone: its MoAs (the A and AAAA RRsets) and the PTRs under `moa.` that
/// point at its name go, so a dead VM's old address stops leading to its HoA. The TXT
/// stays, so the sequence number and the key keep counting, as after a deregistration.
///
/// The deadline runs from when this server took the TXT (or loaded it at start: a restart
/// grants every lifetime afresh), on the clock the caller passes (monotonic seconds), so
/// the nodes' and the server's wall clocks never need to agree. Pure: no I/O, no clock.
public struct MappingExpiry: Sendable {
    /// `hoa.<zone>`: only names below it are mappings.
    public let hoaSuffix: DNSName
    /// The zone apex, for the MoA names of the PTRs.
    public let zone: DNSName
    /// When each mapping with a lifetime runs out.
    public private(set) var deadlines: [DNSName: Double] = [:]

    /// An empty tracker for `zone`.
    public init(zone: DNSName) throws(DNSNameError) {
        self.zone = zone
        hoaSuffix = try zone.prepending(label: "hoa")
    }

    /// The lifetime a TXT record publishes: exactly one `life=` string of 1-10 digits
    /// without a leading zero, 1...2^32-1 seconds; anything else is none.
    public static func lifetime(of data: DNSRecordData) -> UInt32? {
        guard case .txt(let strings) = data else { return nil }
        let prefix = Array("life=".utf8)
        let found = strings.filter { $0.starts(with: prefix) }
        guard found.count == 1 else { return nil }
        let digits = found[0].dropFirst(prefix.count)
        guard let first = digits.first, first != UInt8(ascii: "0"), digits.count <= 10,
              digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return UInt32(String(decoding: digits, as: UTF8.self))
    }

    /// Takes every mapping of `store` as written now (at start, after loading the zone).
    public mutating func track(_ store: ZoneStore, now: Double) {
        deadlines = [:]
        for name in store.nodes.keys { note(name, in: store, now: now) }
    }

    /// Takes a committed change: a name whose TXT was written gets a new deadline (or
    /// loses its deadline if the new TXT has no lifetime, or the TXT went).
    public mutating func track(_ diff: ZoneDiff, store: ZoneStore, now: Double) {
        var names = Set<DNSName>()
        for record in diff.added + diff.deleted where record.type == .txt { names.insert(record.name) }
        for name in names { note(name, in: store, now: now) }
    }

    private mutating func note(_ name: DNSName, in store: ZoneStore, now: Double) {
        guard name.isSubdomain(of: hoaSuffix), name != hoaSuffix,
              let lifetime = store.rrset(at: name, type: .txt)?.records.lazy.compactMap(Self.lifetime(of:)).first else {
            deadlines[name] = nil
            return
        }
        deadlines[name] = now + Double(lifetime)
    }

    /// The mappings whose lifetime has passed at `now`, in name order.
    public func due(at now: Double) -> [DNSName] {
        deadlines.filter { $0.value <= now }.keys.sorted { $0.description < $1.description }
    }

    /// The operations that expire the mapping at `name`: its A and AAAA RRsets, and the
    /// PTR to `name` at the MoA name of each of its MoAs (other nodes' PTRs there stay).
    /// The name's deadline is dropped; the TXT stays.
    public mutating func expire(_ name: DNSName, in store: ZoneStore) -> [DNSUpdateOperation] {
        deadlines[name] = nil
        var operations: [DNSUpdateOperation] = []
        for type in [DNSType.a, .aaaa] {
            guard let set = store.rrset(at: name, type: type) else { continue }
            operations.append(.deleteRRset(name, type))
            for data in set.records {
                let moa: IPAddress
                switch data {
                case .a(let value): moa = .v4(IPv4Address(value))
                case .aaaa(let high, let low): moa = .v6(IPv6Address(high: high, low: low))
                default: continue
                }
                guard let pointer = try? IMSNames.moaName(moa, zone: zone),
                      store.rrset(at: pointer, type: .ptr)?.records.contains(.ptr(name)) == true else { continue }
                operations.append(.deleteRecord(pointer, .ptr(name)))
            }
        }
        return operations
    }
}
