import Foundation
import Glibc
import MATDNS
import MATPacket
import MATTestSupport
import Testing
@testable import MATIMSClient

/// A real `mat-ims` process (the one built with these tests) on a free loopback port,
/// serving `mat.example.` with the keys of nodes A (dual stack: a key per HoA) and B;
/// stopped by `stop()`.
final class SpawnedIMS {
    static let keyB = TSIGKey(name: Fixture.names.hoaName(for: Fixture.hoaB), secret: Array(repeating: 0xB0, count: 32))
    /// Node A's IPv6 HoA, with a key of its own named after its name.
    static let hoaA6 = ip("2001:db8:100::10")
    static let keyA6 = TSIGKey(name: Fixture.names.hoaName(for: hoaA6), secret: Array(repeating: 0xA6, count: 32))

    /// `mat-ims` next to this test bundle (SwiftPM builds every product into the
    /// directory that holds the test bundle), or `MAT_IMS` if set.
    static let binary: String? = {
        var candidates: [String] = []
        if let forced = ProcessInfo.processInfo.environment["MAT_IMS"] { candidates.append(forced) }
        for start in [CommandLine.arguments.first, try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")] {
            guard let start, start.hasPrefix("/") else { continue }
            var directory = URL(fileURLWithPath: start).standardizedFileURL.deletingLastPathComponent()
            for _ in 0..<4 where directory.path != "/" {
                candidates.append(directory.appendingPathComponent("mat-ims").path)
                directory.deleteLastPathComponent()
            }
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    let directory: String
    private let temporary: TemporaryDirectory
    let process = Process()
    let server: DNSServerAddress

    init() throws {
        let binary = try #require(Self.binary, "mat-ims not found next to the test bundle")
        temporary = try TemporaryDirectory(prefix: "mat-ims-client-test")
        directory = temporary.path
        try Fixture.keyA.keyFileText.write(toFile: directory + "/a.key", atomically: true, encoding: .utf8)
        try Self.keyB.keyFileText.write(toFile: directory + "/b.key", atomically: true, encoding: .utf8)
        try Self.keyA6.keyFileText.write(toFile: directory + "/a6.key", atomically: true, encoding: .utf8)
        // mat-ims refuses key files others can read.
        chmod(directory + "/a.key", 0o600)
        chmod(directory + "/b.key", 0o600)
        chmod(directory + "/a6.key", 0o600)
        let config = """
            [server]
            listen = 127.0.0.1:0
            key-file = \(directory)/a.key
            key-file = \(directory)/b.key
            key-file = \(directory)/a6.key
            [zone]
            name = mat.example.
            ns = ns.mat.example.
            glue = ns.mat.example. 127.0.0.1

            """
        try config.write(toFile: directory + "/ims.conf", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: directory + "/log", contents: nil)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--config", directory + "/ims.conf"]
        process.standardOutput = FileHandle(forWritingAtPath: directory + "/log")
        process.standardError = FileHandle(forWritingAtPath: directory + "/log")
        try process.run()
        // "mat-ims: listening on 127.0.0.1:PORT (UDP and TCP)"
        var found: DNSServerAddress?
        _ = poll(seconds: 10) { [directory, process] in
            let text = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("listening on ") }),
               let endpoint = line.split(separator: " ").first(where: { $0.hasPrefix("127.0.0.1:") }) {
                found = DNSServerAddress(String(endpoint))
            }
            return found != nil || !process.isRunning
        }
        guard let found else {
            let log = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
            Self.stop(process, temporary)
            throw TestFailure("mat-ims did not start:\n\(log)")
        }
        server = found
    }

    var log: String { (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? "" }

    func client(key: TSIGKey?, keys: [TSIGKey] = []) -> IMSClient {
        IMSClient(configuration: IMSClientConfiguration(names: Fixture.names, servers: [server], key: key, keys: keys),
                  transport: DNSTransport(options: DNSTransportOptions(udpTimeoutMilliseconds: 1000, rounds: 2)))
    }

    /// The TXT RRset at `hoa`'s name, read with a plain query.
    func txt(_ hoa: IPAddress) throws -> [DNSRecordData] {
        let owner = Fixture.names.hoaName(for: hoa)
        let request = try DNSMessage(header: DNSHeader(id: UInt16.random(in: 0...0xFFFF)),
                                     questions: [DNSQuestion(name: owner, type: .txt)]).encode()
        return try DNSTransport().exchange(request, servers: [server], retryOn: []).message.answers
            .filter { $0.name == owner && $0.type == .txt }.map(\.data)
    }

    /// Stops the server (SIGTERM) and removes its directory.
    func stop() { Self.stop(process, temporary) }

    private static func stop(_ process: Process, _ directory: TemporaryDirectory) {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        directory.remove()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The client against our own server, a spawned `mat-ims`: signed registrations that
/// publish a public key go through mat-ims's update policy and read back.
@Suite("IMS client against a spawned mat-ims", .serialized,
       .enabled(if: SpawnedIMS.binary != nil, "mat-ims is not built next to the tests"))
struct MatIMSServerTests {
    @Test func registrationWithPublicKeyGoesThroughMatIMS() throws {
        let ims = try SpawnedIMS()
        defer { ims.stop() }
        let nodeA = ims.client(key: Fixture.keyA)
        let result = try nodeA.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1,
                                        publicKey: Fixture.publicKeyA)
        #expect(result.server == ims.server)
        #expect(result.confirmation.publicKey == Fixture.publicKeyA && result.confirmation.sequence == 1)
        #expect(try ims.txt(Fixture.hoaA) == [.txt(strings: ["v=1", "seq=1", "key=\(Fixture.publicKeyA)"])])

        // Node B finds A's key bound to A's HoA; B registers without a key.
        let nodeB = ims.client(key: SpawnedIMS.keyB)
        let answer = try nodeB.lookup(hoa: Fixture.hoaA)
        #expect(answer.moas == [ip("192.0.2.10")] && answer.sequence == 1)
        #expect(answer.publicKey == Fixture.publicKeyA)
        try nodeB.register(hoa: Fixture.hoaB, moas: [ip("192.0.2.20")], sequence: 1)
        let b = try nodeA.lookup(hoa: Fixture.hoaB)
        #expect(b.sequence == 1 && b.publicKey == nil)
        #expect(try ims.txt(Fixture.hoaB) == [.txt(strings: ["v=1", "seq=1"])])

        // A moves and keeps its key; the reverse name confirms with the key in the answer.
        try nodeA.register(hoa: Fixture.hoaA, moas: [ip("203.0.113.10")], sequence: 2, publicKey: Fixture.publicKeyA)
        let reverse = try nodeB.reverseLookup(moa: ip("203.0.113.10"))
        #expect(reverse.hoa == Fixture.hoaA && reverse.mapping.publicKey == Fixture.publicKeyA)

        // B's key cannot put a key on A's name: refused, A's key stays.
        let forger = IMSClient(configuration: IMSClientConfiguration(names: Fixture.names, servers: [ims.server],
                                                                     key: SpawnedIMS.keyB))
        #expect(throws: IMSClientError.updateRefused(rcode: .refused, tsigError: nil, authenticated: true)) {
            try forger.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.66")], sequence: 3, publicKey: Fixture.publicKeyB)
        }
        #expect(try nodeB.lookup(hoa: Fixture.hoaA, allowCached: false).publicKey == Fixture.publicKeyA)
    }

    /// A dual-stack node: one client holding a key per HoA signs each registration with
    /// the key named after that HoA's name, so both names register (with one key, the
    /// second was REFUSED forever); its IPv4 key alone cannot write the IPv6 name.
    @Test func dualStackNodeRegistersBothHoAsWithAKeyEach() throws {
        let ims = try SpawnedIMS()
        defer { ims.stop() }
        let hoa6 = SpawnedIMS.hoaA6, moa6 = ip("2001:db8:a::10")
        let nodeA = ims.client(key: nil, keys: [Fixture.keyA, SpawnedIMS.keyA6])
        #expect(nodeA.configuration.signingKey(for: hoa6)?.name == SpawnedIMS.keyA6.name)
        try nodeA.register(hoa: Fixture.hoaA, moas: [ip("192.0.2.10")], sequence: 1, publicKey: Fixture.publicKeyA)
        try nodeA.register(hoa: hoa6, moas: [moa6], sequence: 2, publicKey: Fixture.publicKeyA)
        let nodeB = ims.client(key: SpawnedIMS.keyB)
        #expect(try nodeB.lookup(hoa: Fixture.hoaA).moas == [ip("192.0.2.10")])
        let six = try nodeB.lookup(hoa: hoa6)
        #expect(six.moas == [moa6] && six.sequence == 2 && six.publicKey == Fixture.publicKeyA)
        #expect(try nodeB.reverseLookup(moa: moa6).hoa == hoa6)

        let fourOnly = ims.client(key: Fixture.keyA)
        #expect(fourOnly.configuration.namedKey(for: hoa6) == nil)
        #expect(throws: IMSClientError.updateRefused(rcode: .refused, tsigError: nil, authenticated: true)) {
            try fourOnly.register(hoa: hoa6, moas: [ip("2001:db8:b::66")], sequence: 3)
        }
        #expect(try nodeB.lookup(hoa: hoa6, allowCached: false).moas == [moa6])
    }
}
