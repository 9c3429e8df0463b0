@testable import MATBPF

/// A BPF machine for the instructions and helpers ``TranslationPrograms`` uses, so the
/// programs' logic is checked on packets without a kernel (the kernel's verifier and
/// datapath are checked by BPFDatapathLabTests). The helpers behave as the kernel's do on
/// a packet with full checksums: bpf_l3/l4_csum_replace are RFC 1624 updates (with
/// BPF_F_MARK_MANGLED_0: a zero UDP checksum stays zero, a result of zero becomes 0xffff;
/// with field size 0, `from` must be 0 and `to` is a bpf_csum_diff result), bpf_skb_change_head
/// pushes zeros (as the kernel: a unicast link header), bpf_ktime_get_coarse_ns reads ``now``, and
/// every write into a map (an update, a store into a looked-up value) is counted in
/// ``writes``.
struct Interpreter {
    enum Failure: Error, CustomStringConvertible {
        case badAccess(UInt64, Int, pc: Int)
        case unknownInstruction(Instruction, pc: Int)
        case tooManySteps

        var description: String {
            switch self {
            case .badAccess(let address, let size, let pc): "bad access of \(size) at 0x\(String(address, radix: 16)) (pc \(pc))"
            case .unknownInstruction(let i, let pc): "unknown instruction \(i) at \(pc)"
            case .tooManySteps: "too many steps"
            }
        }
    }

    /// Maps by file descriptor: key bytes -> value bytes.
    var maps: [Int32: [[UInt8]: [UInt8]]] = [:]
    var packet: [UInt8] = []
    var mark: UInt32 = 0
    var protocolField: UInt32 = 0x0008  // ETH_P_IP as __sk_buff holds it (network order, loaded little endian)
    /// The last bpf_redirect_neigh: interface, next hop (network order bytes, 4 or 16).
    var redirected: (interface: UInt32, nextHop: [UInt8])?
    /// Helpers called, in order.
    var calls: [Helper] = []
    /// What bpf_ktime_get_coarse_ns returns.
    var now: UInt64 = 0
    /// __sk_buff's ingress_ifindex: 0 for a packet the host sends, the input device's for
    /// a forwarded one.
    var ingressIndex: UInt32 = 0
    /// Writes into each map: updates and stores into values it handed out.
    var writes: [Int32: Int] = [:]
    /// Key and value sizes of maps that may be empty (others take their first key's).
    var sizes: [Int32: (key: Int, value: Int)] = [:]

    private static let context: UInt64 = 0x1000_0000, stackTop: UInt64 = 0x2000_0000, packetBase: UInt64 = 0x3000_0000
    private static let mapBase: UInt64 = 0x5000_0000, valueBase: UInt64 = 0x6000_0000
    private var stack = [UInt8](repeating: 0, count: 512)
    /// Values handed out by lookups: (map, key) per region.
    private var values: [(map: Int32, key: [UInt8])] = []

    mutating func run(_ program: [Instruction]) throws -> Int32 {
        var r = [UInt64](repeating: 0, count: 11)
        r[1] = Self.context
        r[10] = Self.stackTop
        var pc = 0, steps = 0
        while true {
            steps += 1
            guard steps < 100_000, pc < program.count else { throw Failure.tooManySteps }
            let i = program[pc]
            let cls = i.opcode & 0x07, dst = Int(i.destination.rawValue), src = Int(i.source.rawValue)
            let imm = UInt64(bitPattern: Int64(i.immediate))
            pc += 1
            switch cls {
            case 0x07, 0x04:  // ALU64, ALU
                let operand = i.opcode & 0x08 != 0 ? r[src] : imm
                var value = r[dst]
                let wide = cls == 0x07
                if !wide { value &= 0xffff_ffff }
                let b = wide ? operand : operand & 0xffff_ffff
                switch i.opcode & 0xf0 {
                case 0x00: value = value &+ b
                case 0x10: value = value &- b
                case 0x40: value |= b
                case 0x50: value &= b
                case 0x60: value = value << (b & 63)
                case 0x70: value = value >> (b & 63)
                case 0xa0: value ^= b
                case 0xb0: value = b
                default: throw Failure.unknownInstruction(i, pc: pc - 1)
                }
                r[dst] = wide ? value : value & 0xffff_ffff
            case 0x00:  // LD imm64
                let high = UInt64(UInt32(bitPattern: program[pc].immediate))
                r[dst] = i.source == Instruction.pseudoMapFD ? Self.mapBase + UInt64(i.immediate)
                    : UInt64(UInt32(bitPattern: i.immediate)) | high << 32
                pc += 1
            case 0x01:
                r[dst] = try read(r[src] &+ UInt64(bitPattern: Int64(i.offset)), size(i), pc: pc - 1)
            case 0x03, 0x02:
                let value = cls == 0x03 ? r[src] : imm
                try write(r[dst] &+ UInt64(bitPattern: Int64(i.offset)), size(i), value, pc: pc - 1)
            case 0x05, 0x06:
                let op = i.opcode & 0xf0
                if op == 0x90 { return Int32(truncatingIfNeeded: r[0]) }
                if op == 0x80 {
                    r[0] = try call(Helper(rawValue: i.immediate)!, r, pc: pc - 1)
                    for k in 1...5 { r[k] = 0xdead_beef }  // clobbered
                    continue
                }
                var a = r[dst], b = i.opcode & 0x08 != 0 ? r[src] : imm
                if cls == 0x06 { a &= 0xffff_ffff; b &= 0xffff_ffff }
                let taken: Bool
                switch op {
                case 0x00: taken = true
                case 0x10: taken = a == b
                case 0x20: taken = a > b
                case 0x30: taken = a >= b
                case 0x50: taken = a != b
                case 0xa0: taken = a < b
                case 0xb0: taken = a <= b
                default: throw Failure.unknownInstruction(i, pc: pc - 1)
                }
                if taken { pc += Int(i.offset) }
            default:
                throw Failure.unknownInstruction(i, pc: pc - 1)
            }
        }
    }

    private func keySize(_ fd: Int32) -> Int { sizes[fd]?.key ?? maps[fd]?.keys.first?.count ?? 4 }

    private func size(_ i: Instruction) -> Int { [0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8][i.opcode & 0x18]! }

    private func read(_ address: UInt64, _ size: Int, pc: Int) throws -> UInt64 {
        let bytes = try load(address, size, pc: pc)
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) }
    }

    private func load(_ address: UInt64, _ size: Int, pc: Int) throws -> [UInt8] {
        if address >= Self.context && address < Self.context + 200 {
            let field: UInt64
            switch address - Self.context {
            case 0: field = UInt64(packet.count)   // len: the interpreter's packet has no link header in front
            case 8: field = UInt64(mark)
            case 16: field = UInt64(protocolField)
            case 36: field = UInt64(ingressIndex)
            case 76: field = Self.packetBase
            case 80: field = Self.packetBase + UInt64(packet.count)
            default: throw Failure.badAccess(address, size, pc: pc)
            }
            return (0..<size).map { UInt8(truncatingIfNeeded: field >> (8 * $0)) }
        }
        if address >= Self.packetBase && address + UInt64(size) <= Self.packetBase + UInt64(packet.count) {
            let o = Int(address - Self.packetBase)
            return Array(packet[o..<o + size])
        }
        if address >= Self.stackTop - 512 && address + UInt64(size) <= Self.stackTop {
            let o = Int(address - (Self.stackTop - 512))
            return Array(stack[o..<o + size])
        }
        if address >= Self.valueBase {
            let region = Int((address - Self.valueBase) / 0x1000), o = Int((address - Self.valueBase) % 0x1000)
            if region < values.count, let value = maps[values[region].map]?[values[region].key], o + size <= value.count {
                return Array(value[o..<o + size])
            }
        }
        throw Failure.badAccess(address, size, pc: pc)
    }

    private mutating func write(_ address: UInt64, _ size: Int, _ value: UInt64, pc: Int) throws {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        if address == Self.context + 8 && size == 4 { mark = UInt32(truncatingIfNeeded: value); return }
        if address >= Self.stackTop - 512 && address + UInt64(size) <= Self.stackTop {
            let o = Int(address - (Self.stackTop - 512))
            stack.replaceSubrange(o..<o + size, with: bytes)
            return
        }
        if address >= Self.valueBase {
            let region = Int((address - Self.valueBase) / 0x1000), o = Int((address - Self.valueBase) % 0x1000)
            if region < values.count, var stored = maps[values[region].map]?[values[region].key], o + size <= stored.count {
                stored.replaceSubrange(o..<o + size, with: bytes)
                maps[values[region].map]![values[region].key] = stored
                writes[values[region].map, default: 0] += 1
                return
            }
        }
        throw Failure.badAccess(address, size, pc: pc)
    }

    private mutating func call(_ helper: Helper, _ r: [UInt64], pc: Int) throws -> UInt64 {
        calls.append(helper)
        switch helper {
        case .mapLookupElement:
            let fd = Int32(r[1] - Self.mapBase)
            guard let map = maps[fd] else { throw Failure.badAccess(r[1], 0, pc: pc) }
            let key = try load(r[2], keySize(fd), pc: pc)
            guard map[key] != nil else { return 0 }
            values.append((fd, key))
            return Self.valueBase + UInt64(values.count - 1) * 0x1000
        case .mapUpdateElement:
            let fd = Int32(r[1] - Self.mapBase)
            guard maps[fd] != nil, let valueSize = sizes[fd]?.value ?? maps[fd]?.values.first?.count else {
                throw Failure.badAccess(r[1], 0, pc: pc)
            }
            let key = try load(r[2], keySize(fd), pc: pc), value = try load(r[3], valueSize, pc: pc)
            guard r[4] == 0 else { return UInt64(bitPattern: -22) }   // only BPF_ANY is used
            maps[fd]![key] = value
            writes[fd, default: 0] += 1
            return 0
        case .ktimeGetCoarseNanoseconds:
            return now
        case .checksumDifference:
            // The one's-complement sum of ~from and to (sizes multiples of 4, seed added).
            let from = try load(r[1], Int(r[2]), pc: pc), to = try load(r[3], Int(r[4]), pc: pc)
            var sum = r[5] & 0xffff_ffff
            for k in stride(from: 0, to: from.count, by: 2) { sum += UInt64(~(UInt16(from[k]) << 8 | UInt16(from[k + 1]))) }
            for k in stride(from: 0, to: to.count, by: 2) { sum += UInt64(UInt16(to[k]) << 8 | UInt16(to[k + 1])) }
            while sum > 0xffff_ffff { sum = (sum & 0xffff_ffff) + (sum >> 32) }
            return sum
        case .l3ChecksumReplace, .l4ChecksumReplace:
            let offset = Int(r[2]), flags = r[5]
            let known: UInt64 = helper == .l4ChecksumReplace ? 0xbf : 0x0f   // size, pseudo, mangled 0, IPv6
            guard flags & ~known == 0, flags & 0xf == 4 || (flags & 0xf == 0 && r[3] == 0),
                  offset + 2 <= packet.count else { return UInt64(bitPattern: -14) }
            let old = UInt16(packet[offset]) << 8 | UInt16(packet[offset + 1])
            if helper == .l4ChecksumReplace && flags & 0x20 != 0 && old == 0 { return 0 }
            var sum = UInt64(~old)
            if flags & 0xf == 0 {
                sum += r[4] & 0xffff_ffff   // a bpf_csum_diff result
            } else {
                // from and to as the packet holds them: the register's low bytes in memory order.
                let from = (0..<4).map { UInt8(truncatingIfNeeded: r[3] >> (8 * $0)) }
                let to = (0..<4).map { UInt8(truncatingIfNeeded: r[4] >> (8 * $0)) }
                for k in stride(from: 0, to: 4, by: 2) {
                    sum += UInt64(~(UInt16(from[k]) << 8 | UInt16(from[k + 1])))
                    sum += UInt64(UInt16(to[k]) << 8 | UInt16(to[k + 1]))
                }
            }
            while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
            var new = ~UInt16(sum)
            if helper == .l4ChecksumReplace && flags & 0x20 != 0 && new == 0 { new = 0xffff }
            packet[offset] = UInt8(new >> 8)
            packet[offset + 1] = UInt8(new & 0xff)
            return 0
        case .skbStoreBytes:
            let offset = Int(r[2]), length = Int(r[4])
            guard offset + length <= packet.count else { return UInt64(bitPattern: -14) }
            packet.replaceSubrange(offset..<offset + length, with: try load(r[3], length, pc: pc))
            return 0
        case .skbChangeHead:
            guard r[3] == 0 else { return UInt64(bitPattern: -22) }
            packet.insert(contentsOf: [UInt8](repeating: 0, count: Int(r[2])), at: 0)  // the kernel zeroes what it pushes
            return 0
        case .redirectNeighbour:
            let params = try load(r[2], Int(r[3]), pc: pc)
            redirected = (UInt32(truncatingIfNeeded: r[1]), Array(params[4..<(params[0] == 10 ? 20 : 8)]))  // AF_INET6: 16 bytes
            return 7  // TC_ACT_REDIRECT
        default:
            throw Failure.badAccess(0, 0, pc: pc)
        }
    }
}
