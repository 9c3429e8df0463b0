/// Builds a program from instructions and named jump targets, so a program's logic reads
/// as branches to labels rather than counted offsets; ``finish()`` puts the offsets in.
public struct Assembler: Sendable {
    /// A place in the program a jump can go to.
    public struct Label: Hashable, Sendable {
        let id: Int
    }

    /// Why a program could not be finished.
    public enum Failure: Error, Equatable, Sendable {
        /// A jump names a label that was never placed.
        case unplacedLabel(Int)
        /// A label placed twice.
        case labelPlacedTwice(Int)
        /// A jump farther than a 16-bit offset reaches.
        case jumpTooFar(from: Int, to: Int)
        /// More instructions than the kernel takes in one program (1,000,000 slots).
        case tooLong(Int)
    }

    private var instructions: [Instruction] = []
    /// Jumps waiting for their label's place: index of the jump, label.
    private var pending: [(index: Int, label: Label)] = []
    private var places: [Int: Int] = [:]
    private var labels = 0
    private var twice: Int?

    public init() {}

    /// A new label, placed later with ``place(_:)``.
    public mutating func label() -> Label {
        labels += 1
        return Label(id: labels)
    }

    /// The next instruction is `label`'s.
    public mutating func place(_ label: Label) {
        if places[label.id] != nil { twice = twice ?? label.id }
        places[label.id] = instructions.count
    }

    /// Appends instructions as they are.
    public mutating func emit(_ instruction: Instruction) { instructions.append(instruction) }

    /// Appends instructions as they are.
    public mutating func emit(_ sequence: [Instruction]) { instructions += sequence }

    /// Appends `jump`, whose offset becomes the distance to `label`.
    public mutating func emit(_ jump: Instruction, to label: Label) {
        precondition(jump.isJump, "not a jump: \(jump)")
        pending.append((instructions.count, label))
        instructions.append(jump)
    }

    /// `goto label`.
    public mutating func jump(to label: Label) { emit(.jump(offset: 0), to: label) }

    /// Instructions so far.
    public var count: Int { instructions.count }

    /// The program with every jump's offset set.
    public func finish() throws(Failure) -> [Instruction] {
        if let twice { throw .labelPlacedTwice(twice) }
        guard instructions.count <= 1_000_000 else { throw .tooLong(instructions.count) }
        var result = instructions
        for (index, label) in pending {
            guard let target = places[label.id] else { throw .unplacedLabel(label.id) }
            let distance = target - index - 1
            guard let offset = Int16(exactly: distance) else { throw .jumpTooFar(from: index, to: target) }
            result[index].offset = offset
        }
        return result
    }

    /// The bytes of `program` as the kernel takes them (`insns` of BPF_PROG_LOAD).
    public static func bytes(_ program: [Instruction]) -> [UInt8] { program.flatMap(\.encoded) }
}
