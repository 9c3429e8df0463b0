#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATTestSupport
import Testing

/// Path MTU in UDP (docs/datapath.md, "Path MTU in UDP"): both nodes send their traffic in
/// UDP (`udp-encapsulation = always`) over links of MTU 1500, so an inner packet has 1454
/// bytes (IPv4: 1500 - 20 - 8 - 8 - 10) or 1434 (IPv6: 1500 - 40 - 8 - 8 - 10), less than
/// the TUN device's 1500. A packet that must not be fragmented and does not fit is
/// answered as a tunnel answers it; the sender's kernel learns the MTU and the next
/// packet of that size fits.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: builds network namespaces (runs in CI)"))
struct EncapPathMTULabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// The lab with matd on both nodes in UDP to each other, both families.
    func start() throws -> Lab {
        let lab = try Lab()
        do {
            for node in ["vm", "cn"] {
                try lab.startMatd(node, config: lab.writeConfig(node, adding: "udp-encapsulation = always"))
            }
            for node in ["vm", "cn"] where !waitForUDPPaths(lab, node) {
                throw LabError("\(node) does not send in UDP:\n\(try lab.matctl(node, "peers"))\n\(lab.matdLog(node))")
            }
        } catch {
            lab.close()
            throw error
        }
        return lab
    }

    /// Waits until both of `node`'s peers (IPv4 and IPv6) are reached in UDP.
    func waitForUDPPaths(_ lab: Lab, _ node: String, timeout: Double = 30) -> Bool {
        poll(seconds: timeout, every: 0.2) {
            (try? lab.matctl(node, "peers"))?.split(separator: "\n").filter({ $0.contains("path udp-encap") }).count ?? 0 >= 2
        }
    }

    /// `ping -M do` of 1500 bytes is answered "fragmentation needed" with MTU 1454, the
    /// VM's kernel keeps that MTU for the CN's HoA (the next ping of that size fails
    /// locally), and a ping of 1454 bytes gets its replies; one without DF of 1500, before,
    /// went in fragments as it always did. The same for IPv6 with Packet Too Big and 1434.
    @Test func pingLearnsTheMTUOfTheUDPPath() throws {
        let lab = try start()
        defer { lab.close() }
        // IPv4: 1472 bytes of ICMP data make a 1500-byte packet. Without DF it goes in
        // fragmented datagrams, unanswered (first: the kernel has learned nothing yet).
        #expect(try pingPasses(lab, ["-M", "dont", "-s", "1472", cn.home4]), "\(lab.matdLog("vm"))")
        let before = try lab.stats("vm")["encapsulation"] as? [String: Int] ?? [:]
        #expect(before["encap_too_big_answered"] == 0, "\(before)")
        let first = try lab.run("vm", ["ping", "-n", "-M", "do", "-c", "1", "-W", "5", "-s", "1472", cn.home4])
        #expect(first.stdout.contains("Frag needed and DF set (mtu = 1454)"), "\(first.summary)")
        let route = try lab.exec("vm", "ip", "route", "get", cn.home4)
        #expect(route.contains("mtu 1454"), "\(route)")
        let second = try lab.run("vm", ["ping", "-n", "-M", "do", "-c", "1", "-W", "5", "-s", "1472", cn.home4])
        #expect(!second.succeeded && (second.stdout + second.stderr).contains("mtu=1454"), "\(second.summary)")
        #expect(try pingPasses(lab, ["-M", "do", "-s", "1426", cn.home4]), "\(lab.matdLog("vm"))")
        // IPv6: 1452 bytes of ICMPv6 data make a 1500-byte packet.
        let first6 = try lab.run("vm", ["ping", "-n", "-6", "-M", "do", "-c", "1", "-W", "5", "-s", "1452", cn.home6])
        #expect(first6.stdout.contains("Packet too big: mtu=1434"), "\(first6.summary)")
        let route6 = try lab.exec("vm", "ip", "-6", "route", "get", cn.home6)
        #expect(route6.contains("mtu 1434"), "\(route6)")
        #expect(try pingPasses(lab, ["-6", "-M", "do", "-s", "1386", cn.home6]), "\(lab.matdLog("vm"))")
        let counters = try lab.stats("vm")["encapsulation"] as? [String: Int] ?? [:]
        #expect(counters["encap_too_big_answered", default: 0] >= 2 && counters["encap_too_big_rate_limited"] == 0,
                "\(counters)")
    }

    /// A UDP sender with path MTU discovery on (as QUIC and DNS over UDP do) learns the
    /// MTU from the answer: its first datagram too large for the path is dropped, a later
    /// send fails with EMSGSIZE, `IP_MTU`/`IPV6_MTU` report 1454/1434, and a datagram that
    /// fits reaches the CN.
    @Test func aUDPSenderLearnsTheMTUOfTheUDPPath() throws {
        let lab = try start()
        defer { lab.close() }
        for (family, address, size, mtu) in [(4, cn.home4, 1472, 1454), (6, cn.home6, 1452, 1434)] {
            let fits = mtu - (family == 4 ? 28 : 48)
            let receiver = try lab.spawn("cn", ["python3", "-c", """
                import socket, sys
                s = socket.socket(socket.AF_INET\(family == 6 ? "6" : ""), socket.SOCK_DGRAM)
                s.bind(("\(address)", 5999))
                print("bound", flush=True)
                while True:
                    print("got", len(s.recv(65535)), flush=True)
                """])
            #expect(receiver.waitForOutput(timeout: 30) { $0.contains("bound") }, "\(receiver.stderr)")
            let sender = try lab.exec("vm", "python3", "-c", """
                import errno, socket, time
                v6 = \(family == 6 ? "True" : "False")
                s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
                # IPV6_MTU_DISCOVER / IP_MTU_DISCOVER = *_PMTUDISC_DO; IPV6_MTU / IP_MTU
                s.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, 23 if v6 else 10, 2)
                s.connect(("\(address)", 5999))
                deadline = time.time() + 30
                refused = False
                while time.time() < deadline and not refused:
                    try:
                        s.send(b"x" * \(size))
                    except OSError as e:
                        if e.errno != errno.EMSGSIZE: raise
                        refused = True
                    time.sleep(0.2)
                print("refused", refused)
                print("mtu", s.getsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, 24 if v6 else 14))
                # The answer's error, if still pending, comes with the first send after it.
                sent = 0
                for _ in range(6):
                    try:
                        s.send(b"y" * \(fits)); sent += 1
                    except OSError as e:
                        if e.errno != errno.EMSGSIZE: raise
                    time.sleep(0.2)
                print("sent", sent)
                """, timeout: 60)
            #expect(sender.contains("refused True") && sender.contains("mtu \(mtu)") && !sender.contains("sent 0"),
                    "IPv\(family): \(sender)")
            #expect(receiver.waitForOutput(timeout: 30) { $0.contains("got \(fits)") }, "IPv\(family): \(receiver.stdout)")
            // The datagram too large never reached the CN, neither whole nor in fragments.
            #expect(!receiver.stdout.contains("got \(size)"), "IPv\(family): \(receiver.stdout)")
            receiver.signal(SIGKILL)
            receiver.wait(timeout: 10)
        }
    }

    /// Pings 3 times with `arguments`; true when a reply came (under load one may be lost).
    func pingPasses(_ lab: Lab, _ arguments: [String]) throws -> Bool {
        let result = try lab.run("vm", ["ping", "-n", "-c", "3", "-W", "5"] + arguments)
        return result.succeeded
    }
}
