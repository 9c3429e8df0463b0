import MATBPF
import Testing

@Suite struct InstructionTests {
    /// Each instruction's bytes as clang 21 (`-target bpf`) emitted them for
    /// Tools/lab/tc-datapath/tc-datapath.bpf.c, read with llvm-objdump -d.
    @Test func encodingMatchesClangsOutput() {
        let cases: [(Instruction, String)] = [
            (.alu32(.mov, .r8, 0), "b408000000000000"),                   // w8 = 0
            (.store(.word, .r10, -4, .r8), "638afcff00000000"),           // *(u32 *)(r10 - 4) = r8
            (.load(.word, .r2, .r1, 16), "6112100000000000"),            // r2 = *(u32 *)(r1 + 16)
            (.jump32(.ne, .r2, 8, offset: 201), "5602c90008000000"),      // if w2 != 8 goto +201
            (.mov(.r3, .r6), "bf63000000000000"),                         // r3 = r6
            (.alu64(.add, .r3, 20), "0703000014000000"),                  // r3 += 20
            (.jump(.gt, .r3, .r2, offset: 196), "2d23c40000000000"),      // if r3 > r2 goto +196
            (.load(.byte, .r2, .r6, 0), "7162000000000000"),              // r2 = *(u8 *)(r6 + 0)
            (.alu32(.and, .r2, 15), "540200000f000000"),                  // w2 &= 15
            (.load(.half, .r2, .r6, 6), "6962060000000000"),              // r2 = *(u16 *)(r6 + 6)
            (.alu32(.and, .r2, 65343), "540200003fff0000"),               // w2 &= 65343
            (.alu64(.add, .r2, -4), "07020000fcffffff"),                  // r2 += -4
            (.call(.mapLookupElement), "8500000001000000"),              // call 1
            (.jump(.eq, .r0, 0, offset: 183), "1500b70000000000"),        // if r0 == 0 goto +183
            (.jump32(.ne, .r2, .r1, offset: 180), "5e12b40000000000"),    // if w2 != w1 goto +180
            (.store(.double, .r10, -40, .r0), "7b0ad8ff00000000"),        // *(u64 *)(r10 - 40) = r0
            (.mov(.r6, 20), "b706000014000000"),                          // r6 = 20
            (.call(.l4ChecksumReplace), "850000000b000000"),             // call 11
            (.jump(offset: 136), "0500880000000000"),                     // goto +136
            (.alu32(.or, .r1, 8), "4401000008000000"),                    // w1 |= 8
            (.load(.double, .r1, .r0, 0), "7901000000000000"),            // r1 = *(u64 *)(r0 + 0)
            (.store(.half, .r10, -24, .r1), "6b1ae8ff00000000"),          // *(u16 *)(r10 - 24) = r1
            (.alu32(.lsh, .r1, 8), "6401000008000000"),                   // w1 <<= 8
            (.alu32(.or, .r1, .r2), "4c21000000000000"),                  // w1 |= w2
            (.exit, "9500000000000000"),
        ]
        for (instruction, expected) in cases {
            #expect(hex(instruction.encoded) == expected, "\(instruction)")
        }
    }

    @Test func sixtyFourBitImmediatesTakeTwoSlots() {
        // clang: "18 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00  r1 = 0 ll" (a map, before relocation).
        #expect(hex(Instruction.loadImmediate64(.r1, 0).flatMap(\.encoded)) == "18010000000000000000000000000000")
        #expect(hex(Instruction.loadImmediate64(.r3, 0x1122_3344_5566_7788).flatMap(\.encoded))
                == "18030000887766550000000044332211")
        // A map's file descriptor: src register 1 (BPF_PSEUDO_MAP_FD).
        #expect(hex(Instruction.loadMap(.r1, fd: 7).flatMap(\.encoded)) == "18110000070000000000000000000000")
    }

    @Test func storeOfAnImmediate() {
        // *(u32 *)(r10 - 40) = 2: class ST, mode MEM, size W.
        #expect(hex(Instruction.store(.word, .r10, -40, immediate: 2).encoded) == "620ad8ff02000000")
    }

    private func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}
