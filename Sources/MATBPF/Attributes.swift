/// The `union bpf_attr` bytes of the bpf(2) commands matd uses, laid out as the kernel's
/// uapi header has them (fixed by its ABI: every field at its natural alignment, little
/// endian here), so the Linux layer passes bytes and needs no kernel header. Pointers are
/// filled in by the caller at the offsets named here, while the memory they point at is
/// pinned.
public enum Attributes {
    /// bpf(2) commands (enum bpf_cmd).
    public enum Command: Int32, Sendable {
        case mapCreate = 0, mapLookupElement = 1, mapUpdateElement = 2, mapDeleteElement = 3
        case programLoad = 5, objectGetInfoByFD = 15, linkCreate = 28
    }

    /// Map types (enum bpf_map_type).
    public enum MapType: UInt32, Sendable {
        case hash = 1, array = 2, perCPUArray = 6, lruHash = 9
    }

    /// tcx attach points (enum bpf_attach_type), Linux 6.6.
    public enum AttachPoint: UInt32, Sendable {
        case tcxIngress = 46, tcxEgress = 47
    }

    /// BPF_PROG_TYPE_SCHED_CLS: a tc program.
    public static let schedClassifier: UInt32 = 3

    /// BPF_MAP_CREATE.
    public static func mapCreate(_ type: MapType, keySize: UInt32, valueSize: UInt32, maxEntries: UInt32, name: String) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 48)
        put(type.rawValue, at: 0, in: &bytes)
        put(keySize, at: 4, in: &bytes)
        put(valueSize, at: 8, in: &bytes)
        put(maxEntries, at: 12, in: &bytes)
        putName(name, at: 28, in: &bytes)                    // map_name[16] after flags, inner fd, numa node
        return bytes
    }

    /// BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM: the key pointer goes at ``elementKey``, the
    /// value pointer at ``elementValue``.
    public static func element(map: Int32, flags: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 32)
        put(UInt32(bitPattern: map), at: 0, in: &bytes)
        put(flags, at: 24, in: &bytes)
        return bytes
    }
    public static let elementKey = 8, elementValue = 16

    /// Update flags: BPF_ANY.
    public static let updateAny: UInt64 = 0

    /// BPF_PROG_LOAD of a tc program of `count` instructions: the instructions' pointer
    /// goes at ``programInstructions``, the license string's at ``programLicense``, the
    /// verifier log's at ``programLog`` (with its size; level 1 when `logSize` > 0).
    public static func programLoad(count: Int, logSize: UInt32, name: String) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 72)
        put(schedClassifier, at: 0, in: &bytes)
        put(UInt32(count), at: 4, in: &bytes)
        put(UInt32(logSize > 0 ? 1 : 0), at: 24, in: &bytes)
        put(logSize, at: 28, in: &bytes)
        putName(name, at: 48, in: &bytes)
        return bytes
    }
    public static let programInstructions = 8, programLicense = 16, programLog = 32

    /// BPF_LINK_CREATE of a tcx link: `program` at `point` of interface `interfaceIndex`,
    /// after the programs there (no relative program: appended).
    public static func tcxLink(program: Int32, interfaceIndex: UInt32, point: AttachPoint) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 32)
        put(UInt32(bitPattern: program), at: 0, in: &bytes)
        put(interfaceIndex, at: 4, in: &bytes)
        put(point.rawValue, at: 8, in: &bytes)
        return bytes
    }

    static func put(_ value: UInt32, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    static func put(_ value: UInt64, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    /// A name of at most 15 bytes (the kernel wants a terminating zero, and only
    /// letters, digits, `_` and `.`; others become `_`).
    static func putName(_ name: String, at offset: Int, in bytes: inout [UInt8]) {
        for (i, byte) in name.utf8.prefix(15).enumerated() {
            let allowed = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || byte == 0x2e
            bytes[offset + i] = allowed ? byte : 0x5f
        }
    }
}
