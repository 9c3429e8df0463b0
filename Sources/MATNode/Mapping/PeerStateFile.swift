import Foundation
import MATLinux
import MATPacket
import MATSignaling

/// What matd learned about its peers, kept in `<state-directory>/peers.json` so a restart
/// (a binary upgrade, a crash, kill -9) keeps the sessions going: the mappings learned
/// from the IMS and from alerts, the keys bound to peers' HoAs, and the highest alert
/// sequence taken from each peer (so an old alert is not accepted again after a restart).
///
/// The file is written by matd only (mode 0600 in a 0700 directory) but still read as
/// untrusted: an entry that does not parse is skipped and counted, never fatal.
struct PeerState: Equatable, Sendable {
    struct Peer: Equatable, Sendable {
        var hoa: IPAddress
        var moas: [IPAddress]
        var sequence: UInt64
    }

    var peers: [Peer] = []
    var keys: [IPAddress: VerifyingKey] = [:]
    var replay: [IPAddress: UInt64] = [:]

    /// The file format: addresses and keys as text, so an operator can read it.
    private struct File: Codable {
        struct Peer: Codable {
            var hoa: String
            var moas: [String]
            var sequence: UInt64
        }
        var version: Int
        var peers: [Peer]
        var keys: [String: String]
        var replay: [String: UInt64]
    }

    static let fileVersion = 1

    /// The JSON text of the state.
    func encoded() throws -> String {
        let file = File(
            version: Self.fileVersion,
            peers: peers.map { File.Peer(hoa: $0.hoa.description, moas: $0.moas.map(\.description), sequence: $0.sequence) },
            keys: Dictionary(uniqueKeysWithValues: keys.map { ($0.key.description, $0.value.base64) }),
            replay: Dictionary(uniqueKeysWithValues: replay.map { ($0.key.description, $0.value) }))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(file), as: UTF8.self) + "\n"
    }

    /// Parses the file's text; returns the state and how many entries were skipped.
    static func decode(_ text: String) throws -> (state: PeerState, skipped: Int) {
        let file = try JSONDecoder().decode(File.self, from: Data(text.utf8))
        guard file.version == fileVersion else {
            throw SystemError("peer state", detail: "version \(file.version) is not \(fileVersion)")
        }
        var state = PeerState()
        var skipped = 0
        for peer in file.peers {
            guard let hoa = IPAddress(peer.hoa) else { skipped += 1; continue }
            let moas = peer.moas.compactMap(IPAddress.init)
            guard moas.count == peer.moas.count, !moas.isEmpty, moas.allSatisfy({ $0.family == hoa.family }) else {
                skipped += 1
                continue
            }
            state.peers.append(Peer(hoa: hoa, moas: moas, sequence: peer.sequence))
        }
        for (text, base64) in file.keys {
            guard let hoa = IPAddress(text), let key = VerifyingKey(base64: base64) else { skipped += 1; continue }
            state.keys[hoa] = key
        }
        for (text, sequence) in file.replay {
            guard let hoa = IPAddress(text) else { skipped += 1; continue }
            state.replay[hoa] = sequence
        }
        return (state, skipped)
    }

    /// Reads `path`; a missing file is an empty state.
    static func load(_ path: String) throws -> (state: PeerState, skipped: Int) {
        guard FileManager.default.fileExists(atPath: path) else { return (PeerState(), 0) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SystemError("read \(path)", detail: "cannot read")
        }
        return try decode(String(decoding: data, as: UTF8.self))
    }

    /// Writes the state to `path` durably (file and directory synced).
    func save(_ path: String) throws {
        try DurableFile.replace(path, with: try encoded())
    }
}
