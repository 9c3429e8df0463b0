import Foundation
@testable import MATNode
import Testing

/// The hand-written JSON of `matctl peers` reads back as what JSONEncoder would have sent.
struct PeerListJSONTests {
    static func peer(_ index: Int) -> PeerReport {
        var report = PeerReport(
            homeAddress: "2001:db8:4000::\(String(index, radix: 16))",
            mobileAddresses: (0..<(index % 3)).map {
                PeerReport.Binding(address: "2001:db8:4001::\($0)", priority: $0 - 1, flags: $0 == 0 ? "reachable" : "")
            },
            preferred: index % 3 == 0 ? nil : "2001:db8:4001::0", sequence: UInt64(index) << 40,
            origin: index % 4 == 0 ? nil : "learned", alert: index % 5 == 0 ? nil : "awaiting_ack",
            lastAckSecondsAgo: index % 2 == 0 ? nil : Double(index) / 7, roundTripMilliseconds: index % 6 == 0 ? nil : UInt64(index))
        report.path = index % 7 == 0 ? nil : "kernel"
        return report
    }

    @Test func readsBackAsJSONEncodersReply() throws {
        var peers = (0..<200).map(Self.peer)
        // Whatever a string holds is escaped.
        peers[3].homeAddress = "quote \" backslash \\ newline \n tab \t bell \u{7} é ∞ 😀"
        peers[4].mobileAddresses[0].flags = "/slash/"
        let reply = ControlReply(peers: peers)
        let line = PeerListJSON.line(peers, version: reply.version)
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(!line.dropLast().contains(UInt8(ascii: "\n")))
        let decoded = try JSONDecoder().decode(ControlReply.self, from: Data(line))
        #expect(decoded == reply)
        // The same members as JSONEncoder's (as objects: its number formatting may differ).
        let ours = try JSONSerialization.jsonObject(with: Data(line)) as? NSDictionary
        let theirs = try JSONSerialization.jsonObject(with: try JSONEncoder.control.encode(reply)) as? NSDictionary
        #expect(ours == theirs)
        #expect(try JSONDecoder().decode(ControlReply.self, from: Data(PeerListJSON.line([], version: 1))) == ControlReply(peers: []))
    }

    @Test func aNonFiniteNumberReadsBackAsAbsent() throws {
        var peer = Self.peer(1)
        peer.lastAckSecondsAgo = .infinity
        let decoded = try JSONDecoder().decode(ControlReply.self, from: Data(PeerListJSON.line([peer], version: 1)))
        peer.lastAckSecondsAgo = nil
        #expect(decoded.peers == [peer])
    }
}
