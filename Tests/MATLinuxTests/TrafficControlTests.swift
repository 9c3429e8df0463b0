@testable import MATLinux
import Testing

/// The tc messages of the BPF datapath's attach on kernels without tcx, byte for byte
/// (struct nlmsghdr, struct tcmsg, attributes as linux/rtnetlink.h and pkt_cls.h lay them
/// out, little-endian host), and the reading of a filter dump's answer.
@Suite struct TrafficControlTests {
    /// Bytes from hex, spaces ignored.
    func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.filter { !$0.isWhitespace })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    let filter = TrafficControl.Filter(interfaceIndex: 7, hook: .ingress, priority: 0x4D41)

    @Test func theClsactQdiscIsAddedOnlyWhereThereIsNone() {
        // length 48, RTM_NEWQDISC, REQUEST|ACK|EXCL|CREATE; tcmsg: ifindex 7, handle ffff:,
        // parent TC_H_CLSACT; TCA_KIND "clsact" padded to 4.
        #expect(TrafficControl.addClsact(interfaceIndex: 7) == bytes("""
            30000000 2400 0506 00000000 00000000
            00000000 07000000 0000ffff f1ffffff 00000000
            0b00 0100 636c7361 637400 00
            """))
        #expect(TrafficControl.deleteClsact(interfaceIndex: 7) == bytes("""
            30000000 2500 0500 00000000 00000000
            00000000 07000000 0000ffff f1ffffff 00000000
            0b00 0100 636c7361 637400 00
            """))
    }

    @Test func aFilterIsADirectActionBPFFilterWithOurPriorityAndHandle() {
        // length 76, RTM_NEWTFILTER, REQUEST|ACK|CREATE (no EXCL: a filter of ours left
        // from a killed matd is replaced); tcmsg: handle "MAT", parent clsact ingress,
        // info priority 0x4d41 and ETH_P_ALL in network order; TCA_KIND "bpf"; TCA_OPTIONS:
        // TCA_BPF_FD 9, TCA_BPF_NAME "mat_in4", TCA_BPF_FLAGS ACT_DIRECT.
        #expect(TrafficControl.addFilter(filter, program: 9, name: "mat_in4") == bytes("""
            4c000000 2c00 0504 00000000 00000000
            00000000 07000000 54414d00 f2ffffff 0003414d
            0800 0100 62706600
            2000 0200
              0800 0600 09000000
              0c00 0700 6d61745f 696e3400
              0800 0800 01000000
            """))
    }

    @Test func deletingNamesExactlyOurFilter() {
        var egress = filter
        egress.hook = .egress
        egress.priority = 0x4D42
        #expect(TrafficControl.deleteFilter(egress) == bytes("""
            2c000000 2d00 0500 00000000 00000000
            00000000 07000000 54414d00 f3ffffff 0003424d
            0800 0100 62706600
            """))
    }

    @Test func listingIsADumpOfOneHook() {
        #expect(TrafficControl.listFilters(interfaceIndex: 3, hook: .egress) == bytes("""
            24000000 2e00 0103 00000000 00000000
            00000000 03000000 00000000 f3ffffff 00000000
            """))
    }

    /// What the kernel answers for one of our filters: kind, nested options with the name.
    var answer: [UInt8] {
        bytes("""
            54000000 2c00 0200 05000000 00000000
            00000000 07000000 54414d00 f2ffffff 0003414d
            0800 0100 62706600
            2000 0280
              0800 0800 01000000
              0c00 0700 6d61745f 696e3400
              0800 0b00 2a000000
            0800 0c00 00000000
            """)
    }

    @Test func aListedFilterTellsItsPriorityHandleKindAndName() {
        let listed = answer.withUnsafeBytes { TrafficControl.listed($0) }
        #expect(listed == TrafficControl.Listed(priority: 0x4D41, handle: 0x4D_4154, kind: "bpf", name: "mat_in4"))
        // The message for a priority's classifier itself: handle 0, no options.
        var head = Array(answer[0..<44])
        head[0] = 44
        head[24...27] = [0, 0, 0, 0]
        #expect(head.withUnsafeBytes { TrafficControl.listed($0) } == TrafficControl.Listed(priority: 0x4D41, handle: 0, kind: "bpf"))
    }

    /// What `matd cleanup` deletes: a bpf filter with our handle, priority and name, and
    /// nothing that differs from one in any of them.
    @Test func onlyAFilterWithOurHandlePriorityAndNameIsOurs() {
        let ours = TrafficControl.Listed(priority: 0x4D42, handle: 0x4D_4154, kind: "bpf", name: "mat_flows4")
        #expect(TrafficControl.isOurs(ours))
        var others: [TrafficControl.Listed] = []
        for change in [{ $0.priority = 0x4D40 }, { $0.handle = 1 }, { $0.handle = 0 }, { $0.kind = "u32" },
                       { $0.name = "cilium_in" }, { $0.name = nil }] as [(inout TrafficControl.Listed) -> Void] {
            var other = ours
            change(&other)
            others.append(other)
        }
        #expect(others.allSatisfy { !TrafficControl.isOurs($0) }, "\(others)")
    }

    @Test func aShortOrLyingAnswerIsReadNoFurtherThanItGoes() {
        for count in 0..<answer.count {
            let cut = Array(answer[0..<count])
            let listed = cut.withUnsafeBytes { TrafficControl.listed($0) }
            #expect((listed == nil) == (count < 36), "cut at \(count)")
        }
        var lying = answer
        lying[44] = 0xFF   // the options say 255 bytes: the walk stops there
        #expect(lying.withUnsafeBytes { TrafficControl.listed($0) }?.name == nil)
        var other = answer
        other[4] = 36   // a qdisc, not a filter
        #expect(other.withUnsafeBytes { TrafficControl.listed($0) } == nil)
    }
}
