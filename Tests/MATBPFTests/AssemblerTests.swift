import MATBPF
import Testing

@Suite struct AssemblerTests {
    @Test func jumpsLandOnTheirLabels() throws {
        var a = Assembler()
        let forward = a.label(), back = a.label()
        a.place(back)
        a.emit(.mov(.r0, 1))                          // 0
        a.emit(.jump(.eq, .r1, 0, offset: 0), to: forward) // 1 -> 4
        a.emit(.mov(.r0, 2))                          // 2
        a.jump(to: back)                              // 3 -> 0
        a.place(forward)
        a.emit(.exit)                                 // 4
        let program = try a.finish()
        #expect(program.count == 5)
        #expect(program[1].offset == 2)
        #expect(program[3].offset == -4)
        #expect(program[4] == .exit)
    }

    @Test func aJumpToALabelNeverPlacedIsRefused() {
        var a = Assembler()
        let nowhere = a.label()
        a.jump(to: nowhere)
        a.emit(.exit)
        #expect(throws: Assembler.Failure.unplacedLabel(1)) { try a.finish() }
    }

    @Test func aLabelPlacedTwiceIsRefused() {
        var a = Assembler()
        let twice = a.label()
        a.place(twice)
        a.emit(.exit)
        a.place(twice)
        a.emit(.exit)
        #expect(throws: Assembler.Failure.labelPlacedTwice(1)) { try a.finish() }
    }

    @Test func aJumpBeyondSixteenBitsIsRefused() {
        var a = Assembler()
        let far = a.label()
        a.jump(to: far)
        for _ in 0..<40_000 { a.emit(.mov(.r0, 0)) }
        a.place(far)
        a.emit(.exit)
        #expect(throws: Assembler.Failure.jumpTooFar(from: 0, to: 40_001)) { try a.finish() }
    }
}
