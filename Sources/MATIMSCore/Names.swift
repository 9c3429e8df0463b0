import MATDNS
import MATPacket

/// The mapping zone's names (docs/ims.md): `<reversed HoA>.hoa.<zone>` holds a node's
/// MoAs and TXT, `<reversed MoA>.moa.<zone>` points back at it for first contact. IPv4
/// addresses are reversed by octet, IPv6 by nibble, as in in-addr.arpa and ip6.arpa, so
/// that a sub-zone can be delegated per prefix.
public enum IMSNames {
    /// The owner name of a HoA's mapping, which is also the name of its node's TSIG key.
    public static func hoaName(_ hoa: IPAddress, zone: DNSName) throws(DNSNameError) -> DNSName {
        try reverse(hoa, under: zone.prepending(label: "hoa"))
    }

    /// The first-contact name of a MoA (its PTR points at the HoA name).
    public static func moaName(_ moa: IPAddress, zone: DNSName) throws(DNSNameError) -> DNSName {
        try reverse(moa, under: zone.prepending(label: "moa"))
    }

    static func reverse(_ address: IPAddress, under suffix: DNSName) throws(DNSNameError) -> DNSName {
        switch address {
        case .v4(let a): try DNSName.reverseIPv4(a.value, in: suffix)
        case .v6(let a): try DNSName.reverseIPv6(high: a.high, low: a.low, in: suffix)
        }
    }

    /// The address record for a MoA.
    public static func addressRecord(_ address: IPAddress) -> DNSRecordData {
        switch address {
        case .v4(let a): .a(a.value)
        case .v6(let a): .aaaa(high: a.high, low: a.low)
        }
    }
}
