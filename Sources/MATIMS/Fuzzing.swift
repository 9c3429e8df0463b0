import MATDNS

extension IMSCore {
    /// The key the fuzzing instance accepts as an admin key: name `fuzz-admin.mat.example.`,
    /// HMAC-SHA256, secret octets 0...31. Seeds signed with it reach the UPDATE path.
    public static let fuzzingAdminKey = TSIGKey(name: try! DNSName("fuzz-admin.mat.example."),
                                                secret: (0..<32).map { UInt8($0) })
    /// A node key for `10.100.51.198.hoa.mat.example.` (HoA 198.51.100.10), secret 32...63.
    public static let fuzzingNodeKey = TSIGKey(name: try! DNSName("10.100.51.198.hoa.mat.example."),
                                               secret: (32..<64).map { UInt8($0) })
    /// The clock of the fuzzing instance (seconds since the epoch): sign seeds at this time.
    public static let fuzzingTime: UInt64 = 1_800_000_000

    /// A server without sockets or files for a fuzz target: zone `mat.example.`, the two
    /// keys above, a fixed clock. Drive it with `handleDatagram(_:from:)` (UDP rules) or
    /// `handleStream(_:from:)` (TCP rules, transfers); every input ends in a reply or a
    /// counted drop, and `counters` tells which. Replay protection makes state carry over
    /// between inputs; make a fresh instance per input for strict reproducibility.
    public static func fuzzingInstance() -> IMSCore {
        var zone = ZoneConfiguration(name: try! DNSName("mat.example."))
        zone.adminKeys = [fuzzingAdminKey.name]
        zone.allowTransfer = [.any]
        let configuration = IMSConfiguration(keys: [fuzzingAdminKey, fuzzingNodeKey], zones: [zone])
        return try! IMSCore(configuration: configuration, clock: { fuzzingTime })
    }
}
