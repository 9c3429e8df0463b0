#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing

/// Packets that reach a node in UDP, carried from a peer's MoA or relayed for it, follow
/// the TUN path's rule for a first contact's MoA (docs/security.md, N3 and S6): nothing of
/// them is delivered as the peer's before the MoA answered its probe. Here through the
/// real engine (the decision itself: `UnprovenCarriedTests`).
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct UnprovenMoALabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// Sends, each time a trigger file `PREFIX<n>` appears (n = 1, 2), `COUNT` datagrams
    /// to `TARGET`'s encap-port, 10 ms apart: encapsulation kind `KIND` (1 carried, 6
    /// relayed) holding an IPv4/UDP packet from the VM's HoA to the CN's HoA, port 5003,
    /// whose payload is `LABEL-n-i`; a carried sender first sends a keepalive, and a relayed
    /// one waits for it (`PREFIX<n>k`). Prints
    /// "ready", then "sent n COUNT" after each round.
    static let sender = """
        import os, socket, struct, sys, time
        kind, bind_addr, bind_port, target, prefix, label, count = sys.argv[1:8]
        kind, count = int(kind), int(count)
        def checksum(header):
            total = sum(struct.unpack("!10H", header))
            total = (total & 0xffff) + (total >> 16)
            total = (total & 0xffff) + (total >> 16)
            return ~total & 0xffff
        def packet(payload):
            udp = struct.pack("!HHHH", 40000, 5003, 8 + len(payload), 0) + payload
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                                 socket.inet_aton("198.51.100.10"), socket.inet_aton("198.51.100.20"))
            header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
            return header + udp
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind_addr, int(bind_port)))
        print("ready", flush=True)
        for round in (1, 2):
            deadline = time.time() + 90
            while not os.path.exists(f"{prefix}{round}") and time.time() < deadline:
                time.sleep(0.005)
            # The relay stands only for a peer reached in UDP: the carried sender's keepalive
            # makes the VM's MoA one, before anything is relayed.
            if kind == 1:
                s.sendto(b"MATu\\x01\\x02\\x00\\x00", (target, 7541))
                time.sleep(0.05)
                open(f"{prefix}{round}k", "w").close()
            else:
                while not os.path.exists(f"{prefix}{round}k") and time.time() < deadline:
                    time.sleep(0.005)
            for i in range(count):
                s.sendto(b"MATu" + bytes([1, kind, 0, 0]) + bytes(10) + packet(f"{label}-{round}-{i}".encode()),
                         (target, 7541))
                time.sleep(0.01)
            print(f"sent {round} {count}", flush=True)
        """

    /// The CN (with a relay configured: the plain host) makes first contact with the VM,
    /// whose matd drops the CN's probes (nftables in the VM's namespace). While the VM's
    /// MoA is unproven, datagrams carried from it and datagrams relayed for the VM by the
    /// relay's address and port reach the CN's engine and are dropped as `unvalidated_path`
    /// (none refused otherwise): nothing arrives at the CN's HoA. Once the VM answers a
    /// probe, the same datagrams are delivered, and nothing more counts as unvalidated.
    @Test func carriedAndRelayedPacketsFromAnUnprovenMoAAreDeliveredOnlyOnceItAnswers() throws {
        let lab = try Lab()
        defer { lab.close() }
        _ = try lab.startIMS()
        let config = try String(contentsOfFile: try lab.writeIMSConfig("cn"), encoding: .utf8)
            + "[relay]\naddress = \(Addr.plain4)\n"
        try config.write(toFile: lab.path("cn-relay.conf"), atomically: true, encoding: .utf8)
        try lab.startMatd("cn", config: lab.path("cn-relay.conf"))
        try lab.startMatd("vm", config: try lab.writeIMSConfig("vm"))
        for node in ["vm", "cn"] where !lab.waitForLog(node, "registered \(Addr.node(node).home4)") {
            throw LabError("matd in \(node) did not register:\n\(lab.matdLog(node))")
        }
        // The VM does not answer the CN's probes until this table goes.
        try lab.exec("vm", "nft", "add table inet mat_test_probes; add chain inet mat_test_probes input "
                     + "{ type filter hook input priority 0; }; add rule inet mat_test_probes input "
                     + "ip saddr \(cn.mobile4) udp dport 7540 counter drop")
        defer { _ = try? lab.run("vm", ["nft", "delete", "table", "inet", "mat_test_probes"]) }

        let sink = try lab.spawn("cn", ["python3", "-c", """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", 5003))
            print("listening", flush=True)
            while True:
                data, source = s.recvfrom(2048)
                print(source[0], data.decode(errors="replace"), flush=True)
            """])
        let script = lab.path("unproven-sender.py")
        try Self.sender.write(toFile: script, atomically: true, encoding: .utf8)
        let trigger = lab.path("round")
        let count = 20
        let carried = try lab.spawn("vm", ["python3", script, "1", vm.mobile4, "0", cn.mobile4, trigger, "carried", "\(count)"])
        let relayed = try lab.spawn("plain", ["python3", script, "6", Addr.plain4, "7541", cn.mobile4, trigger, "relayed", "\(count)"])
        for process in [sink, carried, relayed] where !process.waitForOutput(timeout: 10, { $0.contains("listening") || $0.contains("ready") }) {
            throw LabError("\(process.arguments.suffix(6)) did not start:\n\(process.wait(timeout: 1).summary)")
        }
        func cnStats() throws -> (unvalidated: UInt64, signaling: [String: Int], encap: [String: UInt64]) {
            let stats = try lab.stats("cn")
            let encap = (stats["encapsulation"] as? [String: Any] ?? [:]).compactMapValues { ($0 as? NSNumber)?.uint64Value }
            return (drops(stats)["unvalidated_path"] ?? 0, stats["signaling"] as? [String: Int] ?? [:], encap)
        }
        func arrived(_ label: String) -> Int { sink.stdout.split(separator: "\n").filter { $0.contains(" \(label)") }.count }

        // First contact: the CN looks the VM up and probes its MoA (at 0, 0.5, 1.5 and 3.5 s).
        _ = try lab.spawn("cn", ["ping", "-c", "1", "-W", "1", vm.home4])
        var before = try cnStats()
        _ = try poll(seconds: 20, every: 0.02) {
            before = try cnStats()
            return before.signaling["probes_sent", default: 0] > 0
        }
        try #require(before.signaling["probes_sent", default: 0] > 0, "the CN did not probe the VM:\n\(lab.matdLog("cn"))")
        let probed = Date()
        FileManager.default.createFile(atPath: trigger + "1", contents: nil)
        for sender in [carried, relayed] where !sender.waitForOutput(timeout: 20, { $0.contains("sent 1") }) {
            throw LabError("\(sender.arguments.suffix(6)) did not send:\n\(sender.stdout)\(sender.stderr)")
        }
        let window = Date().timeIntervalSince(probed)
        _ = try lab.run("vm", ["nft", "delete", "table", "inet", "mat_test_probes"])
        // The engine's counters reach `matctl stats` within a second.
        var unproven = try cnStats()
        _ = try poll(seconds: 5, every: 0.1) {
            unproven = try cnStats()
            return unproven.unvalidated - before.unvalidated >= UInt64(2 * count)
        }
        func delta(_ key: String, _ from: [String: UInt64], _ to: [String: UInt64]) -> UInt64 { to[key, default: 0] - from[key, default: 0] }
        #expect(arrived("carried-1") == 0 && arrived("relayed-1") == 0, "delivered from an unproven MoA:\n\(sink.stdout)")
        #expect(unproven.unvalidated - before.unvalidated >= UInt64(2 * count),
                "unvalidated_path \(before.unvalidated) -> \(unproven.unvalidated) for \(2 * count) datagrams (\(window) s after the first probe)\n\(before.encap) -> \(unproven.encap)\n\(lab.matdLog("cn"))")
        #expect(delta("encap_refused", before.encap, unproven.encap) == 0 && delta("encap_relay_refused", before.encap, unproven.encap) == 0,
                "refused otherwise: \(before.encap) -> \(unproven.encap)")

        // The drop is gone: the VM answers the next probe of the round.
        var proven = try cnStats()
        _ = try poll(seconds: 15, every: 0.05) {
            proven = try cnStats()
            return proven.signaling["probes_answered", default: 0] > 0
        }
        try #require(proven.signaling["probes_answered", default: 0] > 0,
                     "the VM's MoA was not proven (the round may have ended first, \(String(format: "%.1f", window)) s):\n\(lab.matdLog("cn"))")
        FileManager.default.createFile(atPath: trigger + "2", contents: nil)
        for sender in [carried, relayed] { sender.wait(timeout: 30) }
        var after = try cnStats()
        _ = try poll(seconds: 10, every: 0.1) {
            after = try cnStats()
            return arrived("carried-2") + arrived("relayed-2") >= 2 * count
                && delta("encap_relay_packets_received", proven.encap, after.encap) >= UInt64(count)
        }
        #expect(arrived("carried-2") == count && arrived("relayed-2") == count,
                "after the proof: \(arrived("carried-2")) carried and \(arrived("relayed-2")) relayed of \(count) each\n\(proven.encap) -> \(after.encap)")
        #expect(after.unvalidated == proven.unvalidated, "unvalidated_path \(proven.unvalidated) -> \(after.unvalidated) after the proof")
        #expect(delta("encap_relay_packets_received", proven.encap, after.encap) >= UInt64(count), "\(proven.encap) -> \(after.encap)")
        print("unproven MoA: \(count) carried + \(count) relayed datagrams dropped as unvalidated_path "
              + "(\(unproven.unvalidated - before.unvalidated) counted, within \(String(format: "%.1f", window)) s of the first probe), "
              + "0 delivered; after the probe's answer \(arrived("carried-2")) + \(arrived("relayed-2")) delivered")
    }
}
