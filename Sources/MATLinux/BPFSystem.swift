#if canImport(Glibc)
import Glibc
#endif
import CShim
import MATBPF

/// The bpf(2) calls of the BPF datapath: maps, program loads, attaching (tcx links, Linux
/// 6.6, or tc filters: ``attach(program:name:interfaceIndex:point:)``). Every file
/// descriptor returned is the caller's to close, every ``BPFAttachment`` to detach; the
/// maps and programs go when nothing holds them any more.
public enum BPFSystem {
    /// Runs `command` with `attributes`, whose pointer fields are set to `pointers`'
    /// addresses (offset, address) while the call runs; the call's result or -errno.
    private static func raw(_ command: Attributes.Command, _ attributes: [UInt8],
                            pointers: [(offset: Int, address: UnsafeRawPointer?)] = []) -> Int32 {
        var attributes = attributes
        for (offset, pointer) in pointers {
            let address = UInt64(UInt(bitPattern: pointer))
            for i in 0..<8 { attributes[offset + i] = UInt8(truncatingIfNeeded: address >> (8 * i)) }
        }
        return attributes.withUnsafeMutableBytes { mat_bpf(command.rawValue, $0.baseAddress, UInt32($0.count)) }
    }

    private static func check(_ result: Int32, _ operation: @autoclosure () -> String) throws(SystemError) -> Int32 {
        guard result >= 0 else { throw SystemError(operation(), errno: -result) }
        return result
    }

    /// A new map; its file descriptor.
    public static func createMap(_ type: Attributes.MapType, keySize: Int, valueSize: Int, maxEntries: Int, name: String) throws(SystemError) -> Int32 {
        try check(raw(.mapCreate, Attributes.mapCreate(type, keySize: UInt32(keySize), valueSize: UInt32(valueSize),
                                                        maxEntries: UInt32(maxEntries), name: name)), "create BPF map \(name)")
    }

    /// Sets `key` to `value` in `map` (added or replaced).
    public static func update(map: Int32, key: [UInt8], value: [UInt8]) throws(SystemError) {
        let result = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in
                raw(.mapUpdateElement, Attributes.element(map: map, flags: Attributes.updateAny),
                    pointers: [(Attributes.elementKey, k.baseAddress), (Attributes.elementValue, v.baseAddress)])
            }
        }
        _ = try check(result, "update BPF map element")
    }

    /// Removes `key` from `map`; false when it was not there.
    @discardableResult
    public static func delete(map: Int32, key: [UInt8]) throws(SystemError) -> Bool {
        let result = key.withUnsafeBytes { k in
            raw(.mapDeleteElement, Attributes.element(map: map, flags: 0), pointers: [(Attributes.elementKey, k.baseAddress)])
        }
        if result == -ENOENT { return false }
        _ = try check(result, "delete BPF map element")
        return true
    }

    /// The value of `key` in `map` (`valueSize` bytes; a per-CPU map's is one value per
    /// possible CPU, each rounded up to 8 bytes), or nil when it is not there.
    public static func lookup(map: Int32, key: [UInt8], valueSize: Int) throws(SystemError) -> [UInt8]? {
        var value = [UInt8](repeating: 0, count: valueSize)
        let result = key.withUnsafeBytes { k in
            value.withUnsafeMutableBytes { v in
                raw(.mapLookupElement, Attributes.element(map: map, flags: 0),
                    pointers: [(Attributes.elementKey, k.baseAddress), (Attributes.elementValue, UnsafeRawPointer(v.baseAddress))])
            }
        }
        if result == -ENOENT { return nil }
        _ = try check(result, "look up BPF map element")
        return value
    }

    /// The number of CPUs a per-CPU map holds a value for (the kernel's possible CPUs).
    public static func possibleCPUs() -> Int {
        // "0-1" or "0,2-5": the highest CPU number plus one.
        guard let file = fopen("/sys/devices/system/cpu/possible", "r") else { return Int(sysconf(Int32(_SC_NPROCESSORS_CONF))) }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return Int(sysconf(Int32(_SC_NPROCESSORS_CONF))) }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let highest = text.split(whereSeparator: { $0 == "," || $0 == "-" || $0 == "\n" }).compactMap { Int($0) }.max()
        return (highest ?? 0) + 1
    }

    /// What a counter of the BPF datapath holds (``TranslationPrograms/counterValueSize``).
    public struct Count: Equatable, Sendable {
        public var packets: UInt64
        public var bytes: UInt64

        public init(packets: UInt64 = 0, bytes: UInt64 = 0) {
            self.packets = packets
            self.bytes = bytes
        }

        public static func + (left: Count, right: Count) -> Count {
            Count(packets: left.packets + right.packets, bytes: left.bytes + right.bytes)
        }
    }

    /// Counter `index` of the per-CPU counter map `map`, summed over the CPUs (0 for an
    /// index the map does not have).
    public static func count(map: Int32, index: UInt32) throws(SystemError) -> Count {
        let cpus = possibleCPUs(), size = TranslationPrograms.counterValueSize
        // An array's key is the index in host order.
        let key = withUnsafeBytes(of: index.littleEndian) { Array($0) }
        guard let bytes = try lookup(map: map, key: key, valueSize: size * cpus) else { return Count() }
        func word(_ offset: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) } }
        return (0..<cpus).reduce(Count()) { $0 + Count(packets: word($1 * size), bytes: word($1 * size + 8)) }
    }

    /// Loads a tc program (GPL: the redirect and checksum helpers are GPL-only); its file
    /// descriptor. A refusal carries the verifier's log in the error's detail.
    public static func loadProgram(_ instructions: [Instruction], name: String) throws(SystemError) -> Int32 {
        let code = Assembler.bytes(instructions)
        let license: [UInt8] = Array("GPL".utf8) + [0]
        var log = [UInt8](repeating: 0, count: 1 << 16)
        let result = code.withUnsafeBytes { c in
            license.withUnsafeBytes { l in
                log.withUnsafeMutableBytes { g in
                    raw(.programLoad, Attributes.programLoad(count: instructions.count, logSize: UInt32(g.count), name: name),
                        pointers: [(Attributes.programInstructions, c.baseAddress), (Attributes.programLicense, l.baseAddress),
                                   (Attributes.programLog, UnsafeRawPointer(g.baseAddress))])
                }
            }
        }
        guard result < 0 else { return result }
        let text = String(decoding: log.prefix { $0 != 0 }.suffix(2_000), as: UTF8.self)
        let failure = SystemError("load BPF program \(name)", errno: -result)
        throw text.isEmpty ? failure : SystemError(failure.description, detail: "verifier: " + text)
    }

    /// A tcx link of `program` at `point` of the interface with index `interfaceIndex`,
    /// after the programs there; its file descriptor: closing it detaches.
    static func link(program: Int32, interfaceIndex: UInt32, point: Attributes.AttachPoint) throws(SystemError) -> Int32 {
        try check(raw(.linkCreate, Attributes.tcxLink(program: program, interfaceIndex: interfaceIndex, point: point)),
                  "attach BPF program to interface \(interfaceIndex) (tcx)")
    }

    /// How many programs are attached at `point` of the interface with index
    /// `interfaceIndex` in the calling thread's namespace, tcx links (BPF_PROG_QUERY) and
    /// bpf tc filters at the clsact hook alike (what `bpftool net` lists), so a test or an
    /// operator can tell that nothing was left attached.
    public static func attachedPrograms(interfaceIndex: UInt32, point: Attributes.AttachPoint) throws(SystemError) -> Int {
        let filters = try TCFilters.count(interfaceIndex: interfaceIndex, hook: point == .tcxIngress ? .ingress : .egress)
        do throws(SystemError) {
            return try attachedLinks(interfaceIndex: interfaceIndex, point: point) + filters
        } catch where error.errno == EINVAL && kernelVersion().map({ $0 < (6, 6) }) == true {
            return filters   // no tcx: nothing attached with it
        }
    }

    /// How many programs are attached at `point` with tcx.
    private static func attachedLinks(interfaceIndex: UInt32, point: Attributes.AttachPoint) throws(SystemError) -> Int {
        // struct { target_ifindex; attach_type; query_flags; attach_flags; prog_ids (u64);
        // prog_cnt; ... }: with no array given the kernel fills in only the count, at 24.
        var attributes = [UInt8](repeating: 0, count: 64)
        for i in 0..<4 {
            attributes[i] = UInt8(truncatingIfNeeded: interfaceIndex >> (8 * i))
            attributes[4 + i] = UInt8(truncatingIfNeeded: point.rawValue >> (8 * i))
        }
        let result = attributes.withUnsafeMutableBytes { mat_bpf(queryCommand, $0.baseAddress, UInt32($0.count)) }
        _ = try check(result, "query BPF programs of interface \(interfaceIndex)")
        return (0..<4).reduce(0) { $0 | Int(attributes[24 + $1]) << (8 * $1) }
    }

    /// The keys of `map` (`keySize` bytes each), in the kernel's order (BPF_MAP_GET_NEXT_KEY
    /// from `start`, or from none, until there is no next), `limit` at most: a walk in parts
    /// goes on after the last key of the part before. A key deleted meanwhile (`start` too)
    /// may make the walk start over.
    public static func keys(map: Int32, keySize: Int, after start: [UInt8]? = nil, limit: Int = .max) throws(SystemError) -> [[UInt8]] {
        var keys: [[UInt8]] = []
        var previous = start
        var next = [UInt8](repeating: 0, count: keySize)
        while keys.count < limit {
            var attributes = Attributes.element(map: map, flags: 0)
            let result = next.withUnsafeMutableBytes { n in
                (previous ?? []).withUnsafeBytes { p in
                    // The next key's pointer goes where an update's value does.
                    for (offset, pointer) in [(Attributes.elementKey, previous == nil ? nil : p.baseAddress),
                                              (Attributes.elementValue, UnsafeRawPointer(n.baseAddress))] {
                        let address = UInt64(UInt(bitPattern: pointer))
                        for i in 0..<8 { attributes[offset + i] = UInt8(truncatingIfNeeded: address >> (8 * i)) }
                    }
                    return attributes.withUnsafeMutableBytes { mat_bpf(nextKeyCommand, $0.baseAddress, UInt32($0.count)) }
                }
            }
            if result == -ENOENT { return keys }
            _ = try check(result, "walk BPF map")
            keys.append(next)
            previous = next
        }
        return keys
    }

    /// BPF_MAP_GET_NEXT_KEY (enum bpf_cmd).
    private static let nextKeyCommand: Int32 = 4

    /// BPF_PROG_QUERY (enum bpf_cmd).
    private static let queryCommand: Int32 = 16
}
