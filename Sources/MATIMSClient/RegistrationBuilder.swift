import MATDNS
import MATPacket

/// Builds the one RFC 2136 UPDATE that replaces a node's published mapping.
///
/// The message, applied atomically by the server, does in order:
/// 1. delete the A, AAAA and TXT RRsets at the HoA name;
/// 2. add one A/AAAA per new MoA and the TXT `"v=1" "seq=<n>"` (with `"key=<base64>"`
///    when the node publishes its Ed25519 public key, and `"life=<seconds>"` when the
///    registration has a lifetime);
/// 3. for each new MoA, replace the PTR RRset at its MoA name with a PTR to the HoA name
///    (the MoA is this node's now, whoever held it before);
/// 4. for each MoA the node no longer has, delete only the PTR that points to this HoA,
///    so a node that has since taken over that address keeps its own PTR.
///
/// No prerequisites: the caller's sequence number, persisted before use, orders updates,
/// and peers refuse mappings older than one they hold. Every owner is either the node's
/// HoA name or under `moa.<zone>`, which is exactly what the zone's update policy grants
/// a node key. Pure: no I/O, no clock, no randomness (the ID is a parameter).
public struct RegistrationBuilder: Hashable, Sendable {
    /// The zone layout.
    public var names: MappingNames
    /// TTL of the published records; short, so peers re-query soon after a move.
    public var ttl: UInt32
    /// The registration's lifetime, published as `"life=<seconds>"` in the TXT; nil
    /// publishes none (the mapping then never expires).
    public var lifetime: UInt32?
    /// The relay the node is reached through, published as `"relay=<address>"` in the
    /// TXT; nil publishes none.
    public var relay: IPAddress?

    /// The default TTL of mapping records, in seconds.
    public static let defaultTTL: UInt32 = 10

    /// Creates a builder for a zone layout.
    public init(names: MappingNames, ttl: UInt32 = RegistrationBuilder.defaultTTL, lifetime: UInt32? = nil,
                relay: IPAddress? = nil) {
        self.names = names
        self.ttl = ttl
        self.lifetime = lifetime
        self.relay = relay
    }

    /// The UPDATE replacing `hoa`'s mapping with `moas` at `sequence`. `publicKey`, the
    /// node's Ed25519 public key in base64, goes into the TXT as `key=` (nil: no key; the
    /// builder does not check it, ``IMSClient/register(hoa:moas:sequence:publicKey:)``
    /// does). `previousMoAs` are the MoAs published before (as far as the caller knows):
    /// their PTRs are removed unless they are among `moas`. Duplicates are dropped, first
    /// occurrence kept.
    public func update(id: UInt16, hoa: IPAddress, moas: [IPAddress], sequence: UInt64,
                       publicKey: String? = nil, previousMoAs: [IPAddress] = []) -> DNSMessage {
        let owner = names.hoaName(for: hoa)
        let current = Self.unique(moas)
        var builder = DNSUpdateBuilder(id: id, zone: names.zone)
        builder.deleteRRset(owner, type: .a)
        builder.deleteRRset(owner, type: .aaaa)
        builder.deleteRRset(owner, type: .txt)
        for moa in current {
            builder.add(owner, ttl: ttl, MappingNames.addressRecord(moa))
        }
        builder.add(owner, ttl: ttl, MappingNames.versionRecord(sequence: sequence, publicKey: publicKey,
                                                                        lifetime: lifetime, relay: relay))
        for moa in current {
            let reverse = names.moaName(for: moa)
            builder.deleteRRset(reverse, type: .ptr)
            builder.add(reverse, ttl: ttl, .ptr(owner))
        }
        for moa in Self.unique(previousMoAs) where !current.contains(moa) {
            builder.delete(names.moaName(for: moa), .ptr(owner))
        }
        return builder.message
    }

    /// The same UPDATE, encoded (names compressed) and signed with `key` at `now`
    /// (seconds since the epoch). Keep the returned MAC: the response's MAC covers it.
    public func signedUpdate(id: UInt16, hoa: IPAddress, moas: [IPAddress], sequence: UInt64,
                             publicKey: String? = nil, previousMoAs: [IPAddress] = [], key: TSIGKey,
                             now: UInt64, fudge: UInt16 = TSIG.defaultFudge) throws(DNSEncodeError) -> TSIGSignedMessage {
        let message = update(id: id, hoa: hoa, moas: moas, sequence: sequence, publicKey: publicKey,
                             previousMoAs: previousMoAs)
        return try message.signed(with: key, now: now, fudge: fudge)
    }

    static func unique(_ addresses: [IPAddress]) -> [IPAddress] {
        var seen = Set<IPAddress>()
        return addresses.filter { seen.insert($0).inserted }
    }
}
