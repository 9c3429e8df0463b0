import Foundation
import MATDNS
import MATNode
import MATPacket
import MATTestSupport
import Testing

/// The `[ims]` key files against the node's HoAs: a dual-stack node needs a key named
/// after each HoA's name, and every mismatch is an error at start, not a refusal later.
@Suite struct NodeKeysTests {
    static let name4 = "10.100.51.198.hoa.mat.example."
    static let name6 = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.8.b.d.0.1.0.0.2.hoa.mat.example."

    /// A directory with the given key files (mode 0600 unless `mode` says otherwise).
    final class KeyDirectory {
        private let directory: TemporaryDirectory
        var path: String { directory.path }
        init() throws { directory = try TemporaryDirectory(prefix: "matd-keys") }
        deinit { directory.remove() }

        func write(_ file: String, names: [String], mode: Int = 0o600) throws -> String {
            let text = try names.map { TSIGKey(name: try DNSName($0), secret: Array(repeating: 7, count: 32)).keyFileText }
                .joined()
            let full = directory.file(file)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: full)
            return full
        }
    }

    /// The documented dual-stack example with the given key files.
    func config(_ files: [String], homes: [String] = ["198.51.100.10", "2001:db8:100::10"]) throws -> NodeConfig {
        try NodeConfig(parsing: """
            [node]
            \(homes.map { "home-address = \($0)" }.joined(separator: "\n"))
            uplink = eth0
            domain-prefix = 198.51.100.0/24
            domain-prefix = 2001:db8:100::/64
            [ims]
            server = 192.0.2.132
            zone = mat.example.
            \(files.map { "key-file = \($0)" }.joined(separator: "\n"))
            """)
    }

    func load(_ config: NodeConfig) throws -> [TSIGKey] {
        try NodeKeys.load(try #require(config.ims), homeAddresses: config.homeAddresses)
    }

    @Test func oneFileWithAKeyPerHoAServesBothFamilies() throws {
        let directory = try KeyDirectory()
        let file = try directory.write("node.key", names: [Self.name6, Self.name4])
        let keys = try load(try config([file]))
        // In the order of the HoAs, whatever the order in the file.
        #expect(keys.map(\.name.description) == [Self.name4, Self.name6])
    }

    @Test func aKeyFilePerHoAWorksToo() throws {
        let directory = try KeyDirectory()
        let four = try directory.write("four.key", names: [Self.name4])
        let six = try directory.write("six.key", names: [Self.name6])
        #expect(try load(try config([four, six])).map(\.name.description) == [Self.name4, Self.name6])
    }

    @Test func aHoAWithoutItsKeyIsRefusedAtStartNamingTheKeyItNeeds() throws {
        let directory = try KeyDirectory()
        let file = try directory.write("node.key", names: [Self.name4])
        let error = #expect(throws: (any Error).self) { try load(try config([file])) }
        let text = "\(error.map { "\($0)" } ?? "")"
        #expect(text.contains("no key for home address 2001:db8:100::10") && text.contains(Self.name6)
                    && text.contains("mat-ims keygen --hoa 2001:db8:100::10"), "\(text)")
    }

    @Test func aKeyNamedAfterNoHoAIsRefused() throws {
        let directory = try KeyDirectory()
        let file = try directory.write("node.key", names: [Self.name4, "node1.mat.example."])
        let error = #expect(throws: (any Error).self) { try load(try config([file], homes: ["198.51.100.10"])) }
        let text = "\(error.map { "\($0)" } ?? "")"
        #expect(text.contains("node1.mat.example.") && text.contains("named after none"), "\(text)")
    }

    @Test func theSameKeyTwiceAndReadableFilesAreRefused() throws {
        let directory = try KeyDirectory()
        let one = try directory.write("one.key", names: [Self.name4])
        let two = try directory.write("two.key", names: [Self.name4])
        #expect(throws: (any Error).self) { try load(try config([one, two], homes: ["198.51.100.10"])) }
        let open = try directory.write("open.key", names: [Self.name4], mode: 0o644)
        let error = #expect(throws: (any Error).self) { try load(try config([open], homes: ["198.51.100.10"])) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("readable by group or others"))
    }

    @Test func withoutKeyFilesTheNodeOnlyLooksUp() throws {
        #expect(try load(try config([])).isEmpty)
    }
}
