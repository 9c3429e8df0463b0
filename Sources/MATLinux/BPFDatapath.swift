#if canImport(Glibc)
import Glibc
#endif
import MATBPF
import MATPacket

/// The BPF datapath of one node, IPv4 (docs/benchmarks.md, "udp64 with a tc/BPF
/// datapath"): its maps, the two programs of ``TranslationPrograms`` built for its own
/// addresses, and their tcx links (Linux 6.6), egress of the TUN device and ingress of the
/// uplink, in the calling thread's network namespace. Peers are map elements
/// (``setPeer(home:mobile:nextHop:)``, ``removePeer(home:mobile:)``); ``close()`` detaches
/// the programs, and the maps go with the last reference.
public final class BPFDatapath: @unchecked Sendable {
    // @unchecked: used by one thread at a time (its owner); the descriptors change only in init and close.
    private var descriptors: [Int32] = []
    private let outboundMap: Int32, inboundMap: Int32, counterMap: Int32
    private let uplinkIndex: UInt32

    /// Builds the maps and programs and attaches them. Throws (closing what it made) when
    /// the kernel lacks tcx or refuses a program.
    public init(home: IPv4Address, mobile: IPv4Address, localPorts: [UInt16], tun: String, uplink: String,
                maxPeers: Int = 65_536) throws(SystemError) {
        let tunIndex = if_nametoindex(tun), uplinkIndex = if_nametoindex(uplink)
        guard tunIndex != 0 else { throw SystemError("BPF datapath: interface \(tun)", errno: errno) }
        guard uplinkIndex != 0 else { throw SystemError("BPF datapath: interface \(uplink)", errno: errno) }
        self.uplinkIndex = uplinkIndex
        var made: [Int32] = []
        do throws(SystemError) {
            outboundMap = try BPFSystem.createMap(.hash, keySize: 4, valueSize: TranslationPrograms.OutboundValue.size,
                                                  maxEntries: maxPeers, name: "mat_out4")
            made.append(outboundMap)
            inboundMap = try BPFSystem.createMap(.hash, keySize: 4, valueSize: 4, maxEntries: maxPeers, name: "mat_in4")
            made.append(inboundMap)
            counterMap = try BPFSystem.createMap(.perCPUArray, keySize: 4, valueSize: 8, maxEntries: 2, name: "mat_counts")
            made.append(counterMap)
            let parameters = TranslationPrograms.Parameters(home: home.value, mobile: mobile.value, localPorts: localPorts,
                                                            outboundMap: outboundMap, inboundMap: inboundMap, counterMap: counterMap)
            let programs: [([Instruction], String, UInt32, Attributes.AttachPoint)]
            do {
                programs = [(try TranslationPrograms.outbound(parameters), "mat_out4", tunIndex, .tcxEgress),
                            (try TranslationPrograms.inbound(parameters), "mat_in4", uplinkIndex, .tcxIngress)]
            } catch {
                throw SystemError("BPF datapath: assemble", detail: "\(error)")
            }
            for (instructions, name, index, point) in programs {
                let program = try BPFSystem.loadProgram(instructions, name: name)
                made.append(program)
                made.append(try BPFSystem.attach(program: program, interfaceIndex: index, point: point))
            }
        } catch {
            for fd in made.reversed() { Glibc.close(fd) }
            throw error
        }
        descriptors = made
    }

    deinit { close() }

    /// Detaches the programs (closing their links) and lets go of the maps. Idempotent.
    public func close() {
        for fd in descriptors.reversed() { Glibc.close(fd) }
        descriptors = []
    }

    /// `home`'s packets go to `mobile` via `nextHop` (its MoA itself when on the link), and
    /// packets from `mobile` are `home`'s.
    public func setPeer(home: IPv4Address, mobile: IPv4Address, nextHop: IPv4Address) throws(SystemError) {
        let value = TranslationPrograms.OutboundValue(mobile: mobile.value, nextHop: nextHop.value, interfaceIndex: uplinkIndex)
        try BPFSystem.update(map: outboundMap, key: TranslationPrograms.key(home.value), value: value.bytes)
        try BPFSystem.update(map: inboundMap, key: TranslationPrograms.key(mobile.value), value: TranslationPrograms.key(home.value))
    }

    /// Takes `home` (at `mobile`) off the datapath: its packets go to the TUN device again.
    public func removePeer(home: IPv4Address, mobile: IPv4Address) throws(SystemError) {
        try BPFSystem.delete(map: outboundMap, key: TranslationPrograms.key(home.value))
        try BPFSystem.delete(map: inboundMap, key: TranslationPrograms.key(mobile.value))
    }

    /// Packets the programs translated: outbound and inbound, summed over the CPUs.
    public func translated() throws(SystemError) -> (outbound: UInt64, inbound: UInt64) {
        let cpus = BPFSystem.possibleCPUs()
        func sum(_ index: UInt32) throws(SystemError) -> UInt64 {
            // An array's key is the index in host order.
            let key = withUnsafeBytes(of: index.littleEndian) { Array($0) }
            guard let bytes = try BPFSystem.lookup(map: counterMap, key: key, valueSize: 8 * cpus) else { return 0 }
            return (0..<cpus).reduce(0) { total, cpu in
                total + (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[cpu * 8 + $1]) << (8 * $1) }
            }
        }
        return (try sum(0), try sum(1))
    }
}
