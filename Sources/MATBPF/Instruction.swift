/// A register of the BPF machine (Documentation/bpf/standardization/instruction-set.rst):
/// r0 holds return values, r1-r5 a helper's arguments (clobbered by every call), r6-r9
/// survive calls, r10 is the read-only frame pointer.
public enum Register: UInt8, Sendable, CaseIterable {
    case r0 = 0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10
}

/// The access size of a load or store.
public enum Size: UInt8, Sendable {
    case word = 0x00, half = 0x08, byte = 0x10, double = 0x18

    /// Bytes moved.
    public var bytes: Int {
        switch self {
        case .byte: 1
        case .half: 2
        case .word: 4
        case .double: 8
        }
    }
}

/// An arithmetic operation (the `code` field of an ALU instruction).
public enum ALUOperation: UInt8, Sendable {
    case add = 0x00, sub = 0x10, mul = 0x20, div = 0x30, or = 0x40, and = 0x50, lsh = 0x60, rsh = 0x70
    case mod = 0x90, xor = 0xa0, mov = 0xb0, arsh = 0xc0
}

/// A jump's condition (the `code` field of a JMP instruction), unsigned unless named signed.
public enum Condition: UInt8, Sendable {
    case eq = 0x10, gt = 0x20, ge = 0x30, set = 0x40, ne = 0x50, sgt = 0x60, sge = 0x70
    case lt = 0xa0, le = 0xb0, slt = 0xc0, sle = 0xd0
}

/// One 8-byte BPF instruction, as the kernel reads it (struct bpf_insn, little endian:
/// opcode, dst register in the low nibble and src in the high one, 16-bit offset, 32-bit
/// immediate). A 64-bit immediate load takes two (``Instruction/loadImmediate64(_:_:)``).
public struct Instruction: Equatable, Sendable, CustomStringConvertible {
    public var opcode: UInt8
    public var destination: Register
    public var source: Register
    public var offset: Int16
    public var immediate: Int32

    public init(opcode: UInt8, destination: Register = .r0, source: Register = .r0, offset: Int16 = 0, immediate: Int32 = 0) {
        self.opcode = opcode
        self.destination = destination
        self.source = source
        self.offset = offset
        self.immediate = immediate
    }

    // Instruction classes and modes (the opcode's low three bits; bits 5-7 for memory).
    static let classLD: UInt8 = 0x00, classLDX: UInt8 = 0x01, classST: UInt8 = 0x02, classSTX: UInt8 = 0x03
    static let classALU: UInt8 = 0x04, classJMP: UInt8 = 0x05, classJMP32: UInt8 = 0x06, classALU64: UInt8 = 0x07
    static let modeIMM: UInt8 = 0x00, modeMEM: UInt8 = 0x60
    static let sourceK: UInt8 = 0x00, sourceX: UInt8 = 0x08
    static let opCall: UInt8 = 0x80, opExit: UInt8 = 0x90, opJA: UInt8 = 0x00
    /// `src` of a 64-bit immediate load whose immediate is a map's file descriptor.
    public static let pseudoMapFD: Register = .r1

    /// The 8 bytes the kernel reads.
    public var encoded: [UInt8] {
        let imm = UInt32(bitPattern: immediate), off = UInt16(bitPattern: offset)
        return [opcode, source.rawValue << 4 | destination.rawValue, UInt8(off & 0xff), UInt8(off >> 8),
                UInt8(imm & 0xff), UInt8(imm >> 8 & 0xff), UInt8(imm >> 16 & 0xff), UInt8(imm >> 24)]
    }

    public var description: String {
        "op=0x\(String(opcode, radix: 16)) dst=\(destination) src=\(source) off=\(offset) imm=\(immediate)"
    }

    // MARK: Arithmetic

    /// `dst op= imm` on 64 bits.
    public static func alu64(_ operation: ALUOperation, _ dst: Register, _ imm: Int32) -> Instruction {
        Instruction(opcode: classALU64 | sourceK | operation.rawValue, destination: dst, immediate: imm)
    }

    /// `dst op= src` on 64 bits.
    public static func alu64(_ operation: ALUOperation, _ dst: Register, _ src: Register) -> Instruction {
        Instruction(opcode: classALU64 | sourceX | operation.rawValue, destination: dst, source: src)
    }

    /// `dst op= imm` on the low 32 bits (the high ones cleared).
    public static func alu32(_ operation: ALUOperation, _ dst: Register, _ imm: Int32) -> Instruction {
        Instruction(opcode: classALU | sourceK | operation.rawValue, destination: dst, immediate: imm)
    }

    /// `dst op= src` on the low 32 bits (the high ones cleared).
    public static func alu32(_ operation: ALUOperation, _ dst: Register, _ src: Register) -> Instruction {
        Instruction(opcode: classALU | sourceX | operation.rawValue, destination: dst, source: src)
    }

    /// `dst = imm` (sign-extended to 64 bits).
    public static func mov(_ dst: Register, _ imm: Int32) -> Instruction { alu64(.mov, dst, imm) }

    /// `dst = src`.
    public static func mov(_ dst: Register, _ src: Register) -> Instruction { alu64(.mov, dst, src) }

    /// `dst = imm` for a full 64-bit value: two instruction slots.
    public static func loadImmediate64(_ dst: Register, _ value: UInt64) -> [Instruction] {
        [Instruction(opcode: classLD | Size.double.rawValue | modeIMM, destination: dst,
                     immediate: Int32(bitPattern: UInt32(truncatingIfNeeded: value))),
         Instruction(opcode: 0, immediate: Int32(bitPattern: UInt32(truncatingIfNeeded: value >> 32)))]
    }

    /// `dst = the map whose file descriptor is fd` (the kernel puts the map's address there
    /// at load time): two instruction slots.
    public static func loadMap(_ dst: Register, fd: Int32) -> [Instruction] {
        [Instruction(opcode: classLD | Size.double.rawValue | modeIMM, destination: dst, source: pseudoMapFD, immediate: fd),
         Instruction(opcode: 0)]
    }

    // MARK: Memory

    /// `dst = *(size *)(src + offset)`.
    public static func load(_ size: Size, _ dst: Register, _ src: Register, _ offset: Int16) -> Instruction {
        Instruction(opcode: classLDX | modeMEM | size.rawValue, destination: dst, source: src, offset: offset)
    }

    /// `*(size *)(dst + offset) = src`.
    public static func store(_ size: Size, _ dst: Register, _ offset: Int16, _ src: Register) -> Instruction {
        Instruction(opcode: classSTX | modeMEM | size.rawValue, destination: dst, source: src, offset: offset)
    }

    /// `*(size *)(dst + offset) = imm`.
    public static func store(_ size: Size, _ dst: Register, _ offset: Int16, immediate: Int32) -> Instruction {
        Instruction(opcode: classST | modeMEM | size.rawValue, destination: dst, offset: offset, immediate: immediate)
    }

    // MARK: Control

    /// Calls helper function `helper` (arguments in r1-r5, result in r0).
    public static func call(_ helper: Helper) -> Instruction {
        Instruction(opcode: classJMP | opCall, immediate: helper.rawValue)
    }

    /// Returns r0.
    public static let exit = Instruction(opcode: classJMP | opExit)

    /// `goto +offset` (in instructions, from the next one).
    public static func jump(offset: Int16) -> Instruction { Instruction(opcode: classJMP | opJA, offset: offset) }

    /// `if dst cond imm goto +offset` (64-bit compare).
    public static func jump(_ condition: Condition, _ dst: Register, _ imm: Int32, offset: Int16) -> Instruction {
        Instruction(opcode: classJMP | sourceK | condition.rawValue, destination: dst, offset: offset, immediate: imm)
    }

    /// `if dst cond src goto +offset` (64-bit compare).
    public static func jump(_ condition: Condition, _ dst: Register, _ src: Register, offset: Int16) -> Instruction {
        Instruction(opcode: classJMP | sourceX | condition.rawValue, destination: dst, source: src, offset: offset)
    }

    /// `if (u32)dst cond imm goto +offset` (32-bit compare: an address as the packet holds it).
    public static func jump32(_ condition: Condition, _ dst: Register, _ imm: Int32, offset: Int16) -> Instruction {
        Instruction(opcode: classJMP32 | sourceK | condition.rawValue, destination: dst, offset: offset, immediate: imm)
    }

    /// `if (u32)dst cond (u32)src goto +offset`.
    public static func jump32(_ condition: Condition, _ dst: Register, _ src: Register, offset: Int16) -> Instruction {
        Instruction(opcode: classJMP32 | sourceX | condition.rawValue, destination: dst, source: src, offset: offset)
    }

    /// Whether this is a jump with an offset (not a call or an exit).
    var isJump: Bool {
        let cls = opcode & 0x07
        let op = opcode & 0xf0
        return (cls == Self.classJMP || cls == Self.classJMP32) && op != Self.opCall && op != Self.opExit
    }
}

/// Helper functions a tc program calls (enum bpf_func_id).
public enum Helper: Int32, Sendable {
    case mapLookupElement = 1
    case mapUpdateElement = 2
    case skbStoreBytes = 9
    case l3ChecksumReplace = 10
    case l4ChecksumReplace = 11
    case redirect = 23
    case checksumDifference = 28
    case skbChangeHead = 43
    case redirectNeighbour = 152
    case ktimeGetCoarseNanoseconds = 160
}
