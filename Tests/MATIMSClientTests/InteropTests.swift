import Glibc
import MATDNS
import MATPacket
import MATSystem
import Synchronization
import Testing
@testable import MATIMSClient

/// Settings for the interop tests, from the environment `Interop/client/run` sets up:
/// `MAT_INTEROP_BIND` / `MAT_INTEROP_KNOT` (`127.0.0.1:PORT` of a throwaway `named` /
/// `knotd` serving `mat.example.`), `MAT_INTEROP_KEY_A` / `MAT_INTEROP_KEY_B` (base64
/// secrets of the keys of nodes A and B), `MAT_INTEROP_PUBLIC_KEY_A` (the Ed25519 public
/// key, base64, that node A publishes; `Fixture.publicKeyA` if unset),
/// `MAT_INTEROP_KEY_A6` (node A's second key: A is dual stack, its IPv6 HoA has a key of
/// its own). Node A registers with its public key, node B without one. A suite runs only
/// when its server is given.
enum Interop {
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
    static let bind = environment("MAT_INTEROP_BIND").flatMap(DNSServerAddress.init)
    static let knot = environment("MAT_INTEROP_KNOT").flatMap(DNSServerAddress.init)

    static let moaA = ip("192.0.2.10")
    static let moaB = ip("192.0.2.20")
    /// Node A's IPv6 HoA and MoA: a dual-stack node registers one name per family.
    static let hoaA6 = ip("2001:db8:100::10")
    static let moaA6 = ip("2001:db8:a::10")

    static func key(for hoa: IPAddress, secret variable: String) -> TSIGKey {
        let secret = environment(variable) ?? ""
        do {
            return try TSIGKey(name: Fixture.names.hoaName(for: hoa), base64Secret: secret)
        } catch {
            preconditionFailure("\(variable) is not a base64 secret")
        }
    }

    static var keyA: TSIGKey { key(for: Fixture.hoaA, secret: "MAT_INTEROP_KEY_A") }
    static var keyB: TSIGKey { key(for: Fixture.hoaB, secret: "MAT_INTEROP_KEY_B") }
    /// Node A's key for its IPv6 HoA, named after that HoA's name.
    static var keyA6: TSIGKey { key(for: hoaA6, secret: "MAT_INTEROP_KEY_A6") }
    /// The public key node A publishes in its version TXT.
    static let publicKeyA = environment("MAT_INTEROP_PUBLIC_KEY_A") ?? Fixture.publicKeyA

    /// Sequence numbers that only grow within one run, as matd's persisted counter would.
    private static let counter = Mutex<UInt64>(0)
    static func nextSequence() -> UInt64 {
        counter.withLock {
            $0 += 1
            return $0
        }
    }

    static func client(_ server: DNSServerAddress, key: TSIGKey?, keys: [TSIGKey] = [],
                       servers: [DNSServerAddress]? = nil,
                       clock: @escaping IMSClock = IMSClient.systemClock, log: LogRecorder? = nil) -> IMSClient {
        let configuration = IMSClientConfiguration(names: Fixture.names, servers: servers ?? [server], key: key,
                                                   keys: keys)
        let transport = DNSTransport(options: DNSTransportOptions(udpTimeoutMilliseconds: 500, rounds: 2))
        let printer: IMSLogger = { level, text in print("[ims \(level)] \(text)") }
        return IMSClient(configuration: configuration, transport: transport, clock: clock, log: log?.logger ?? printer)
    }

    /// Everything the tests can change, read fresh from the server as text lines: the A,
    /// AAAA and TXT RRsets of both nodes and the PTRs of every MoA the tests use.
    static func snapshot(_ server: DNSServerAddress) throws -> [String] {
        let transport = DNSTransport()
        var lines: [String] = []
        var owners: [(DNSName, DNSType)] = []
        for hoa in [Fixture.hoaA, Fixture.hoaB, hoaA6] {
            for type in [DNSType.a, .aaaa, .txt] { owners.append((Fixture.names.hoaName(for: hoa), type)) }
        }
        for moa in [moaA, moaB, ip("192.0.2.66"), ip("192.0.2.99"), ip("203.0.113.10"), moaA6, ip("2001:db8:b::10")] {
            owners.append((Fixture.names.moaName(for: moa), .ptr))
        }
        for (owner, type) in owners {
            let request = try DNSMessage(header: DNSHeader(id: UInt16.random(in: 0...0xFFFF)),
                                         questions: [DNSQuestion(name: owner, type: type)]).encode()
            let reply = try transport.exchange(request, servers: [server], retryOn: [])
            lines.append(contentsOf: reply.message.answers.map { "\($0.name) \($0.ttl) \($0.data)" }.sorted())
        }
        return lines
    }

    /// Registers both nodes at their home MoAs, so each test starts from a known zone.
    static func baseline(_ server: DNSServerAddress) throws {
        try client(server, key: keyA).register(hoa: Fixture.hoaA, moas: [moaA], sequence: nextSequence(),
                                               publicKey: publicKeyA)
        try client(server, key: keyB).register(hoa: Fixture.hoaB, moas: [moaB], sequence: nextSequence())
    }

    // MARK: - Scenarios shared by the BIND and Knot suites

    /// A clock 120 s behind, within the fudge: the server takes the update without a
    /// refusal for time, so no refusal teaches the client its time, but its signed answers
    /// carry it (``IMSClient/serverTimeAhead``, docs/security.md D5 and S2). The zone is
    /// left as ``baseline(_:)`` leaves node A.
    static func signedAnswersSayTheServersTimeWithinTheFudge(_ server: DNSServerAddress) throws {
        let behind = client(server, key: keyA, clock: { IMSClient.systemClock() - 120 })
        try behind.register(hoa: Fixture.hoaA, moas: [moaA], sequence: nextSequence(), publicKey: publicKeyA)
        #expect(behind.statistics.refusedUpdates == 0 && behind.statistics.clockCorrections == 0
                && behind.clockCorrection == 0)
        let ahead = try #require(behind.serverTimeAhead)
        #expect((ahead - 120).magnitude <= 2, "the server is \(ahead) s ahead")
    }

    static func registerAndResolve(_ server: DNSServerAddress) throws {
        let sequence = nextSequence()
        let result = try client(server, key: keyA).register(hoa: Fixture.hoaA, moas: [moaA], sequence: sequence,
                                                            publicKey: publicKeyA)
        #expect(result.confirmation.moas == [moaA] && result.confirmation.sequence == sequence)
        #expect(result.confirmation.publicKey == publicKeyA)
        // Node B resolves A; its first listed server is down, so the answer takes a retry.
        let nodeB = client(server, key: keyB, servers: [deadPort(), server])
        let answer = try nodeB.lookup(hoa: Fixture.hoaA)
        #expect(answer.moas == [moaA])
        #expect(answer.sequence == sequence)
        #expect(answer.publicKey == publicKeyA)
        #expect(answer.ttl == RegistrationBuilder.defaultTTL)
        #expect(answer.source == .ims(server))
        #expect(nodeB.statistics.transport.retries >= 1)
        #expect(try nodeB.lookup(hoa: Fixture.hoaA).source == .cache)
    }

    static func reverseLookup(_ server: DNSServerAddress) throws {
        try baseline(server)
        let nodeB = client(server, key: keyB)
        let result = try nodeB.reverseLookup(moa: moaA)
        #expect(result.hoa == Fixture.hoaA)
        #expect(result.mapping.moas == [moaA])
        // A moves: the old MoA's PTR goes, the new one's confirms.
        let moved = ip("203.0.113.10")
        let nodeA = client(server, key: keyA)
        try nodeA.register(hoa: Fixture.hoaA, moas: [moved], sequence: nextSequence(), publicKey: publicKeyA)
        let found = try nodeB.reverseLookup(moa: moved)
        #expect(found.hoa == Fixture.hoaA && found.mapping.publicKey == publicKeyA)
        #expect(throws: IMSClientError.reverseNotConfirmed(moa: moaA, candidates: [])) {
            try nodeB.reverseLookup(moa: moaA)
        }
        try nodeA.register(hoa: Fixture.hoaA, moas: [moaA], sequence: nextSequence(), publicKey: publicKeyA)
    }

    static func largeMappingUsesTCP(_ server: DNSServerAddress) throws {
        // 100 MoAs: the UPDATE is far above 512 octets (sent over TCP) and the A answer
        // above the 1232 EDNS size (truncated over UDP, fetched again over TCP).
        let many = (1...100).map { ip("192.0.2.\($0 + 100)") }
        let nodeB = client(server, key: keyB)
        try nodeB.register(hoa: Fixture.hoaB, moas: many, sequence: nextSequence())
        let nodeA = client(server, key: keyA)
        let answer = try nodeA.lookup(hoa: Fixture.hoaB)
        #expect(Set(answer.moas) == Set(many))
        #expect(answer.publicKey == nil)
        #expect(nodeA.statistics.transport.truncationFallbacks >= 1)
        #expect(nodeB.statistics.transport.tcpQueries >= 1)
        try nodeB.register(hoa: Fixture.hoaB, moas: [moaB], sequence: nextSequence())
        #expect(try nodeA.lookup(hoa: Fixture.hoaB, allowCached: false).moas == [moaB])
    }

    /// Node A is dual stack: one client with a key per HoA registers both names, node B
    /// finds A by either HoA and by either MoA, and A's IPv4 key alone cannot write the
    /// IPv6 name (each key writes only the name it is named after). `refusal` is how this
    /// server refuses (BIND: REFUSED, signed; Knot: NOTAUTH/BADKEY, unsigned).
    static func dualStack(_ server: DNSServerAddress, refusal: IMSClientError) throws {
        let nodeA = client(server, key: nil, keys: [keyA, keyA6])
        let four = nextSequence(), six = nextSequence()
        try nodeA.register(hoa: Fixture.hoaA, moas: [moaA], sequence: four, publicKey: publicKeyA)
        try nodeA.register(hoa: hoaA6, moas: [moaA6], sequence: six, publicKey: publicKeyA)
        let nodeB = client(server, key: keyB)
        let byFour = try nodeB.lookup(hoa: Fixture.hoaA), bySix = try nodeB.lookup(hoa: hoaA6)
        #expect(byFour.moas == [moaA] && byFour.sequence == four && byFour.publicKey == publicKeyA)
        #expect(bySix.moas == [moaA6] && bySix.sequence == six && bySix.publicKey == publicKeyA)
        // First contact from either MoA leads to the HoA of its family.
        #expect(try nodeB.reverseLookup(moa: moaA6).hoa == hoaA6)
        #expect(try nodeB.reverseLookup(moa: moaA).hoa == Fixture.hoaA)
        // A moves: both families follow, the old IPv6 pointer goes.
        let moved6 = ip("2001:db8:b::10")
        try nodeA.register(hoa: hoaA6, moas: [moved6], sequence: nextSequence(), publicKey: publicKeyA)
        #expect(try nodeB.lookup(hoa: hoaA6, allowCached: false).moas == [moved6])
        #expect(try nodeB.reverseLookup(moa: moved6).hoa == hoaA6)
        #expect(throws: IMSClientError.reverseNotConfirmed(moa: moaA6, candidates: [])) {
            try nodeB.reverseLookup(moa: moaA6)
        }
        try nodeA.register(hoa: hoaA6, moas: [moaA6], sequence: nextSequence(), publicKey: publicKeyA)

        let before = try snapshot(server)
        let fourOnly = client(server, key: keyA)
        #expect(throws: refusal) {
            try fourOnly.register(hoa: hoaA6, moas: [ip("2001:db8:b::66")], sequence: nextSequence())
        }
        #expect(try snapshot(server) == before)
    }

    static func staleWhenServerUnreachable(_ server: DNSServerAddress) throws {
        try baseline(server)
        let clock = TestClock(WallClock.seconds())
        let log = LogRecorder()
        let transport = CuttableTransport()
        let nodeB = IMSClient(configuration: IMSClientConfiguration(names: Fixture.names, servers: [server], key: keyB),
                              transport: transport, clock: clock.closure, log: log.logger)
        let fresh = try nodeB.lookup(hoa: Fixture.hoaA)
        #expect(!fresh.isStale && fresh.moas == [moaA])
        transport.cut = true
        clock.advance(60)
        let stale = try nodeB.lookup(hoa: Fixture.hoaA)
        #expect(stale.isStale && stale.moas == [moaA])
        #expect(nodeB.statistics.staleAnswersServed == 1)
        #expect(nodeB.statistics.transport.networkErrors >= 1)
        #expect(log.contains(.warning, "serving stale mapping"))
        transport.cut = false
        #expect(try !nodeB.lookup(hoa: Fixture.hoaA).isStale)
    }
}

/// Real sockets, but while `cut` every request goes to a closed port instead of the
/// listed servers: the IMS is unreachable without stopping it.
final class CuttableTransport: DNSExchanging {
    private let inner = DNSTransport(options: DNSTransportOptions(udpTimeoutMilliseconds: 300, rounds: 1))
    private let isCut = Mutex(false)

    var cut: Bool {
        get { isCut.withLock { $0 } }
        set { isCut.withLock { $0 = newValue } }
    }

    var statistics: DNSTransportStatistics { inner.statistics }

    func exchange(_ request: [UInt8], servers: [DNSServerAddress],
                  retryOn: Set<DNSResponseCode>) throws(DNSTransportError) -> DNSExchange {
        try inner.exchange(request, servers: cut ? [deadPort()] : servers, retryOn: retryOn)
    }
}

@Suite("Interop: BIND 9 named", .serialized, .enabled(if: Interop.bind != nil))
struct BINDInteropTests {
    var server: DNSServerAddress { Interop.bind! }

    @Test func bindRegisterAndResolve() throws { try Interop.registerAndResolve(server) }

    @Test func bindsSignedAnswersSayItsTimeWithinTheFudge() throws {
        try Interop.signedAnswersSayTheServersTimeWithinTheFudge(server)
    }

    @Test func bindReverseLookupWithForwardConfirmation() throws { try Interop.reverseLookup(server) }

    @Test func bindLargeMappingOverTCP() throws { try Interop.largeMappingUsesTCP(server) }

    @Test func bindStaleMappingWhileUnreachable() throws { try Interop.staleWhenServerUnreachable(server) }

    @Test func bindDualStackNodeRegistersAndIsFoundByBothHoAs() throws {
        try Interop.dualStack(server, refusal: .updateRefused(rcode: .refused, tsigError: nil, authenticated: true))
    }

    @Test func bindRefusesWrongKeySecret() throws {
        try Interop.baseline(server)
        let before = try Interop.snapshot(server)
        let forged = TSIGKey(name: Interop.keyA.name, secret: Array(repeating: 0x5A, count: 32))
        #expect(throws: IMSClientError.updateRefused(rcode: .notAuth, tsigError: .badSig, authenticated: false)) {
            try Interop.client(server, key: forged).register(hoa: Fixture.hoaA, moas: [ip("192.0.2.99")],
                                                             sequence: Interop.nextSequence())
        }
        #expect(try Interop.snapshot(server) == before)
    }

    @Test func bindRefusesKeyUpdatingAnotherNodesName() throws {
        try Interop.baseline(server)
        let before = try Interop.snapshot(server)
        let nodeA = Interop.client(server, key: Interop.keyA)
        #expect(throws: IMSClientError.updateRefused(rcode: .refused, tsigError: nil, authenticated: true)) {
            // A's key may not bind anything, its public key included, to B's HoA.
            try nodeA.register(hoa: Fixture.hoaB, moas: [ip("192.0.2.66")], sequence: Interop.nextSequence(),
                               publicKey: Interop.publicKeyA)
        }
        #expect(nodeA.statistics.refusedUpdates == 1)
        #expect(try Interop.snapshot(server) == before)
    }

    @Test func bindRefusesUnsignedUpdate() throws {
        try Interop.baseline(server)
        let before = try Interop.snapshot(server)
        let update = RegistrationBuilder(names: Fixture.names)
            .update(id: UInt16.random(in: 0...0xFFFF), hoa: Fixture.hoaA, moas: [ip("192.0.2.99")], sequence: 999)
        let reply = try DNSTransport().exchange(try update.encode(), servers: [server], retryOn: [])
        #expect(reply.message.header.responseCode == .refused)
        #expect(reply.message.tsig == nil)
        #expect(try Interop.snapshot(server) == before)
    }

    /// The node's clock runs 1000 s behind, outside BIND's 300 s fudge: BIND refuses the
    /// update with a signed BADTIME carrying its time, the client takes that time and the
    /// update goes through at the second try (D5, as against mat-ims in ClockStepTests; the
    /// refusal it recovered from is counted as a clock correction, not a refused update).
    @Test func bindRefusesSignatureOutsideFudgeAndItsTimeIsTaken() throws {
        try Interop.baseline(server)
        let skewed = Interop.client(server, key: Interop.keyA, clock: { IMSClient.systemClock() - 1000 })
        let result = try skewed.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.99")], sequence: Interop.nextSequence())
        #expect(result.moas == [ip("192.0.2.99")])
        #expect(skewed.statistics.clockCorrections == 1)
        #expect((skewed.clockCorrection - 1000).magnitude <= 2, "correction \(skewed.clockCorrection) s")
        // The zone as the other tests leave it, which Interop/client/run reads afterwards.
        try Interop.baseline(server)
    }
}

@Suite("Interop: Knot DNS knotd", .serialized, .enabled(if: Interop.knot != nil))
struct KnotInteropTests {
    var server: DNSServerAddress { Interop.knot! }

    @Test func knotRegisterAndResolve() throws { try Interop.registerAndResolve(server) }

    @Test func knotsSignedAnswersSayItsTimeWithinTheFudge() throws {
        try Interop.signedAnswersSayTheServersTimeWithinTheFudge(server)
    }

    @Test func knotReverseLookupWithForwardConfirmation() throws { try Interop.reverseLookup(server) }

    @Test func knotLargeMappingOverTCP() throws { try Interop.largeMappingUsesTCP(server) }

    @Test func knotStaleMappingWhileUnreachable() throws { try Interop.staleWhenServerUnreachable(server) }

    @Test func knotDualStackNodeRegistersAndIsFoundByBothHoAs() throws {
        try Interop.dualStack(server, refusal: .updateRefused(rcode: .notAuth, tsigError: .badKey, authenticated: false))
    }

    @Test func knotRefusesKeyUpdatingAnotherNodesName() throws {
        try Interop.baseline(server)
        let before = try Interop.snapshot(server)
        // Knot denies by ACL with NOTAUTH and an unsigned BADKEY, not REFUSED.
        #expect(throws: IMSClientError.updateRefused(rcode: .notAuth, tsigError: .badKey, authenticated: false)) {
            try Interop.client(server, key: Interop.keyA).register(hoa: Fixture.hoaB, moas: [ip("192.0.2.66")],
                                                                   sequence: Interop.nextSequence(),
                                                                   publicKey: Interop.publicKeyA)
        }
        #expect(try Interop.snapshot(server) == before)
    }
}
