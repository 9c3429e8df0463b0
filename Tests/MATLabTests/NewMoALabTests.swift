#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATPacket
import MATSignaling
import MATTestSupport
import Testing

/// An alert from a signer that moved, listing its new MoA beside a bystander
/// (docs/security.md, S4): each listed MoA is challenged on its own, only the one that
/// answers from itself is adopted, and the bystander gets no more than the
/// unvalidated-path allowance.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct NewMoALabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    /// The CN's key at a new MoA: an address of site C where no matd runs (the IMS node's
    /// second address), answering the VM's challenges there (`ChallengeAnswerer`).
    static let newMoA = "192.0.2.141"

    /// The CN's key signs an alert listing the plain host (a bystander) first and a new MoA
    /// after it, and answers the challenge at the new MoA, as a node that moved there
    /// would; the bystander answers nothing. Meanwhile the VM sends the CN's HoA up to 200
    /// datagrams of 1000 bytes a second. The VM challenges both, adopts the new MoA alone
    /// at its answer, and sends the flow there; the bystander gets one challenge and at
    /// most 3 x 1184 bytes of data, and is never adopted, also after its challenge ends
    /// unanswered 5 s after the alert.
    @Test func anAlertFromANewMoABesideABystanderAdoptsOnlyTheMoAThatAnswers() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        #expect(try lab.ping("vm", cn.home4, count: 3) || lab.ping("vm", cn.home4, count: 3))
        #expect(try lab.matctl("vm", "peers").contains("\(cn.home4) -> \(cn.mobile4)"))

        let cnKey = try Self.signingKey(lab, "cn"), vmKey = try Self.signingKey(lab, "vm")
        try lab.exec("ims", "ip", "addr", "add", "\(Self.newMoA)/25", "dev", "eth0")
        let signer = try ChallengeAnswerer(lab, node: "ims", address: Self.newMoA, home: cn.home4, key: cnKey,
                                           challengerKey: vmKey.publicKey)
        defer { signer.stop() }
        // Every datagram the bystander gets, signaling and data, and the data at the new MoA.
        let sinks = try [("plain", "7540"), ("plain", "5003"), ("ims", "5003")].map { node, port in
            try lab.spawn(node, ["python3", "-c", SecurityLabTests.sizedSink, port, "60"])
        }
        defer { for sink in sinks { sink.signal(SIGKILL); sink.wait(timeout: 10) } }
        for sink in sinks where !sink.waitForOutput(timeout: 10, { $0.contains("listening") }) {
            throw LabError("udp sink did not start:\n\(sink.wait(timeout: 1).summary)")
        }
        let (signalingSink, dataSink, newMoASink) = (sinks[0], sinks[1], sinks[2])
        func signaling() throws -> [String: Int] { try lab.stats("vm")["signaling"] as? [String: Int] ?? [:] }
        let before = try signaling()

        let flowStart = Date()
        let flow = try lab.spawnUDPFlow("vm", to: cn.home4, port: 5003, seconds: 10)
        defer { flow.signal(SIGKILL); flow.wait(timeout: 10) }
        usleep(1_000_000)

        let used = try String(contentsOfFile: lab.path("cn-state/sequence"), encoding: .utf8)
        let sequence = try #require(UInt64(used.trimmingCharacters(in: .whitespacesAndNewlines))) + 1_000_000
        let alert = SignalCodec.seal(SignalMessage(sequence: sequence, sender: IPAddress(cn.home4)!, receiver: IPAddress(vm.home4)!,
                                                   body: .bindingUpdate(moas: [IPAddress(Addr.plain4)!, IPAddress(Self.newMoA)!],
                                                                        lifetime: 60)),
                                     with: cnKey, paddedTo: SecurityLabTests.updateBytes)
        // Sent from the new MoA, as the mover sends it.
        try lab.exec("ims", "python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((sys.argv[3], 0))
            s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 7540))
            """, alert.map { String(format: "%02x", $0) }.joined(), vm.mobile4, Self.newMoA)
        let sentAt = Date()
        // Adopted at the signer's answer: the new MoA alone.
        var peers = try lab.matctl("vm", "peers")
        while !peers.contains("\(cn.home4) -> \(Self.newMoA)") && Date().timeIntervalSince(sentAt) < 10 {
            usleep(50_000)
            peers = try lab.matctl("vm", "peers")
        }
        let adoptedAfter = Date().timeIntervalSince(sentAt)
        let adopted = Date().timeIntervalSince1970
        #expect(peers.contains("\(cn.home4) -> \(Self.newMoA)") && !peers.contains(Addr.plain4),
                "not adopted at the new MoA alone: \(peers)\n\(lab.matdLog("vm"))")
        // The bystander's challenge ends unanswered 5 s after the alert; nothing changes.
        var after = try signaling()
        _ = try poll(seconds: 15, every: 0.2) {
            after = try signaling()
            return after["challenges_unanswered", default: 0] != before["challenges_unanswered", default: 0]
        }
        let ended = Date().timeIntervalSince(sentAt)
        peers = try lab.matctl("vm", "peers")
        #expect(peers.contains("\(cn.home4) -> \(Self.newMoA)") && !peers.contains(Addr.plain4), "\(peers)")
        #expect(after["challenges_sent", default: 0] == before["challenges_sent", default: 0] + 2, "\(before) -> \(after)")
        #expect(after["challenges_unanswered", default: 0] == before["challenges_unanswered", default: 0] + 1, "\(before) -> \(after)")
        #expect(after["bindings_adopted", default: 0] == before["bindings_adopted", default: 0] + 1, "\(before) -> \(after)")
        #expect(signer.answers.count == 1 && signer.answers.allSatisfy { $0.sequence == sequence },
                "the signer answered \(signer.answers)")

        flow.wait(timeout: 30)
        usleep(500_000)
        for sink in sinks { sink.signal(SIGKILL) }
        for sink in sinks { sink.wait(timeout: 10) }
        let signalingAtBystander = SecurityLabTests.datagrams(signalingSink)
        let dataAtBystander = SecurityLabTests.datagrams(dataSink)
        let atNewMoA = SecurityLabTests.datagrams(newMoASink)
        let dataBytes = dataAtBystander.map(\.bytes).reduce(0, +)
        let sent = flow.stdout.split(separator: " ").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        #expect(signalingAtBystander.count == 1 && signalingAtBystander.allSatisfy { $0.bytes <= 200 },
                "the bystander got \(signalingAtBystander) on its signaling port")
        #expect(dataBytes <= 3 * SecurityLabTests.updateBytes, "the bystander got \(dataBytes) bytes of data")
        // (2 s of slack: a loaded machine's sink may print a datagram late.)
        #expect(dataAtBystander.allSatisfy { $0.at <= adopted + 2 }, "the bystander got data after the new MoA was adopted")
        // The flow went to the new MoA once adopted: its share of what was sent after that
        // (at least half of it, for a loaded machine).
        let expected = Double(sent) * max(0, 10 - Date(timeIntervalSince1970: adopted).timeIntervalSince(flowStart)) / 10
        #expect(sent > 0 && Double(atNewMoA.count) >= expected * 0.5,
                "the new MoA got \(atNewMoA.count) datagrams of about \(Int(expected))")
        print("new MoA beside a bystander: adopted \(String(format: "%.2f", adoptedAfter)) s after the alert, "
              + "the bystander's challenge over after \(String(format: "%.1f", ended)) s; the bystander got "
              + "\(signalingAtBystander.count) signaling datagram(s) (\(signalingAtBystander.map(\.bytes).reduce(0, +)) bytes) "
              + "and \(dataAtBystander.count) data datagrams (\(dataBytes) bytes); the new MoA \(atNewMoA.count) "
              + "(of \(sent) the VM sent)")
    }

    /// `node`'s signing key, from its state directory.
    static func signingKey(_ lab: Lab, _ node: String) throws -> SigningKey {
        let text = try String(contentsOfFile: lab.path("\(node)-state/signing.key"), encoding: .utf8)
        guard let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw LabError("\(node)'s signing key is not base64")
        }
        return try SigningKey(rawRepresentation: Array(raw))
    }
}
