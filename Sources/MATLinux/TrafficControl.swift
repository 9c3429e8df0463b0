/// rtnetlink's traffic-control messages for attaching a BPF program the way kernels
/// before tcx (Linux 6.6) take it: a `clsact` qdisc on the device and a direct-action
/// `bpf` filter at its ingress or egress hook (what `tc qdisc add dev X clsact` and
/// `tc filter add dev X ingress prio P handle H bpf da fd F` send). Pure encoding and
/// decoding: ``BPFSystem/attach(program:name:interfaceIndex:point:)`` sends them through
/// a ``RouteRequestSocket``. Numbers are in host order, as netlink carries them; each
/// message's sequence number is left 0 for the socket to fill in.
enum TrafficControl {
    /// A filter of ours: where it is and what tells it from anyone else's.
    struct Filter: Hashable, Sendable {
        var interfaceIndex: UInt32
        var hook: Hook
        var priority: UInt16
        var handle: UInt32 = TrafficControl.handle
    }

    /// The clsact qdisc's two hooks, as a filter's parent (TC_H_MAKE(TC_H_CLSACT,
    /// TC_H_MIN_INGRESS or TC_H_MIN_EGRESS), linux/pkt_sched.h).
    enum Hook: UInt32, Sendable, CaseIterable {
        case ingress = 0xFFFF_FFF2, egress = 0xFFFF_FFF3
    }

    /// The priorities our filters take, the first free one from here up: away from the
    /// 49152 (0xC000) and down that tc gives filters added without one.
    static let firstPriority: UInt16 = 0x4D41
    /// Our filters' handle ("MAT"): with the priority, what `tc filter del` names.
    static let handle: UInt32 = 0x4D_4154
    /// How the name of every program matd attaches begins (TCA_BPF_NAME): with the handle
    /// and the priorities, what tells a filter a killed matd left from anyone else's.
    static let namePrefix = "mat_"

    /// rtnetlink message types (linux/rtnetlink.h).
    static let newQdisc: UInt16 = 36, deleteQdisc: UInt16 = 37
    static let newFilter: UInt16 = 44, deleteFilter: UInt16 = 45, getFilter: UInt16 = 46
    /// Netlink header flags (linux/netlink.h).
    static let request: UInt16 = 0x1, acknowledge: UInt16 = 0x4, dump: UInt16 = 0x300
    static let exclusive: UInt16 = 0x200, create: UInt16 = 0x400
    /// The clsact qdisc's parent (TC_H_CLSACT) and handle (ffff:).
    static let clsactParent: UInt32 = 0xFFFF_FFF1, clsactHandle: UInt32 = 0xFFFF_0000
    /// Attributes: TCA_KIND, TCA_OPTIONS; within a bpf filter's options TCA_BPF_FD,
    /// TCA_BPF_NAME, TCA_BPF_FLAGS (linux/pkt_cls.h).
    static let kindAttribute: UInt16 = 1, optionsAttribute: UInt16 = 2
    static let bpfFD: UInt16 = 6, bpfName: UInt16 = 7, bpfFlags: UInt16 = 8
    /// TCA_BPF_FLAG_ACT_DIRECT: the program's return value is the verdict (what tcx does).
    static let directAction: UInt32 = 1
    /// ETH_P_ALL in network order, as tcm_info's low half carries a filter's protocol.
    static let allProtocols = UInt16(0x0003).bigEndian

    /// Adds a clsact qdisc to the device, refused (EEXIST) when it has one: then it is not ours.
    static func addClsact(interfaceIndex: UInt32) -> [UInt8] {
        var message = Message(type: newQdisc, flags: request | acknowledge | create | exclusive)
        message.header(interfaceIndex: interfaceIndex, handle: clsactHandle, parent: clsactParent, info: 0)
        message.attribute(kindAttribute, string: "clsact")
        return message.bytes
    }

    /// Deletes the device's clsact qdisc, and with it every filter it still holds.
    static func deleteClsact(interfaceIndex: UInt32) -> [UInt8] {
        var message = Message(type: deleteQdisc, flags: request | acknowledge)
        message.header(interfaceIndex: interfaceIndex, handle: clsactHandle, parent: clsactParent, info: 0)
        message.attribute(kindAttribute, string: "clsact")
        return message.bytes
    }

    /// Adds `filter` running `program` (its file descriptor) as a direct-action bpf filter
    /// named `name`; one of ours left from before (a matd killed) is replaced.
    static func addFilter(_ filter: Filter, program: Int32, name: String) -> [UInt8] {
        var message = Message(type: newFilter, flags: request | acknowledge | create)
        message.header(filter)
        message.attribute(kindAttribute, string: "bpf")
        let options = message.beginNested(optionsAttribute)
        message.attribute(bpfFD, UInt32(bitPattern: program))
        message.attribute(bpfName, string: name)
        message.attribute(bpfFlags, directAction)
        message.endNested(options)
        return message.bytes
    }

    /// Deletes exactly `filter` (its priority and handle), not the others at its hook.
    static func deleteFilter(_ filter: Filter) -> [UInt8] {
        var message = Message(type: deleteFilter, flags: request | acknowledge)
        message.header(filter)
        message.attribute(kindAttribute, string: "bpf")
        return message.bytes
    }

    /// Asks for every filter at `hook` of the device (a dump: the answer is a message a
    /// filter, ``Listed``, and one more a priority that has any).
    static func listFilters(interfaceIndex: UInt32, hook: Hook) -> [UInt8] {
        var message = Message(type: getFilter, flags: request | dump)
        message.header(interfaceIndex: interfaceIndex, handle: 0, parent: hook.rawValue, info: 0)
        return message.bytes
    }

    /// A filter of a dump's answer.
    struct Listed: Equatable, Sendable {
        var priority: UInt16
        /// 0 for the message that stands for a priority's classifier rather than a filter.
        var handle: UInt32
        var kind: String
        /// TCA_BPF_NAME of a bpf filter.
        var name: String?
    }

    /// Whether `listed` is a filter matd added (a bpf filter with our handle, one of our
    /// priorities and one of our names): what `matd cleanup` deletes, and nothing else.
    static func isOurs(_ listed: Listed) -> Bool {
        listed.kind == "bpf" && listed.handle == handle && listed.priority >= firstPriority
            && listed.name?.hasPrefix(namePrefix) == true
    }

    /// The filter `message` (one whole netlink message of a dump's answer) describes; nil
    /// for another kind of message or one too short for what it says it holds.
    static func listed(_ message: UnsafeRawBufferPointer) -> Listed? {
        let headers = 16 + 20
        guard message.count >= headers, word16(message, 4) == newFilter else { return nil }
        let length = min(Int(word32(message, 0)), message.count)
        guard length >= headers else { return nil }
        var listed = Listed(priority: UInt16(word32(message, 32) >> 16), handle: word32(message, 24), kind: "")
        forEachAttribute(in: message, from: headers, to: length) { type, start, end in
            if type == kindAttribute { listed.kind = string(message, start, end) }
            if type == optionsAttribute {
                forEachAttribute(in: message, from: start, to: end) { inner, innerStart, innerEnd in
                    if inner == bpfName { listed.name = string(message, innerStart, innerEnd) }
                }
            }
        }
        return listed
    }

    /// Calls `body` with each attribute's type (without the nested and byte-order bits)
    /// and payload range between `start` and `end`, stopping at the first that does not fit.
    private static func forEachAttribute(in bytes: UnsafeRawBufferPointer, from start: Int, to end: Int,
                                         _ body: (UInt16, Int, Int) -> Void) {
        var offset = start
        while offset + 4 <= end {
            let length = Int(word16(bytes, offset))
            guard length >= 4, offset + length <= end else { return }
            body(word16(bytes, offset + 2) & 0x3FFF, offset + 4, offset + length)
            offset += (length + 3) & ~3
        }
    }

    private static func word16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
    }

    private static func word32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
    }

    /// The string in `start..<end`, up to its terminating zero.
    private static func string(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> String {
        String(decoding: bytes[start..<end].prefix { $0 != 0 }, as: UTF8.self)
    }

    /// A netlink message being written: header, struct tcmsg, attributes (each padded to 4).
    private struct Message {
        private(set) var bytes: [UInt8] = []

        init(type: UInt16, flags: UInt16) {
            append(UInt32(0))   // nlmsg_len, set as the message grows
            append(type)
            append(flags)
            append(UInt32(0))   // nlmsg_seq: the socket's
            append(UInt32(0))   // nlmsg_pid: the kernel's to fill in
        }

        /// struct tcmsg: family AF_UNSPEC, padding, ifindex, handle, parent, info.
        mutating func header(interfaceIndex: UInt32, handle: UInt32, parent: UInt32, info: UInt32) {
            append(UInt32(0))
            append(interfaceIndex)
            append(handle)
            append(parent)
            append(info)
        }

        /// A filter's tcmsg: its priority and protocol (all) make tcm_info.
        mutating func header(_ filter: Filter) {
            header(interfaceIndex: filter.interfaceIndex, handle: filter.handle, parent: filter.hook.rawValue,
                   info: UInt32(filter.priority) << 16 | UInt32(TrafficControl.allProtocols))
        }

        mutating func attribute(_ type: UInt16, _ value: UInt32) {
            append(UInt16(8))
            append(type)
            append(value)
        }

        /// A zero-terminated string attribute.
        mutating func attribute(_ type: UInt16, string: String) {
            let text = Array(string.utf8) + [0]
            append(UInt16(4 + text.count))
            append(type)
            bytes += text
            pad()
        }

        /// Starts a nested attribute; ``endNested(_:)`` with what this returns sets its length.
        mutating func beginNested(_ type: UInt16) -> Int {
            let start = bytes.count
            append(UInt16(0))
            append(type)
            return start
        }

        mutating func endNested(_ start: Int) {
            set(UInt16(bytes.count - start), at: start)
        }

        private mutating func pad() {
            while bytes.count % 4 != 0 { bytes.append(0) }
            set(UInt32(bytes.count), at: 0)
        }

        private mutating func append<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value) { bytes += $0 }
            set(UInt32(bytes.count), at: 0)
        }

        private mutating func set<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value) { for (i, byte) in $0.enumerated() { bytes[offset + i] = byte } }
        }
    }
}
