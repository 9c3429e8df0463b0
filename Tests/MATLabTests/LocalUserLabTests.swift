#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATSystem
import Testing

/// A local unprivileged user on a node that runs matd (docs/security.md, Attackers: the
/// local user), played by uid 65534 (`setpriv`) in the node's namespace: it may send
/// packets to any HoA of the domain, and bind unprivileged UDP ports, matd's among them.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct LocalUserLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")
    /// `setpriv` arguments that run a command as nobody, with no groups.
    static let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    /// Datagrams to 10,000 random HoAs of the CN's IPv6 domain prefix: each is a first
    /// packet to a HoA without a mapping. matd looks up at most the global bound (burst
    /// 40, then 20 a second), and the IMS sees at most two queries per lookup.
    @Test func aLocalUserSendingToTenThousandHoAsCostsTheIMSOnlyTheBound() throws {
        let lab = try Lab()
        defer { lab.close() }
        let ims = try lab.startIMS(dualStack: true)
        try lab.startMatd("cn", config: try lab.writeIMSConfig("cn", dualStack: true))
        #expect(lab.waitForLog("cn", "registered \(cn.home6)"), "\(lab.matdLog("cn"))")
        func signaling() throws -> [String: Int] { try lab.stats("cn")["signaling"] as? [String: Int] ?? [:] }
        let queriesBefore = try lab.imsQueries(ims)
        let before = try signaling()
        let started = MonotonicClock.seconds()
        let sent = try check(lab.inNode("cn", Self.nobody + ["/usr/bin/python3", "-c", """
            import os, random, socket
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sent = 0
            for _ in range(10000):
                host = random.getrandbits(64) | 1
                address = "2001:db8:100::%x:%x:%x:%x" % (host >> 48, (host >> 32) & 0xffff, (host >> 16) & 0xffff, host & 0xffff)
                try:
                    s.sendto(b"x" * 32, (address, 9))
                    sent += 1
                except OSError:
                    pass
            print(os.getuid(), sent)
            """]))
        // The lookups that were granted finish; then the window closes.
        sleep(3)
        let after = try signaling()
        let queriesAfter = try lab.imsQueries(ims)
        let window = MonotonicClock.seconds() - started
        let fields = sent.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(fields.first == 65534, "not sent as nobody: \(sent)")
        #expect((fields.last ?? 0) >= 9_000, "the local user sent only \(sent)")
        let lookups = after["first_packet_lookups", default: 0] - before["first_packet_lookups", default: 0]
        let deferred = after["first_packet_lookups_deferred", default: 0] - before["first_packet_lookups_deferred", default: 0]
        let queries = queriesAfter - queriesBefore
        let bound = 40 + 20 * Int(window.rounded(.up))
        print("local user: \(fields.last ?? 0) datagrams to random HoAs in \(String(format: "%.1f", window)) s; "
              + "matd looked up \(lookups), deferred \(deferred); the IMS answered \(queries) queries (bound \(bound) lookups)")
        #expect(lookups <= bound, "\(lookups) lookups in \(window) s")
        // Random HoAs are never persistent: they may spend the burst less the 10 tokens
        // kept for flows that keep sending (FirstPacketLookups.reserve).
        #expect(lookups >= 30, "the burst at least was looked up: \(lookups)")
        #expect(deferred > 1_000, "the rest was deferred: \(deferred)")
        // A lookup is a TXT query, then an AAAA one when there is a record; the CN's own
        // renewals and read-backs add a few.
        #expect(queries <= 2 * bound + 10, "\(queries) IMS queries in \(window) s")
        #expect(lab.isMatdRunning("cn"))
    }

    /// Before matd starts, a local user holds `signaling-port` on the MoA, then
    /// `encap-port` on every address: matd does not start, and says which port, which
    /// setting, and who holds it. Once matd runs, the user cannot take either port, on
    /// any address of the node, the MoA it moves to included.
    @Test func aLocalUserHoldingMatdsPortsIsNamedAndCannotTakeThemFromMatd() throws {
        let lab = try Lab()
        defer { lab.close() }
        let config = try lab.writeConfig("vm")
        for (address, port, setting) in [(vm.mobile4, 7540, "signaling-port"), ("0.0.0.0", 7541, "encap-port")] {
            let squatter = try lab.spawn("vm", Self.nobody + ["/usr/bin/python3", "-c", """
                import os, socket, sys, time
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((sys.argv[1], int(sys.argv[2])))
                print("bound", os.getpid(), flush=True)
                time.sleep(120)
                """, address, "\(port)"])
            guard squatter.waitForOutput(timeout: 20, { $0.contains("bound") }) else {
                throw LabError("the squatter did not bind:\n\(squatter.wait(timeout: 1).summary)")
            }
            let pid = squatter.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "?"
            do {
                try lab.startMatd("vm", config: config)
                Issue.record("matd started with \(setting) \(port) held by a local user")
                try lab.stopMatd("vm")
            } catch let error as LabError {
                let text = "\(error)"
                #expect(text.contains("bind UDP port \(port) (IPv4, \(setting))"), "\(text)")
                #expect(text.contains("held by pid \(pid) (python3) of uid 65534 at \(address):\(port)"), "\(text)")
                #expect(text.contains("set another \(setting)"), "\(text)")
            }
            squatter.signal(SIGKILL)
            squatter.wait(timeout: 10)
        }

        try lab.startMatd("vm", config: config)
        func tryToBind(_ addresses: [String]) throws -> String {
            try check(lab.inNode("vm", Self.nobody + ["/usr/bin/python3", "-c", """
                import errno, socket, sys
                results = []
                for address in sys.argv[1:]:
                    for port in (7540, 7541):
                        family = socket.AF_INET6 if ":" in address else socket.AF_INET
                        s = socket.socket(family, socket.SOCK_DGRAM)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                        if family == socket.AF_INET6:
                            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                        try:
                            s.bind((address, port))
                            results.append("%s:%d bound" % (address, port))
                        except OSError as e:
                            results.append("%s:%d %s" % (address, port, errno.errorcode[e.errno]))
                print(" ".join(results))
                """] + addresses))
        }
        let atHome = try tryToBind(["0.0.0.0", vm.mobile4, "::"])
        #expect(!atHome.contains("bound") && atHome.components(separatedBy: "EADDRINUSE").count == 7, "\(atHome)")
        try lab.moveVM(to: "b")
        #expect(lab.waitForLog("vm", "mobile addresses now"), "\(lab.matdLog("vm"))")
        let moved = try tryToBind(["203.0.113.10"])
        #expect(!moved.contains("bound") && moved.components(separatedBy: "EADDRINUSE").count == 3, "\(moved)")
        #expect(lab.isMatdRunning("vm"))
    }
}
