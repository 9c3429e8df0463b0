import Foundation
@testable import MATNode
import MATSystem
import Testing

/// `matctl peers`' reply read without JSONDecoder (``PeerListReader``): the same peers as
/// JSONDecoder reads, nil (so JSONDecoder reads it) for anything not in PeerListJSON's shape.
struct PeerListReaderTests {
    @Test func readsWhatPeerListJSONWritesAsJSONDecoderDoes() throws {
        let peers = (0..<300).map(PeerListJSONTests.peer)
        let line = PeerListJSON.line(peers, version: 7)
        let read = try #require(PeerListReader.read(line))
        #expect(read.version == 7)
        #expect(read.peers == peers)
        #expect(read.peers == (try JSONDecoder().decode(ControlReply.self, from: Data(line))).peers)
        let empty = PeerListReader.read(PeerListJSON.line([], version: 1))
        #expect(empty?.peers == [] && empty?.version == 1)
    }

    @Test func leavesAnythingElseToJSONDecoder() throws {
        var escaped = PeerListJSONTests.peer(1)
        escaped.homeAddress = "quote \" here"
        #expect(PeerListReader.read(PeerListJSON.line([escaped], version: 1)) == nil)
        // JSONEncoder's reply (another member, or whitespace) and an error reply.
        let encoded = try JSONEncoder.control.encode(ControlReply(error: "no"))
        #expect(PeerListReader.read(Array(encoded)) == nil)
        for text in [#"{"peers":[],"version":1} "#, #"{"peers":[],"version":01}"#, #"{"peers":[],"version":-}"#,
                     #"{"peers":[{"homeAddress":"a","mobileAddresses":[],"sequence":1.5}],"version":1}"#,
                     #"{"peers":[{"homeAddress":"a","mobileAddresses":[],"sequence":1,"preferred":null}],"version":1}"#,
                     #"{"peers":[],"version":1,"error":"x"}"#, #"{"peers":[]}"#, "", "{"] {
            #expect(PeerListReader.read(Array(text.utf8)) == nil, "\(text)")
        }
        // Numbers JSONDecoder refuses as not representable (found by the random test below).
        for ack in ["0.42857E42857142855", "1e309", "-1e309", "1e-400"] {
            let text = #"{"peers":[{"homeAddress":"a","lastAckSecondsAgo":"# + ack + #","mobileAddresses":[],"sequence":1}],"version":1}"#
            #expect(PeerListReader.read(Array(text.utf8)) == nil, "\(ack)")
        }
        #expect(PeerListReader.representable("0e-400") == 0 && PeerListReader.representable("1E5") == 100_000)
        let nullAck = #"{"peers":[{"homeAddress":"a","lastAckSecondsAgo":null,"mobileAddresses":[],"sequence":1}],"version":1}"#
        #expect(PeerListReader.read(Array(nullAck.utf8))?.peers.first?.lastAckSecondsAgo == nil)
    }

    /// Cut and changed at random: never a crash, and whatever it reads, JSONDecoder reads the same.
    @Test func damagedRepliesReadAsJSONDecoderReadsThemOrNotAtAll() throws {
        let line = PeerListJSON.line((0..<20).map(PeerListJSONTests.peer), version: 1)
        var random = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[],:"-.0123456789eEnul\ab"#.utf8) + [0, 0x0a, 0xff]
        for round in 0..<2_000 {
            var damaged = Array(line.prefix(round % 3 == 0 ? Int.random(in: 0...line.count, using: &random) : line.count))
            for _ in 0..<Int.random(in: 0...3, using: &random) where !damaged.isEmpty {
                damaged[Int.random(in: 0..<damaged.count, using: &random)] = alphabet.randomElement(using: &random)!
            }
            guard let read = PeerListReader.read(damaged) else { continue }
            let decoded = try? JSONDecoder().decode(ControlReply.self, from: Data(damaged))
            #expect(decoded?.peers == read.peers && decoded?.version == read.version, "\(String(decoding: damaged, as: UTF8.self))")
        }
    }

    /// With `MAT_SCALE_BENCH_PEERS` (docs/benchmarks.md, "Scale"): the reply of that many
    /// learned peers read by JSONDecoder and by the reader.
    @Test func timesTheReplyOfManyPeers() throws {
        guard let count = Int(ProcessInfo.processInfo.environment["MAT_SCALE_BENCH_PEERS"] ?? "") else { return }
        let peers = (0..<count).map { index in
            PeerReport(homeAddress: "2001:db8:4000::\(String(index >> 16, radix: 16)):\(String(index & 0xffff, radix: 16))",
                       mobileAddresses: [.init(address: "2001:db8:4001::\(String(index, radix: 16))", priority: 0, flags: "")],
                       preferred: "2001:db8:4001::\(String(index, radix: 16))", sequence: 1, origin: "learned")
        }
        let line = PeerListJSON.line(peers, version: 1)
        let t0 = MonotonicClock.nanoseconds()
        let decoded = try JSONDecoder().decode(ControlReply.self, from: Data(line)).peers
        let t1 = MonotonicClock.nanoseconds()
        let read = PeerListReader.read(line)?.peers
        let t2 = MonotonicClock.nanoseconds()
        #expect(read == decoded)
        print("peer-list-read: peers=\(count) json_decoder_ms=\((t1 - t0) / 1_000_000) reader_ms=\((t2 - t1) / 1_000_000)")
    }
}
