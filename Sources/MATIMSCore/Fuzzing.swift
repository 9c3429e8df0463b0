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

    /// Update limits of the fuzzing instance, small so that a few updates reach them.
    public static let fuzzingLimits = UpdateLimits(addressesPerName: 4, recordsPerName: 6, namesPerKey: 3)
    /// Response rate limiting of the fuzzing instance: 4 responses per /24 or /56 (the
    /// clock does not move), every second limited one slipped, nobody exempt.
    public static let fuzzingRateLimit = RateLimitConfiguration(responsesPerSecond: 4, slip: 2, window: 1, exempt: [])

    /// A server without sockets or files for a fuzz target: zone `mat.example.`, the two
    /// keys above, fixed clocks, `fuzzingLimits` and `fuzzingRateLimit`. Drive it with
    /// `handleDatagram(_:from:)` (UDP rules; with a source, rate limited) or
    /// `handleStream(_:from:)` (TCP rules, transfers); every input ends in a reply or a
    /// counted drop, and `counters` tells which. Replay protection and rate limiting make
    /// state carry over between inputs; make a fresh instance per input for strict
    /// reproducibility.
    public static func fuzzingInstance() -> IMSCore {
        var zone = ZoneConfiguration(name: try! DNSName("mat.example."))
        zone.adminKeys = [fuzzingAdminKey.name]
        zone.allowTransfer = [.any]
        zone.updateLimits = fuzzingLimits
        var configuration = IMSConfiguration(keys: [fuzzingAdminKey, fuzzingNodeKey], zones: [zone])
        configuration.rateLimit = fuzzingRateLimit
        return try! IMSCore(configuration: configuration, clock: { fuzzingTime }, monotonic: { 0 }, journals: nil)
    }
}
