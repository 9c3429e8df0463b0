import MATDNS
import MATPacket

/// Where mappings live in the mapping zone, and how their records read and write.
///
/// Layout (docs/ims.md): HoA 198.51.100.10 owns `10.100.51.198.hoa.<zone>` (an IPv6 HoA
/// owns its 32 nibbles, least significant first, under `hoa.<zone>`), holding A or AAAA
/// records (the current MoAs) and one TXT `"v=1" "seq=<n>"`, plus `"key=<base64>"` (the
/// node's Ed25519 public key) when it publishes one. MoA 192.0.2.10 owns
/// `10.2.0.192.moa.<zone>` with a PTR back to the HoA name, a first-contact hint that is
/// only believed once the forward name confirms it.
///
/// Pure: no I/O. Every name derivation succeeds once the zone is accepted, because the
/// initializer checks that the longest name (an IPv6 address) still fits in 255 octets.
public struct MappingNames: Hashable, Sendable {
    /// The mapping zone, e.g. `mat.example.`.
    public let zone: DNSName
    /// `hoa.<zone>`: parent of every forward (HoA) name.
    public let hoaSuffix: DNSName
    /// `moa.<zone>`: parent of every reverse (MoA) name.
    public let moaSuffix: DNSName

    /// Accepts `zone` if the longest mapping name under it is a legal DNS name.
    public init(zone: DNSName) throws(DNSNameError) {
        self.zone = zone
        hoaSuffix = try zone.prepending(label: "hoa")
        moaSuffix = try zone.prepending(label: "moa")
        // 32 one-octet nibble labels take 64 octets in wire form.
        guard hoaSuffix.wireLength + 64 <= DNSName.maxWireLength else { throw .nameTooLong }
    }

    /// Parses the zone from presentation text such as `mat.example.`.
    public init(zone text: String) throws(DNSNameError) {
        try self.init(zone: DNSName(text))
    }

    /// The forward name of a HoA: `10.100.51.198.hoa.<zone>`. It is also the name of the
    /// node's TSIG key, which is what lets servers confine a key to its own name.
    public func hoaName(for hoa: IPAddress) -> DNSName {
        Self.reverse(hoa, under: hoaSuffix)
    }

    /// The reverse (first-contact) name of a MoA: `10.2.0.192.moa.<zone>`.
    public func moaName(for moa: IPAddress) -> DNSName {
        Self.reverse(moa, under: moaSuffix)
    }

    /// The HoA whose forward name this is, or nil if `name` is not exactly a HoA name
    /// in this zone (so a PTR pointing elsewhere is never followed).
    public func hoa(fromName name: DNSName) -> IPAddress? {
        Self.address(of: name, under: hoaSuffix)
    }

    /// The MoA whose reverse name this is, or nil.
    public func moa(fromName name: DNSName) -> IPAddress? {
        Self.address(of: name, under: moaSuffix)
    }

    /// The A or AAAA record data for an address.
    public static func addressRecord(_ address: IPAddress) -> DNSRecordData {
        switch address {
        case .v4(let v4): .a(v4.value)
        case .v6(let v6): .aaaa(high: v6.high, low: v6.low)
        }
    }

    /// The address in A or AAAA record data, nil for other types.
    public static func address(from data: DNSRecordData) -> IPAddress? {
        switch data {
        case .a(let value): .v4(IPv4Address(value))
        case .aaaa(let high, let low): .v6(IPv6Address(high: high, low: low))
        default: nil
        }
    }

    /// The record type that carries MoAs of this address's family.
    public static func addressType(for address: IPAddress) -> DNSType {
        switch address {
        case .v4: .a
        case .v6: .aaaa
        }
    }

    /// The version TXT for a sequence number: `"v=1" "seq=<n>"`, followed by
    /// `"key=<base64>"` when the node publishes its Ed25519 public key (standard base64
    /// of the 32-octet key, see ``isValidPublicKey(_:)``) and `"life=<seconds>"` when the
    /// registration has a lifetime (mat-ims removes the MoAs once it has passed without a
    /// newer registration; readers of any server drop a mapping whose sequence has not
    /// moved for that long), and `"relay=<address>"` when the node is reached through a
    /// relay (its `[relay] address`; docs/signaling.md, "Signaling through the relay").
    /// The key is written as given.
    public static func versionRecord(sequence: UInt64, publicKey: String? = nil,
                                     lifetime: UInt32? = nil, relay: IPAddress? = nil) -> DNSRecordData {
        var strings = ["v=1", "seq=\(sequence)"]
        if let publicKey { strings.append("key=\(publicKey)") }
        if let lifetime { strings.append("life=\(lifetime)") }
        if let relay { strings.append("relay=\(relay)") }
        return .txt(strings: strings)
    }

    /// The sequence number in a version TXT, or nil if the data is not a TXT with exactly
    /// one `v=1` and one well-formed `seq=`. Strings other than these are ignored, so
    /// later versions can add fields (a public key, a port) without breaking readers.
    public static func sequence(from data: DNSRecordData) -> UInt64? {
        version(from: data)?.sequence
    }

    /// The public key in a version TXT (see ``version(from:)``), or nil.
    public static func publicKey(from data: DNSRecordData) -> String? {
        version(from: data)?.publicKey
    }

    /// The fields of a version TXT, or nil if the data is not a TXT with exactly one
    /// `v=1` and one well-formed `seq=`. The public key is the text after `key=` when there
    /// is exactly one `key=` string and it is a valid key (``isValidPublicKey(_:)``);
    /// otherwise it is nil and the rest of the record still counts, as for any string a
    /// reader does not understand. The lifetime is the number after `life=` when there is
    /// exactly one, in 1...2^32-1 without leading zeros; otherwise nil (no lifetime). The
    /// relay is the address after `relay=` when there is exactly one and it parses;
    /// otherwise nil. Unknown strings are ignored.
    public static func version(from data: DNSRecordData) -> MappingVersion? {
        guard case .txt(let strings) = data else { return nil }
        var version = 0
        var sequence: UInt64?
        var sequences = 0
        var keys: [String] = []
        var lifetimes: [Substring] = []
        var relays: [IPAddress?] = []
        for string in strings {
            let text = String(decoding: string, as: UTF8.self)
            if text == "v=1" {
                version += 1
            } else if text.hasPrefix("seq=") {
                let digits = text.dropFirst(4)
                sequences += 1
                guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
                sequence = UInt64(digits)
            } else if text.hasPrefix("key=") {
                keys.append(String(text.dropFirst(4)))
            } else if text.hasPrefix("life=") {
                lifetimes.append(text.dropFirst(5))
            } else if text.hasPrefix("relay=") {
                relays.append(IPAddress(String(text.dropFirst(6))))
            }
        }
        guard version == 1, sequences == 1, let sequence else { return nil }
        // Two keys are ambiguous: believe neither.
        let publicKey = keys.count == 1 && isValidPublicKey(keys[0]) ? keys[0] : nil
        return MappingVersion(sequence: sequence, publicKey: publicKey,
                              lifetime: lifetimes.count == 1 ? lifetime(lifetimes[0]) : nil,
                              relay: relays.count == 1 ? relays[0] : nil)
    }

    /// Decimal seconds, 1...2^32-1, in the one spelling `versionRecord` writes.
    private static func lifetime(_ digits: Substring) -> UInt32? {
        guard let first = digits.utf8.first, first != UInt8(ascii: "0"), digits.utf8.count <= 10,
              digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return UInt32(digits)
    }

    /// Whether `text` is an Ed25519 public key as the version TXT carries it: standard
    /// base64 (RFC 4648 §4) of exactly 32 octets, with its padding and nothing else, i.e.
    /// 43 alphabet characters whose last one leaves the two unused bits zero, then `=`.
    /// Only the canonical spelling passes, so one key has exactly one string.
    public static func isValidPublicKey(_ text: String) -> Bool {
        let chars = Array(text.utf8)
        guard chars.count == 44, chars[43] == UInt8(ascii: "=") else { return false }
        for (index, c) in chars[0..<43].enumerated() {
            guard let value = base64Value(c) else { return false }
            // 43 sextets are 258 bits: 256 of key, then 2 that must be zero.
            if index == 42, value & 0b11 != 0 { return false }
        }
        return true
    }

    private static func base64Value(_ c: UInt8) -> UInt8? {
        switch c {
        case 65...90: c - 65          // A-Z
        case 97...122: c - 71         // a-z
        case 48...57: c + 4           // 0-9
        case 43: 62                   // +
        case 47: 63                   // /
        default: nil
        }
    }

    // MARK: - Reverse-style names

    private static func reverse(_ address: IPAddress, under suffix: DNSName) -> DNSName {
        do {
            switch address {
            case .v4(let v4): return try DNSName.reverseIPv4(v4.value, in: suffix)
            case .v6(let v6): return try DNSName.reverseIPv6(high: v6.high, low: v6.low, in: suffix)
            }
        } catch {
            // The initializer reserved room for the longest (IPv6) name.
            preconditionFailure("mapping name exceeds the length checked at init: \(error)")
        }
    }

    private static func address(of name: DNSName, under suffix: DNSName) -> IPAddress? {
        guard name.isSubdomain(of: suffix) else { return nil }
        let labels = name.labels
        let count = labels.count - suffix.labelCount
        if count == 4 {
            var value: UInt32 = 0
            for label in labels[0..<4].reversed() {
                guard let octet = decimalOctet(label) else { return nil }
                value = value << 8 | UInt32(octet)
            }
            return .v4(IPv4Address(value))
        }
        if count == 32 {
            var high: UInt64 = 0
            var low: UInt64 = 0
            for (index, label) in labels[0..<32].reversed().enumerated() {
                guard label.count == 1, let nibble = hexNibble(label[0]) else { return nil }
                if index < 16 {
                    high = high << 4 | UInt64(nibble)
                } else {
                    low = low << 4 | UInt64(nibble)
                }
            }
            return .v6(IPv6Address(high: high, low: low))
        }
        return nil
    }

    /// `0`...`255` without leading zeros: the only spelling `reverseIPv4` produces, so
    /// one address has exactly one name.
    private static func decimalOctet(_ label: [UInt8]) -> UInt8? {
        guard !label.isEmpty, label.count <= 3, label.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        guard label.count == 1 || label[0] != 48 else { return nil }
        let value = label.reduce(0) { $0 * 10 + Int($1 - 48) }
        return value <= 255 ? UInt8(value) : nil
    }

    private static func hexNibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}

/// The fields of a node's version TXT (`"v=1" "seq=<n>" ["key=<base64>"] ["life=<seconds>"]
/// ["relay=<address>"]`).
public struct MappingVersion: Hashable, Sendable {
    /// The mapping sequence number.
    public var sequence: UInt64
    /// The node's Ed25519 public key, standard base64 of 32 octets; nil if the record
    /// carries none or none that is valid.
    public var publicKey: String?
    /// How long the registration holds without a newer one, seconds; nil: for ever (a
    /// writer that publishes no lifetime, such as a hand-made nsupdate).
    public var lifetime: UInt32?
    /// The relay the node is reached through (its `[relay] address`); nil: none.
    public var relay: IPAddress?

    /// Creates the fields.
    public init(sequence: UInt64, publicKey: String? = nil, lifetime: UInt32? = nil, relay: IPAddress? = nil) {
        self.sequence = sequence
        self.publicKey = publicKey
        self.lifetime = lifetime
        self.relay = relay
    }
}
