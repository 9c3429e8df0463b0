#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATBPF
import MATLinux
import MATPacket
import Testing

/// MATBPF's programs beyond the IPv4 pair BPFDatapathLabTests runs (the heard map, the
/// MoA-to-MoA guard, IPv6) in the real kernel: the verifier takes each with its maps, and
/// in a testbed lab without matd (the HoAs on the VM's loopback, a TUN device routing the
/// CN's HoAs) real datagrams cross them: translated both ways with checksums the receiving
/// stack accepts (transmit offload off: the stack checks every checksum), the peer heard,
/// and MoA-to-MoA traffic left alone only with the guard.
@Suite(.serialized, .enabled(if: labTestsEnabled, "needs root: loads BPF programs, builds network namespaces (runs in CI)"))
struct BPFProgramsLabTests {
    let vm = Addr.node("vm"), cn = Addr.node("cn")

    /// Every map of one node's programs, both families; closed by `close()`.
    final class Maps: @unchecked Sendable {
        private(set) var descriptors: [Int32] = []
        var out4: Int32 = -1, in4: Int32 = -1, out6: Int32 = -1, in6: Int32 = -1, counters: Int32 = -1
        var heard4: Int32 = -1, heard6: Int32 = -1, flows4: Int32 = -1, flows6: Int32 = -1, services: Int32 = -1

        init() throws {
            func make(_ type: Attributes.MapType, _ key: Int, _ value: Int, _ entries: Int, _ name: String) throws -> Int32 {
                let fd = try BPFSystem.createMap(type, keySize: key, valueSize: value, maxEntries: entries, name: name)
                descriptors.append(fd)
                return fd
            }
            do {
                out4 = try make(.hash, 4, TranslationPrograms.OutboundValue.size, 1024, "t_out4")
                in4 = try make(.hash, 4, 4, 1024, "t_in4")
                out6 = try make(.hash, 16, TranslationPrograms6.OutboundValue.size, 1024, "t_out6")
                in6 = try make(.hash, 16, 16, 1024, "t_in6")
                counters = try make(.perCPUArray, 4, TranslationPrograms.counterValueSize, 4, "t_counts")
                heard4 = try make(.hash, 4, 8, 1024, "t_heard4")
                heard6 = try make(.hash, 16, 8, 1024, "t_heard6")
                flows4 = try make(.lruHash, MoAGuard.flowKeySize(addressLength: 4), 8, 4096, "t_flows4")
                flows6 = try make(.lruHash, MoAGuard.flowKeySize(addressLength: 16), 8, 4096, "t_flows6")
                services = try make(.hash, 4, 4, 256, "t_services")
            } catch {
                close()
                throw error
            }
        }

        func close() {
            for fd in descriptors.reversed() { Glibc.close(fd) }
            descriptors = []
        }

        var guard4: MoAGuard { MoAGuard(flowMap: flows4, serviceMap: services) }
        var guard6: MoAGuard { MoAGuard(flowMap: flows6, serviceMap: services) }

        /// The packets of counter `index`, summed over the CPUs.
        func counter(_ index: UInt32) throws -> UInt64 { try BPFSystem.count(map: counters, index: index).packets }
    }

    func parameters(_ maps: Maps, guarded: Bool = true) -> (TranslationPrograms.Parameters, TranslationPrograms6.Parameters) {
        let v4 = TranslationPrograms.Parameters(home: IPv4Address(vm.home4)!.value, mobile: IPv4Address(vm.mobile4)!.value,
                                                localPorts: [7540, 7541], outboundMap: maps.out4, inboundMap: maps.in4,
                                                counterMap: maps.counters, heardMap: maps.heard4, moaGuard: guarded ? maps.guard4 : nil)
        let v6 = TranslationPrograms6.Parameters(home: IPv6Address(vm.home6)!.bytes, mobile: IPv6Address(vm.mobile6)!.bytes,
                                                 localPorts: [7540, 7541], outboundMap: maps.out6, inboundMap: maps.in6,
                                                 counterMap: maps.counters, heardMap: maps.heard6, moaGuard: guarded ? maps.guard6 : nil)
        return (v4, v6)
    }

    /// Each program, as the node would load it.
    func programs(_ maps: Maps) throws -> [(name: String, instructions: [Instruction])] {
        let (v4, v6) = parameters(maps)
        let (plain4, plain6) = parameters(maps, guarded: false)
        return [
            ("mat_out4", try TranslationPrograms.outbound(plain4)), ("mat_out4_g", try TranslationPrograms.outbound(v4)),
            ("mat_in4", try TranslationPrograms.inbound(T4.without(plain4))), ("mat_in4_hg", try TranslationPrograms.inbound(v4)),
            ("mat_flows4", try MoAGuard.flows(v4)),
            ("mat_out6", try TranslationPrograms6.outbound(plain6)), ("mat_out6_g", try TranslationPrograms6.outbound(v6)),
            ("mat_in6", try TranslationPrograms6.inbound(T6.without(plain6))), ("mat_in6_hg", try TranslationPrograms6.inbound(v6)),
            ("mat_flows6", try MoAGuard.flows6(v6)),
        ]
    }

    enum T4 { static func without(_ p: TranslationPrograms.Parameters) -> TranslationPrograms.Parameters { var p = p; p.heardMap = nil; return p } }
    enum T6 { static func without(_ p: TranslationPrograms6.Parameters) -> TranslationPrograms6.Parameters { var p = p; p.heardMap = nil; return p } }

    /// The verifier takes every program with its maps (a refusal prints its log).
    @Test func theVerifierTakesEveryProgram() throws {
        let maps = try Maps()
        defer { maps.close() }
        var lengths: [String] = []
        for (name, instructions) in try programs(maps) {
            do {
                let fd = try BPFSystem.loadProgram(instructions, name: name)
                Glibc.close(fd)
                lengths.append("\(name)=\(instructions.count)")
            } catch {
                Issue.record("\(name) (\(instructions.count) instructions) refused: \(error)")
            }
        }
        print("BPFProgramsLabTests: instructions per program: \(lengths.joined(separator: " "))")
    }

    /// A small UDP tool for the nodes: `recv ADDR PORT COUNT` prints each sender,
    /// `echo ADDR PORT COUNT` answers, `send SRC SPORT DST DPORT COUNT` sends, `ask SRC
    /// SPORT DST DPORT` sends one datagram and prints who answered in 2 s.
    static let udpTool = """
        import socket, sys, time
        mode, a = sys.argv[1], sys.argv[2:]
        def sock(address):
            return socket.socket(socket.AF_INET6 if ':' in address else socket.AF_INET, socket.SOCK_DGRAM)
        if mode in ('recv', 'echo'):
            s = sock(a[0]); s.bind((a[0], int(a[1]))); s.settimeout(8)
            print('listening', flush=True)
            for _ in range(int(a[2])):
                try:
                    data, peer = s.recvfrom(2000)
                except socket.timeout:
                    break
                print('from', peer[0], peer[1], flush=True)
                if mode == 'echo':
                    s.sendto(data, peer)
        elif mode == 'send':
            s = sock(a[0]); s.bind((a[0], int(a[1])))
            for _ in range(int(a[4])):
                s.sendto(b'x' * 32, (a[2], int(a[3]))); time.sleep(0.05)
        elif mode == 'ask':
            s = sock(a[0]); s.bind((a[0], int(a[1]))); s.settimeout(2)
            s.sendto(b'?' * 32, (a[2], int(a[3])))
            try:
                print('reply', s.recvfrom(2000)[1][0], flush=True)
            except socket.timeout:
                print('no reply', flush=True)
        """

    /// `count` datagrams from `sender` (bound to `from`) to `to`, received by `receiver` bound
    /// to `at`; the senders it saw.
    func datagrams(_ lab: Lab, _ sender: String, from: (String, Int), to: (String, Int), _ receiver: String,
                   at: (String, Int), count: Int = 5) throws -> [String] {
        let listener = try lab.spawn(receiver, ["python3", "-c", Self.udpTool, "recv", at.0, "\(at.1)", "\(count)"])
        guard listener.waitForOutput(timeout: 10, { $0.contains("listening") }) else { throw LabError("no listener in \(receiver)") }
        try lab.exec(sender, "python3", "-c", Self.udpTool, "send", from.0, "\(from.1)", to.0, "\(to.1)", "\(count)")
        let result = listener.wait(timeout: 10)
        return result.stdout.split(separator: "\n").filter { $0.hasPrefix("from ") }.map { $0.split(separator: " ").dropFirst().joined(separator: " ") }
    }

    /// One datagram from `vm`'s `from` to an echo server in `cn` at `to`; who answered.
    func ask(_ lab: Lab, from: (String, Int), to: (String, Int)) throws -> String {
        let echo = try lab.spawn("cn", ["python3", "-c", Self.udpTool, "echo", to.0, "\(to.1)", "1"])
        guard echo.waitForOutput(timeout: 10, { $0.contains("listening") }) else { throw LabError("no echo server in cn") }
        defer { echo.signal(SIGKILL) }
        return try lab.exec("vm", "python3", "-c", Self.udpTool, "ask", from.0, "\(from.1)", to.0, "\(to.1)")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Attaches `programs` (instructions, interface, point) in `node`'s namespace; the attachments.
    func attach(_ lab: Lab, _ node: String, _ programs: [([Instruction], String, Attributes.AttachPoint)]) throws -> [BPFAttachment] {
        try inNamespace("/run/netns/\(lab.namespace(node))") { () throws(SystemError) -> [BPFAttachment] in
            var links: [BPFAttachment] = []
            do throws(SystemError) {
                for (instructions, interface, point) in programs {
                    let index = if_nametoindex(interface)
                    guard index != 0 else { throw SystemError("interface \(interface)", errno: errno) }
                    let program = try BPFSystem.loadProgram(instructions, name: "t_\(interface)")
                    defer { Glibc.close(program) }
                    links.append(try BPFSystem.attach(program: program, name: "t_\(interface)", interfaceIndex: index, point: point))
                }
            } catch {
                for link in links { link.detach() }
                throw error
            }
            return links
        }
    }

    func interfaceIndex(_ lab: Lab, _ node: String, _ name: String) throws -> UInt32 {
        try inNamespace("/run/netns/\(lab.namespace(node))") { () throws(SystemError) -> UInt32 in if_nametoindex(name) }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

extension BPFProgramsLabTests {
    /// Both families through the VM's programs, the CN plain: the CN's MoA-to-MoA datagrams
    /// reach the VM's HoA from the CN's HoA (heard), the VM's HoA datagrams reach the CN
    /// from the VM's MoA; a flow the VM opens from its MoA, and a service bound to its MoA,
    /// are left alone, and the same reply without the guard is taken from the MoA socket.
    @Test func trafficCrossesTheProgramsBothWays() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.checksumOffloadOff("vm", "cn")
        // The HoAs as matd would have them, without matd: on the VM's loopback, and the
        // CN's routed into a TUN device, from which only the outbound programs take them.
        for command in [["ip", "addr", "add", "\(vm.home4)/32", "dev", "lo"],
                        ["ip", "addr", "add", "\(vm.home6)/128", "dev", "lo", "nodad"],
                        ["ip", "tuntap", "add", "dev", "bpft0", "mode", "tun"], ["ip", "link", "set", "bpft0", "up"],
                        ["ip", "route", "add", "\(cn.home4)/32", "dev", "bpft0", "src", vm.home4],
                        ["ip", "-6", "route", "add", "\(cn.home6)/128", "dev", "bpft0", "src", vm.home6],
                        ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.eth0.rp_filter=2"]] {
            _ = try check(lab.inNode("vm", command))
        }
        let maps = try Maps()
        defer { maps.close() }
        let uplink = try interfaceIndex(lab, "vm", "eth0")
        let (v4, v6) = parameters(maps)
        try BPFSystem.update(map: maps.out4, key: TranslationPrograms.key(IPv4Address(cn.home4)!.value),
                             value: TranslationPrograms.OutboundValue(mobile: IPv4Address(cn.mobile4)!.value,
                                                                      nextHop: IPv4Address("192.0.2.1")!.value, interfaceIndex: uplink).bytes)
        try BPFSystem.update(map: maps.in4, key: TranslationPrograms.key(IPv4Address(cn.mobile4)!.value),
                             value: TranslationPrograms.key(IPv4Address(cn.home4)!.value))
        try BPFSystem.update(map: maps.out6, key: IPv6Address(cn.home6)!.bytes,
                             value: TranslationPrograms6.OutboundValue(mobile: IPv6Address(cn.mobile6)!.bytes,
                                                                       nextHop: IPv6Address("2001:db8:a::1")!.bytes, interfaceIndex: uplink).bytes)
        try BPFSystem.update(map: maps.in6, key: IPv6Address(cn.mobile6)!.bytes, value: IPv6Address(cn.home6)!.bytes)
        for version: UInt8 in [4, 6] {
            try BPFSystem.update(map: maps.services, key: MoAGuard.serviceKey(protocol: 17, version: version, port: 7000), value: [1, 0, 0, 0])
        }

        // Without the guard the echo's answer to the VM's MoA socket is translated to the
        // HoA, which has no such socket: the test below can fail.
        let unguarded = try attach(lab, "vm", [(try TranslationPrograms.inbound(parameters(maps, guarded: false).0), "eth0", .tcxIngress)])
        #expect(try ask(lab, from: (vm.mobile4, 5100), to: (cn.mobile4, 6100)) == "no reply", "without the guard")
        for link in unguarded { link.detach() }

        let links = try attach(lab, "vm", [
            (try TranslationPrograms.outbound(v4), "bpft0", .tcxEgress), (try TranslationPrograms6.outbound(v6), "bpft0", .tcxEgress),
            (try TranslationPrograms.inbound(v4), "eth0", .tcxIngress), (try TranslationPrograms6.inbound(v6), "eth0", .tcxIngress),
            (try MoAGuard.flows(v4), "eth0", .tcxEgress), (try MoAGuard.flows6(v6), "eth0", .tcxEgress),
        ])
        defer { for link in links { link.detach() } }

        for (family, heard) in [(Addr.Family.v4, maps.heard4), (.v6, maps.heard6)] {
            let (vmHome, vmMobile, cnHome, cnMobile) = (vm.home(family), vm.mobile(family), cn.home(family), cn.mobile(family))
            let heardKey = family == .v4 ? TranslationPrograms.key(IPv4Address(cnHome)!.value) : IPv6Address(cnHome)!.bytes
            // Inbound: the CN's MoA-to-MoA datagrams arrive from its HoA at the VM's HoA.
            let before = Self.monotonicNanoseconds()
            let inbound = try datagrams(lab, "cn", from: (cnMobile, 6000), to: (vmMobile, 5000), "vm", at: (vmHome, 5000))
            #expect(inbound == Array(repeating: "\(cnHome) 6000", count: 5), "\(family) inbound: \(inbound)")
            let noted = try BPFSystem.lookup(map: heard, key: heardKey, valueSize: 8)
                .map { $0.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) } }
            #expect(noted.map { $0 >= before && $0 <= Self.monotonicNanoseconds() } == true, "\(family) heard: \(String(describing: noted)), from \(before)")
            // Outbound: the VM's HoA datagrams arrive from its MoA at the CN's MoA, and
            // are no flow of the VM's MoA. The first datagram to a next hop the VM has not
            // resolved yet may be lost (1 of 5 was, IPv6, in a run without this one first):
            // one goes ahead, unchecked.
            _ = try datagrams(lab, "vm", from: (vmHome, 5399), to: (cnHome, 5300), "cn", at: (cnMobile, 5300), count: 1)
            let outbound = try datagrams(lab, "vm", from: (vmHome, 5400), to: (cnHome, 5300), "cn", at: (cnMobile, 5300))
            #expect(outbound == Array(repeating: "\(vmMobile) 5400", count: 5), "\(family) outbound: \(outbound)")
            let peer = family == .v4 ? TranslationPrograms.key(IPv4Address(cnMobile)!.value) : IPv6Address(cnMobile)!.bytes
            let flows = family == .v4 ? maps.flows4 : maps.flows6
            #expect(try BPFSystem.lookup(map: flows, key: MoAGuard.flowKey(peer: peer, protocol: 17, peerPort: 5300, ownPort: 5400),
                                         valueSize: 8) == nil, "\(family): translated traffic noted as the MoA's flow")
            // The guard: the VM's own flow from its MoA, and its service on the MoA.
            #expect(try ask(lab, from: (vmMobile, 5100), to: (cnMobile, 6100)) == "reply \(cnMobile)", "\(family) guarded flow")
            #expect(try BPFSystem.lookup(map: flows, key: MoAGuard.flowKey(peer: peer, protocol: 17, peerPort: 6100, ownPort: 5100),
                                         valueSize: 8) != nil, "\(family): the MoA's flow not noted")
            let service = try datagrams(lab, "cn", from: (cnMobile, 6200), to: (vmMobile, 7000), "vm", at: (vmMobile, 7000), count: 2)
            #expect(service == Array(repeating: "\(cnMobile) 6200", count: 2), "\(family) service on the MoA: \(service)")
        }
        let counted = try (0..<4).map { try maps.counter(UInt32($0)) }
        #expect(counted[0] >= 5 && counted[1] >= 5 && counted[2] >= 5 && counted[3] >= 5, "translated: \(counted)")
    }
}
