#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATPacket
import MATSignaling
import MATTestSupport
import Testing

/// The relay side (docs/signaling.md, "Relay"): matd in the CN with `[relay] serve = on`
/// forwards relayed packets between two registered senders (sockets in the VM's and the
/// plain host's namespaces, each registering a HoA signed with a key pinned as a
/// `client-key`), unchanged, and refuses a takeover with another node's key and a packet
/// whose inner source the sender did not register.
@Suite(.serialized, .enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                             "needs root for network namespaces (CI runs as root)"))
struct RelayLabTests {
    /// Sends the hex datagrams given (`-` waits 0.3 s) from UDP port 7541 to the relay's
    /// encap-port, then prints the hex of every datagram received for `listen` seconds.
    static let script = """
        import socket, sys, time
        relay, listen = sys.argv[1], float(sys.argv[2])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 7541))
        for item in sys.argv[3:]:
            if item == "-":
                time.sleep(0.3)
            else:
                s.sendto(bytes.fromhex(item), (relay, 7541))
        s.settimeout(0.2)
        end = time.time() + listen
        while time.time() < end:
            try:
                print(s.recv(70000).hex(), flush=True)
            except socket.timeout:
                pass
        """

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// A relayed IPv4 packet from `source` to `destination` with `payload`.
    static func relayed(_ source: [UInt8], _ destination: [UInt8], payload: [UInt8]) -> [UInt8] {
        var packet: [UInt8] = [0x45, 0, 0, UInt8(20 + payload.count), 0, 0, 0, 0, 64, 17, 0, 0]
        packet += source + destination + payload
        return [0x4D, 0x41, 0x54, 0x75, 1, 6, 0, 0] + [UInt8](repeating: 0, count: 10) + packet
    }

    /// The first bytes of a relay's answer to a registration (kind 8, ``RelayAnswer``), in hex.
    static let answerPrefix = "4d41547501080000"

    /// Starts matd in the CN as a relay with `keyA` pinned for 198.51.100.31 and `keyB` for
    /// 198.51.100.32 (and `vmKey`, when given, for the VM's HoAs); returns the path of
    /// the client script.
    static func startRelay(_ lab: Lab, keyA: SigningKey, keyB: SigningKey, vmKey: SigningKey? = nil) throws -> String {
        let config = try lab.writeConfig("cn")
        let text = try String(contentsOfFile: config, encoding: .utf8) + """

            [relay]
            serve = on
            client-key = 198.51.100.31 \(keyA.publicKey.base64)
            client-key = 198.51.100.32 \(keyB.publicKey.base64)

            """ + (vmKey.map { key in
                [Addr.vm.home4, Addr.vm.home6].map { "client-key = \($0) \(key.publicKey.base64)\n" }.joined()
            } ?? "")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        try lab.startMatd("cn", config: config)
        let scriptPath = lab.path("relay-client.py")
        try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        return scriptPath
    }

    @Test func aRelayForwardsBetweenRegisteredNodesAndRefusesForgeries() throws {
        let lab = try Lab()
        defer { lab.close() }
        let keyA = SigningKey.generate(), keyB = SigningKey.generate()
        let scriptPath = try Self.startRelay(lab, keyA: keyA, keyB: keyB)

        let a: [UInt8] = [198, 51, 100, 31], b: [UInt8] = [198, 51, 100, 32], stranger: [UInt8] = [198, 51, 100, 40]
        let registerB = RelayRegistration.seal(hoas: [.v4(.init(198, 51, 100, 32))], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: keyB)
        let registerA = RelayRegistration.seal(hoas: [.v4(.init(198, 51, 100, 31))], sequence: 1, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: keyA)
        // A's key signing for B's HoA with a higher sequence number: a forged takeover.
        let forged = RelayRegistration.seal(hoas: [.v4(.init(198, 51, 100, 32))], sequence: 2, nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: keyA)
        let first = Self.relayed(a, b, payload: Array("first through the relay".utf8))
        let spoofed = Self.relayed(stranger, b, payload: Array("from a HoA A never registered".utf8))
        let second = Self.relayed(a, b, payload: Array("second, after the forgery".utf8))

        let receiver = try lab.spawn("plain", ["python3", scriptPath, Addr.cn.mobile4, "8", Self.hex(registerB)])
        try lab.exec("vm", "python3", scriptPath, Addr.cn.mobile4, "1", "-", "-", "-", Self.hex(registerA), "-",
                     Self.hex(first), Self.hex(spoofed), Self.hex(forged), "-", Self.hex(second))
        _ = receiver.wait(timeout: 20)
        let lines = receiver.stdout.split(separator: "\n").map(String.init)
        // The relay's answer to B's registration first (its half of the secret), then the packets.
        #expect(lines.first?.hasPrefix(Self.answerPrefix) == true, "plain received \(lines)")
        let received = lines.filter { !$0.hasPrefix(Self.answerPrefix) }
        #expect(received == [Self.hex(first), Self.hex(second)], "plain received \(received)\n\(lab.matdLog("cn"))")
        // What the relay did, as `matctl stats` reports it (published within a second).
        var relay: [String: Int] = [:]
        _ = try poll(seconds: 10, every: 0.2) {
            relay = try lab.stats("cn")["relay"] as? [String: Int] ?? [:]
            return relay["forwarded"] == 2
        }
        #expect(relay["registrations_accepted"] == 2 && relay["bad_signatures"] == 1 && relay["forwarded"] == 2
                && relay["unregistered_source"] == 1 && relay["bindings"] == 2 && relay["refused_source_budget"] == 0,
                "matctl stats relay: \(relay)")
    }

    /// A signal through a real relay (kind 7) reaches the binding of its receiver HoA with
    /// the sender's address as origin and the MAC of the secret the receiver agreed on
    /// with the relay, from the relay's answer to its registration (docs/security.md, N4):
    /// it verifies with that secret and not with the sender's, and the message is unchanged.
    @Test func aRelayedSignalCarriesTheMACOfTheSecretItsReceiverAgreedOn() throws {
        let lab = try Lab()
        defer { lab.close() }
        let keyA = SigningKey.generate(), keyB = SigningKey.generate()
        let scriptPath = try Self.startRelay(lab, keyA: keyA, keyB: keyB)
        let exchangeA = RelayExchangeKey(), exchangeB = RelayExchangeKey()
        let hoaA = IPAddress.v4(.init(198, 51, 100, 31)), hoaB = IPAddress.v4(.init(198, 51, 100, 32))
        let registerB = RelayRegistration.seal(hoas: [hoaB], sequence: 1, nodeKey: exchangeB.publicKey, relayKey: nil, with: keyB)
        let registerA = RelayRegistration.seal(hoas: [hoaA], sequence: 1, nodeKey: exchangeA.publicKey, relayKey: nil, with: keyA)
        let message = SignalCodec.seal(SignalMessage(sequence: 1, sender: hoaA, receiver: hoaB,
                                                     body: .challenge(nonce: Nonce(high: 1, low: 2), sequence: 1)),
                                       with: keyA)
        let receiver = try lab.spawn("plain", ["python3", scriptPath, Addr.cn.mobile4, "8", Self.hex(registerB)])
        try lab.exec("vm", "python3", scriptPath, Addr.cn.mobile4, "1", "-", "-", "-", Self.hex(registerA), "-",
                     Self.hex(RelayedSignal.wrap(message)))
        _ = receiver.wait(timeout: 20)
        let received = receiver.stdout.split(separator: "\n").map { Self.bytes(String($0)) }
        #expect(received.count == 2, "plain received \(received.count) datagrams\n\(lab.matdLog("cn"))")
        let answer = try #require(received.first.flatMap { bytes in bytes.withUnsafeBytes { RelayAnswer($0) } })
        #expect(answer.answers(exchangeB.publicKey))
        // The relay agreed on both secrets with its current key (one key for 10 minutes).
        let secretB = try #require(exchangeB.nodeSecret(relay: answer.agreedKey))
        let secretA = try #require(exchangeA.nodeSecret(relay: answer.currentKey))
        let datagram = try #require(received.last)
        #expect(datagram.withUnsafeBytes { RelayedSignal.origin($0) } == IPAddress(Addr.vm.mobile4))
        #expect(Array(datagram.dropFirst(RelayedSignal.signalOffset)) == message)
        #expect(datagram.withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: secretB) })
        #expect(!datagram.withUnsafeBytes { RelayedSignal.isAuthentic($0, secret: secretA) })
    }

    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8)
        return stride(from: 0, to: digits.count - 1, by: 2).map { UInt8(String(decoding: digits[$0...$0 + 1], as: UTF8.self), radix: 16) ?? 0 }
    }

    /// Sends each hex datagram given from UDP port 7541 of `source` to port 7541 of
    /// `destination` through a raw socket (a spoofer of `source`), 1 ms apart.
    static let spoofScript = """
        import socket, struct, sys, time
        source, destination = sys.argv[1], sys.argv[2]
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        s.bind((source, 0))
        for item in sys.argv[3:]:
            payload = bytes.fromhex(item)
            s.sendto(struct.pack(">HHHH", 7541, 7541, 8 + len(payload), 0) + payload, (destination, 0))
            time.sleep(0.001)
        """

    /// Every registration (kind 5) and answer (kind 8) `capture` recorded on `encap-port`.
    static func registrationsAndAnswers(in capture: Capture) throws -> Set<[UInt8]> {
        let payloads = try check(["tshark", "-n", "-r", capture.file, "-Y", "udp.port == 7541", "-T", "fields",
                                  "-e", "udp.payload"], timeout: 120)
        return Set(payloads.split(separator: "\n").map { Self.bytes($0.replacingOccurrences(of: ":", with: "")) }
            .filter { $0.count > 8 && $0.starts(with: [0x4D, 0x41, 0x54, 0x75, 1]) && [5, 8].contains($0[5]) })
    }

    /// N4's attack as it was, by a passive observer of the path between a real node and its
    /// real relay (a capture on the router's port to the node's site): it records every
    /// registration and answer between them, takes every 32
    /// bytes of each as the secret, and stamps a signed message with a bystander as origin
    /// with each, sent from the relay's address and `encap-port`. The node refuses every
    /// one; a signal the relay stamped, from a client registered with it, the node takes.
    @Test func aPassiveObserverOfTheRegistrationsCannotForgeARelayedSignal() throws {
        let lab = try Lab()
        defer { lab.close() }
        let keyA = SigningKey.generate(), vmKey = try lab.writeSigningKey("vm")
        let scriptPath = try Self.startRelay(lab, keyA: keyA, keyB: SigningKey.generate(), vmKey: vmKey)
        let spoofPath = lab.path("spoof.py")
        try Self.spoofScript.write(toFile: spoofPath, atomically: true, encoding: .utf8)
        // The observer: on the router's port to the VM's site, every byte both ways.
        let capture = try Capture(lab, interface: lab.routerPort("vm"), name: "observer")
        let config = try lab.writeConfig("vm")
        try (try String(contentsOfFile: config, encoding: .utf8) + "\n[relay]\naddress = \(Addr.cn.mobile4)\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        try lab.startMatd("vm", config: config)
        sleep(4)
        try capture.stop()
        let observed = try Self.registrationsAndAnswers(in: capture)
        let registrations = observed.filter { $0[5] == 5 }, answers = observed.filter { $0[5] == 8 }
        // The VM's burst of registrations at start (3, a second apart), each answered: the
        // same answer each time (the same exchange keys on both sides).
        #expect(registrations.count >= 2 && answers.count >= 1, "observed \(observed.count)\n\(lab.matdLog("cn"))")

        let vmHoA = IPAddress(Addr.vm.home4)!, bystander = IPAddress("192.0.2.99")!
        let message = SignalCodec.seal(SignalMessage(sequence: 1, sender: IPAddress(Addr.cn.home4)!, receiver: vmHoA,
                                                     body: .challenge(nonce: Nonce(high: 1, low: 2), sequence: 1)),
                                       with: SigningKey.generate())
        var forgeries: [String] = []
        for bytes in observed {
            for start in 0...(bytes.count - RelaySecret.length) {
                var forged = RelayedSignal.wrap(message)
                let secret = RelaySecret(Array(bytes[start..<start + RelaySecret.length]))!
                forged.withUnsafeMutableBytes { RelayedSignal.stamp(bystander, for: secret, in: $0) }
                forgeries.append(Self.hex(forged))
            }
        }
        // In batches: an argument list has a bound.
        for batch in stride(from: 0, to: forgeries.count, by: 100) {
            let sent = try lab.run("cn", ["python3", spoofPath, Addr.cn.mobile4, Addr.vm.mobile4]
                                   + forgeries[batch..<min(batch + 100, forgeries.count)])
            #expect(sent.succeeded, "\(sent.summary)")
        }
        var counters: [String: Int] = [:]
        _ = try poll(seconds: 20, every: 0.2) {
            counters = try lab.stats("vm")["encapsulation"] as? [String: Int] ?? [:]
            return counters["encap_relay_refused", default: 0] >= forgeries.count
        }
        #expect(counters["encap_relay_refused"] == forgeries.count && counters["encap_relay_signals_received"] == 0,
                "\(forgeries.count) forgeries; matctl stats encapsulation: \(counters)\n\(lab.matdLog("vm"))")

        // What the relay itself stamps, for a client registered with it (A, from the plain
        // host), the VM takes: the secret it agreed on works.
        let registerA = RelayRegistration.seal(hoas: [.v4(.init(198, 51, 100, 31))], sequence: 1,
                                               nodeKey: RelayExchangeKey().publicKey, relayKey: nil, with: keyA)
        let fromA = SignalCodec.seal(SignalMessage(sequence: 1, sender: .v4(.init(198, 51, 100, 31)), receiver: vmHoA,
                                                   body: .challenge(nonce: Nonce(high: 1, low: 2), sequence: 1)),
                                     with: keyA)
        _ = try lab.exec("plain", "python3", scriptPath, Addr.cn.mobile4, "1", Self.hex(registerA), "-",
                         Self.hex(RelayedSignal.wrap(fromA)))
        _ = try poll(seconds: 20, every: 0.2) {
            counters = try lab.stats("vm")["encapsulation"] as? [String: Int] ?? [:]
            return counters["encap_relay_signals_received", default: 0] >= 1
        }
        #expect(counters["encap_relay_signals_received"] == 1 && counters["encap_relay_refused"] == forgeries.count,
                "matctl stats encapsulation: \(counters)\n\(lab.matdLog("vm"))\n\(lab.matdLog("cn"))")
        print("passive observer: \(registrations.count) registrations and \(answers.count) distinct answers seen, "
              + "\(forgeries.count) forgeries refused (encap_relay_refused \(counters["encap_relay_refused", default: 0])), "
              + "the relay's own stamp taken (encap_relay_signals_received \(counters["encap_relay_signals_received", default: 0]))")
    }

    /// The attack of docs/security.md N4 against a real node: matd in the VM names the CN
    /// as its relay; datagrams from the relay's own address and `encap-port` (a raw socket
    /// in the CN's namespace, as a spoofer of that source sends them) carrying a signed
    /// message with a bystander as origin, one with no MAC and one with a MAC from a
    /// secret that is not the VM's, are refused before the signaling sees them.
    /// (``aPassiveObserverOfTheRegistrationsCannotForgeARelayedSignal`` tries the secrets
    /// an observer of the path can read.)
    @Test func aSignalForgedFromTheRelaysAddressIsRefusedByTheNode() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try Self.startRelay(lab, keyA: SigningKey.generate(), keyB: SigningKey.generate())
        let config = try lab.writeConfig("vm")
        try (try String(contentsOfFile: config, encoding: .utf8) + "\n[relay]\naddress = \(Addr.cn.mobile4)\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        try lab.startMatd("vm", config: config)
        let message = SignalCodec.seal(SignalMessage(sequence: 1, sender: IPAddress(Addr.cn.home4)!,
                                                     receiver: IPAddress(Addr.vm.home4)!,
                                                     body: .challenge(nonce: Nonce(high: 1, low: 2), sequence: 1)),
                                       with: SigningKey.generate())
        let bystander = IPAddress("192.0.2.99")!
        var noMAC = RelayedSignal.wrap(message)
        noMAC.withUnsafeMutableBytes { RelayedSignal.stamp(bystander, for: RelaySecret.random(), in: $0) }
        var otherMAC = noMAC
        noMAC.replaceSubrange(RelayedSignal.macOffset..<RelayedSignal.signalOffset,
                              with: [UInt8](repeating: 0, count: RelayedSignal.macLength))
        otherMAC.withUnsafeMutableBytes { RelayedSignal.stamp(bystander, for: RelaySecret.random(), in: $0) }
        let script = lab.path("spoof.py")
        try Self.spoofScript.write(toFile: script, atomically: true, encoding: .utf8)
        _ = try lab.exec("cn", "python3", script, Addr.cn.mobile4, Addr.vm.mobile4, Self.hex(noMAC), Self.hex(otherMAC))
        var counters: [String: Int] = [:]
        _ = try poll(seconds: 10, every: 0.2) {
            counters = try lab.stats("vm")["encapsulation"] as? [String: Int] ?? [:]
            return counters["encap_relay_refused", default: 0] >= 2
        }
        #expect(counters["encap_relay_refused"] == 2 && counters["encap_relay_signals_received"] == 0,
                "matctl stats encapsulation: \(counters)\n\(lab.matdLog("vm"))")
    }

    /// N4's answer forgery against a real node and relay: an attacker on the path reads the
    /// node's registrations (a capture on the router's port to its site), answers one from
    /// the relay's address and `encap-port` with an exchange key of its own (kind 8, signed
    /// with its own key), and sends a signal stamped with the secret that key gives, a
    /// bystander as origin. With the relay's key pinned as docs/config.md says (`matd
    /// relay-key` on the relay, `[relay] public-key` on the node) the answer is refused and counted
    /// (`encap_relay_answers_refused` = 1: the relay's own answers all taken), the signal
    /// too, and that refusal asks for a registration (`encap_relay_recoveries` = 1). The
    /// same node without the pin takes both, with a warning at start: the attack works
    /// there, which is what the pin is for.
    @Test func anAnswerForgedFromTheRelaysAddressIsRefusedWhenTheRelaysKeyIsPinned() throws {
        let lab = try Lab()
        defer { lab.close() }
        let vmKey = try lab.writeSigningKey("vm")
        _ = try Self.startRelay(lab, keyA: SigningKey.generate(), keyB: SigningKey.generate(), vmKey: vmKey)
        let printed = try lab.exec("cn", LabPaths.matd, "relay-key", "--config", lab.path("cn.conf"))
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(VerifyingKey(base64: printed) != nil && lab.matdLog("cn").contains("relay key \(printed)"),
                "matd relay-key printed \(printed)\n\(lab.matdLog("cn"))")
        let spoofPath = lab.path("spoof.py")
        try Self.spoofScript.write(toFile: spoofPath, atomically: true, encoding: .utf8)
        let message = SignalCodec.seal(SignalMessage(sequence: 1, sender: IPAddress(Addr.cn.home4)!,
                                                     receiver: IPAddress(Addr.vm.home4)!,
                                                     body: .challenge(nonce: Nonce(high: 1, low: 2), sequence: 1)),
                                       with: SigningKey.generate())
        for pinned in [true, false] {
            let config = try lab.writeConfig("vm")
            try (try String(contentsOfFile: config, encoding: .utf8) + "\n[relay]\naddress = \(Addr.cn.mobile4)\n"
                 + (pinned ? "public-key = \(printed)\n" : "")).write(toFile: config, atomically: true, encoding: .utf8)
            let capture = try Capture(lab, interface: lab.routerPort("vm"), name: pinned ? "pinned" : "unpinned")
            try lab.startMatd("vm", config: config)
            sleep(3)
            try capture.stop()
            let registration = try #require(try Self.registrationsAndAnswers(in: capture).lazy
                .compactMap { bytes in bytes.withUnsafeBytes { RelayRegistration($0) } }.first)
            let exchange = RelayExchangeKey()
            let answer = RelayAnswer.seal(nodeKey: registration.nodeKey, agreedKey: exchange.publicKey,
                                          currentKey: exchange.publicKey, with: SigningKey.generate())
            var signal = RelayedSignal.wrap(message)
            signal.withUnsafeMutableBytes {
                RelayedSignal.stamp(IPAddress("192.0.2.99")!, for: exchange.relaySecret(node: registration.nodeKey)!, in: $0)
            }
            _ = try lab.exec("cn", "python3", spoofPath, Addr.cn.mobile4, Addr.vm.mobile4, Self.hex(answer), Self.hex(signal))
            var counters: [String: Int] = [:]
            _ = try poll(seconds: 10, every: 0.2) {
                counters = try lab.stats("vm")["encapsulation"] as? [String: Int] ?? [:]
                return counters["encap_relay_refused", default: 0] + counters["encap_relay_signals_received", default: 0] >= 1
            }
            let log = lab.matdLog("vm")
            if pinned {
                #expect(counters["encap_relay_answers_refused"] == 1 && counters["encap_relay_refused"] == 1
                        && counters["encap_relay_signals_received"] == 0 && counters["encap_relay_recoveries"] == 1
                        && !log.contains("no [relay] public-key pinned"),
                        "pinned: matctl stats encapsulation: \(counters)\n\(log)")
            } else {
                #expect(counters["encap_relay_answers_refused"] == 0 && counters["encap_relay_signals_received"] == 1
                        && log.contains("no [relay] public-key pinned"),
                        "not pinned: matctl stats encapsulation: \(counters)\n\(log)")
            }
            print("relay answer forged from the relay's address, key \(pinned ? "pinned" : "not pinned"): "
                  + "encap_relay_answers_refused \(counters["encap_relay_answers_refused", default: -1]), "
                  + "encap_relay_refused \(counters["encap_relay_refused", default: -1]), "
                  + "encap_relay_signals_received \(counters["encap_relay_signals_received", default: -1]), "
                  + "encap_relay_recoveries \(counters["encap_relay_recoveries", default: -1])")
            #expect(try lab.stopMatd("vm").succeeded)
        }
    }
}
