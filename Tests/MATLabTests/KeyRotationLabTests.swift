#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATPacket
import MATSignaling
import Testing

/// `matctl rotate-key` on a running node (docs/operations.md, "Rotating a node's signing
/// key"): the new key is in the key file and in the IMS when the command returns, the CN
/// takes it at its next lookup, the VM's alerts go on working, and an alert signed with
/// the old key is refused.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct KeyRotationLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    @Test func aRotatedKeyReachesPeersThroughTheIMSAndTheOldOneIsRefused() throws {
        let (lab, _) = try Lab.withIMS()
        defer { lab.close() }
        #expect(try lab.ping("cn", vm.home4) || lab.ping("cn", vm.home4))
        let keyFile = lab.path("vm-state/signing.key")
        func keyText() throws -> String {
            try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let oldText = try keyText()
        let old = try SigningKey(rawRepresentation: Array(try #require(Data(base64Encoded: oldText))))
        #expect(try lab.matctl("vm", "status").contains(old.publicKey.base64))

        let started = Date()
        let output = try lab.matctl("vm", "rotate-key")
        let took = Date().timeIntervalSince(started)
        #expect(output.contains("registration: confirmed"), "\(output)")
        let newText = try keyText()
        #expect(newText != oldText)
        let new = try SigningKey(rawRepresentation: Array(try #require(Data(base64Encoded: newText))))
        #expect(output.contains("public key:   \(new.publicKey.base64)") && output.contains(old.publicKey.base64), "\(output)")
        var info = stat()
        #expect(stat(keyFile, &info) == 0 && info.st_mode & 0o077 == 0, "the key file is readable by others")
        #expect(try lab.matctl("vm", "status").contains(new.publicKey.base64))

        // The CN reads the VM's mapping every record TTL (5 s): the new key comes with it.
        #expect(lab.waitForLog("cn", "\(vm.home4) has a new signing key (\(new.publicKey.base64))", timeout: 30),
                "\(lab.matdLog("cn"))")
        let caughtUpAfter = Date().timeIntervalSince(started)
        func signaling() throws -> [String: Int] { try lab.stats("cn")["signaling"] as? [String: Int] ?? [:] }

        // Alerts signed with the new key are taken.
        let before = try signaling()
        try lab.moveVM(to: "b")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let moved = try signaling()
        #expect(moved["bindings_adopted", default: 0] > before["bindings_adopted", default: 0], "\(before) -> \(moved)")
        #expect(moved["refused_bad_signature", default: 0] == before["refused_bad_signature", default: 0],
                "\(before) -> \(moved)")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> 203.0.113.10*"))

        // Rotated again and moved at once, before the CN's next lookup: the alert does not
        // verify with the key the CN has, which makes the CN ask the IMS for the key again;
        // the alert is taken with the new one instead of being refused.
        let again = try lab.matctl("vm", "rotate-key")
        #expect(again.contains("registration: confirmed"), "\(again)")
        let newest = try SigningKey(rawRepresentation: Array(try #require(Data(base64Encoded: try keyText()))))
        try lab.moveVM(to: "a")
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        let movedAgain = try signaling()
        #expect(movedAgain["bindings_adopted", default: 0] > moved["bindings_adopted", default: 0], "\(moved) -> \(movedAgain)")
        #expect(movedAgain["refused_bad_signature", default: 0] == moved["refused_bad_signature", default: 0],
                "\(moved) -> \(movedAgain)")
        #expect(lab.matdLog("cn").contains("\(vm.home4) has a new signing key (\(newest.publicKey.base64))"))
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)*"))

        // The old key (stolen, say) signs an alert sending the VM's traffic to the plain
        // host, with a sequence far above the VM's: refused, nothing moves.
        let forged = SignalCodec.seal(SignalMessage(sequence: UInt64.max - 1, sender: IPAddress(vm.home4)!,
                                                    receiver: IPAddress(cn.home4)!,
                                                    body: .bindingUpdate(moas: [IPAddress(Addr.plain4)!], lifetime: 60)),
                                      with: old)
        try lab.exec("vm", "python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(bytes.fromhex(sys.argv[1]), ("\(cn.mobile4)", 7540))
            """, forged.map { String(format: "%02x", $0) }.joined())
        var refused = movedAgain
        for _ in 0..<50 where refused["refused_bad_signature", default: 0] == movedAgain["refused_bad_signature", default: 0] {
            usleep(100_000)
            refused = try signaling()
        }
        #expect(refused["refused_bad_signature", default: 0] == movedAgain["refused_bad_signature", default: 0] + 1,
                "\(movedAgain) -> \(refused)")
        #expect(refused["challenges_sent", default: 0] == movedAgain["challenges_sent", default: 0], "\(movedAgain) -> \(refused)")
        #expect(try lab.matctl("cn", "peers").contains("\(vm.home4) -> \(vm.mobile4)*"))
        #expect(try lab.ping("cn", vm.home4, count: 3) || lab.ping("cn", vm.home4, count: 3))
        print("rotate-key: confirmed by the IMS after \(Int(took * 1000)) ms; the CN had the new key "
              + "\(String(format: "%.1f", caughtUpAfter)) s after the command started")
    }
}
