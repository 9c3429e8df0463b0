/// The "what is my address" name of a mapping zone: an A or AAAA query for
/// `whoami.<zone>` is answered by mat-ims with the source address it saw the query come
/// from, so a node behind 1:1 NAT learns the public address its peers will see
/// (docs/ims.md, "What is my address"). A plain DNS name, so any server could answer it;
/// BIND and Knot do not, and nodes served by them configure the address instead.
public enum WhoAmI {
    /// The label under the zone apex.
    public static let label = "whoami"

    /// `whoami.<zone>`.
    public static func name(in zone: DNSName) -> DNSName {
        // One 6-byte label more than a valid zone name can only fail for a zone at the
        // 255-byte limit, which no configuration accepts; the apex stands in then.
        (try? zone.prepending(label: label)) ?? zone
    }
}
