import Foundation
import MATPacket
import MATSignaling
import MATTestSupport
import Testing
@testable import MATNode

/// The peer state kept across restarts: what is written is read back, a damaged entry is
/// skipped, not fatal, and the file is replaced whole.
@Suite struct PeerStateTests {
    let key = VerifyingKey(base64: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")!

    var sample: PeerState {
        PeerState(
            peers: [PeerState.Peer(hoa: IPAddress("198.51.100.20")!, moas: [IPAddress("192.0.2.130")!], sequence: 7),
                    PeerState.Peer(hoa: IPAddress("2001:db8:100::14")!, moas: [IPAddress("2001:db8:b::5")!], sequence: 9)],
            keys: [IPAddress("198.51.100.20")!: key],
            replay: [IPAddress("198.51.100.20")!: 41, IPAddress("2001:db8:100::14")!: 42])
    }

    @Test func roundTrip() throws {
        let (state, skipped) = try PeerState.decode(try sample.encoded())
        #expect(state == sample)
        #expect(skipped == 0)
    }

    @Test func damagedEntriesAreSkipped() throws {
        let text = try sample.encoded()
            .replacingOccurrences(of: "\"192.0.2.130\"", with: "\"not an address\"")
            .replacingOccurrences(of: key.base64, with: "short")
        let (state, skipped) = try PeerState.decode(text)
        #expect(skipped == 2)
        #expect(state.peers.map(\.hoa) == [IPAddress("2001:db8:100::14")!])
        #expect(state.keys.isEmpty)
        #expect(state.replay == sample.replay)
    }

    @Test func aMoAOfTheOtherFamilyIsSkipped() throws {
        var bad = sample
        bad.peers[0].moas = [IPAddress("2001:db8:b::5")!]
        #expect(try PeerState.decode(try bad.encoded()).skipped == 1)
    }

    @Test func anotherVersionOrNotJSONIsAnError() throws {
        #expect(throws: (any Error).self) { try PeerState.decode("{}") }
        #expect(throws: (any Error).self) { try PeerState.decode(try sample.encoded().replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 2")) }
    }

    @Test func saveAndLoadThroughTheFile() throws {
        let directory = try TemporaryDirectory(prefix: "matd-peers")
        defer { directory.remove() }
        let path = directory.file("peers.json")
        #expect(try PeerState.load(path).state == PeerState())
        try sample.save(path)
        #expect(try PeerState.load(path).state == sample)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func replayStateComesBackAndTheHigherSequenceWins() {
        var guardian = ReplayGuard()
        let first = guardian.accept(sequence: 50, from: IPAddress("198.51.100.20")!)
        #expect(first)
        guardian.restore(sample.replay)
        #expect(guardian.lastSequence(from: IPAddress("198.51.100.20")!) == 50)
        #expect(guardian.lastSequence(from: IPAddress("2001:db8:100::14")!) == 42)
        let replayed = guardian.accept(sequence: 42, from: IPAddress("2001:db8:100::14")!)
        #expect(!replayed)
    }
}
