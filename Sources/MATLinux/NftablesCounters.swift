#if canImport(Glibc)
import Glibc
#endif
import CMnl
import MATSystem

/// Reads nftables' named counters over nfnetlink (`NFT_MSG_GETOBJ`), through libmnl.
///
/// nft 1.0.6 reads every element of every set in a table before it lists anything in it
/// (`list counters`, `list counter`, `list table`): 1.5 s beside two maps of 100,000
/// elements. The kernel dumps the counter objects alone, filtered by table and type, in
/// milliseconds whatever the sets hold (docs/benchmarks.md, "Scale").
public enum NftablesCounters {
    /// What one named counter has counted.
    public struct Value: Equatable, Sendable {
        public var packets: UInt64
        public var bytes: UInt64

        public init(packets: UInt64, bytes: UInt64) {
            self.packets = packets
            self.bytes = bytes
        }
    }

    /// The named counters of `family`'s (`ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`)
    /// table `table`, by name: empty when the table is not there or has none. Opens a
    /// netlink socket of its own in the calling thread's network namespace, so any thread
    /// may call it.
    public static func read(family: String, table: String) throws(SystemError) -> [String: Value] {
        var counters: [String: Value] = [:]
        try dump("read the counters of nftables table \(family) \(table)", family: family, request: NFT_MSG_GETOBJ.rawValue,
                 attributes: { message in
                     mnl_attr_put_strz(message, UInt16(NFTA_OBJ_TABLE.rawValue), table)
                     mnl_attr_put_u32(message, UInt16(NFTA_OBJ_TYPE.rawValue), UInt32(NFT_OBJECT_COUNTER).bigEndian)
                 }, datagram: { datagram, sequence, portID in
                     let part = parse(datagram, sequence: sequence, portID: portID)
                     counters.merge(part.counters) { _, new in new }
                     return part.end
                 })
        return counters
    }

    /// Sends a dump request of nftables message type `request` for `family`'s tables,
    /// with the attributes `attributes` puts in, and hands each datagram of the answer to
    /// `datagram` (with the request's sequence and port) until it says the dump ended.
    /// Opens a netlink socket of its own in the calling thread's network namespace, so any
    /// thread may call it. `what` names the reading in errors.
    static func dump(_ what: String, family: String, request: UInt32,
                     attributes: (UnsafeMutablePointer<nlmsghdr>) -> Void,
                     datagram: (UnsafeRawBufferPointer, UInt32, UInt32) -> End) throws(SystemError) {
        guard let protocolFamily = families[family] else { throw SystemError(what, detail: "unknown family \(family)") }
        guard let socket = mnl_socket_open2(NETLINK_NETFILTER, Int32(SOCK_CLOEXEC.rawValue)) else {
            throw SystemError(what, errno: errno)
        }
        defer { mnl_socket_close(socket) }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else { throw SystemError(what, errno: errno) }
        // A dump's datagrams are at most a page or two; libmnl's MNL_SOCKET_DUMP_SIZE.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 32_768, alignment: MemoryLayout<nlmsghdr>.alignment)
        defer { buffer.deallocate() }
        let base = buffer.baseAddress!
        memset(base, 0, buffer.count)
        guard let message = mnl_nlmsg_put_header(base) else { throw SystemError(what, detail: "no buffer") }
        message.pointee.nlmsg_type = messageType(UInt16(request))
        message.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
        let sequence = UInt32(truncatingIfNeeded: WallClock.seconds())
        message.pointee.nlmsg_seq = sequence
        let header = mnl_nlmsg_put_extra_header(message, MemoryLayout<nfgenmsg>.size)!.assumingMemoryBound(to: nfgenmsg.self)
        header.pointee.nfgen_family = protocolFamily
        header.pointee.version = UInt8(NFNETLINK_V0)
        header.pointee.res_id = 0
        attributes(message)
        guard mnl_socket_sendto(socket, message, Int(message.pointee.nlmsg_len)) >= 0 else { throw SystemError(what, errno: errno) }
        let portID = mnl_socket_get_portid(socket)
        while true {
            let count = receiveRetryingInterrupts(socket, into: buffer)
            guard count >= 0 else { throw SystemError(what, errno: errno) }
            switch datagram(UnsafeRawBufferPointer(start: base, count: count), sequence, portID) {
            case .more: continue
            case .done: return
            case .failed(let error): throw SystemError(what, errno: error)
            case .malformed(let detail): throw SystemError(what, detail: detail)
            }
        }
    }

    /// Where a dump stands after one datagram.
    enum End: Equatable {
        /// More datagrams follow.
        case more
        /// NLMSG_DONE: the dump is complete.
        case done
        /// The kernel answered with an error (a positive errno).
        case failed(Int32)
        /// The datagram was not a well-formed part of the answer.
        case malformed(String)
    }

    /// The counters in one datagram of a dump answering request `sequence` from `portID`,
    /// and whether the dump ends there. Safe on any bytes: a message or attribute whose
    /// length does not fit ends the walk as malformed; messages of other types, and
    /// attributes of other types or sizes, are skipped.
    static func parse(_ datagram: UnsafeRawBufferPointer, sequence: UInt32, portID: UInt32) -> (counters: [String: Value], end: End) {
        var counters: [String: Value] = [:]
        let end = walk(datagram, sequence: sequence, portID: portID, type: messageType(UInt16(NFT_MSG_NEWOBJ.rawValue))) { payload in
            if let (name, value) = counter(in: payload) { counters[name] = value }
        }
        return (counters, end)
    }

    /// Hands `body` the payload of each message of nfnetlink type `type` in one datagram
    /// of a dump answering request `sequence` from `portID`, and says whether the dump
    /// ends there. Safe on any bytes: a message whose length does not fit ends the walk as
    /// malformed; messages of other types or requests are skipped.
    static func walk(_ datagram: UnsafeRawBufferPointer, sequence: UInt32, portID: UInt32, type: UInt16,
                     _ body: (UnsafeRawBufferPointer) -> Void) -> End {
        var offset = 0
        while offset < datagram.count {
            guard datagram.count - offset >= headerSize else { return .malformed("a truncated message header") }
            let header = datagram.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self)
            let length = Int(header.nlmsg_len)
            guard length >= headerSize, length <= datagram.count - offset else {
                return .malformed("a message of \(length) bytes in \(datagram.count - offset)")
            }
            let payload = UnsafeRawBufferPointer(rebasing: datagram[(offset + headerSize)..<(offset + length)])
            offset += align(length)
            // Another request's answer (none is sent on this socket, but the kernel may say
            // so): not ours.
            guard header.nlmsg_seq == sequence, header.nlmsg_pid == portID || header.nlmsg_pid == 0 else { continue }
            switch Int32(header.nlmsg_type) {
            case NLMSG_DONE:
                // Since Linux 4.x a dump that failed midway says so in NLMSG_DONE's payload.
                if payload.count >= 4 {
                    let error = payload.loadUnaligned(as: Int32.self)
                    if error < 0 { return .failed(-error) }
                }
                return .done
            case NLMSG_ERROR:
                guard payload.count >= 4 else { return .malformed("a truncated error") }
                let error = payload.loadUnaligned(as: Int32.self)
                if error < 0 { return .failed(-error) }
            case Int32(type):
                body(payload)
            default:
                continue
            }
        }
        return .more
    }

    /// The name and values of the counter object one NFT_MSG_NEWOBJ payload describes
    /// (nil for another object type or one without a name).
    private static func counter(in payload: UnsafeRawBufferPointer) -> (String, Value)? {
        guard payload.count >= MemoryLayout<nfgenmsg>.size else { return nil }
        var name: String?
        var type: UInt32?
        var value = Value(packets: 0, bytes: 0)
        for (kind, data) in attributes(UnsafeRawBufferPointer(rebasing: payload[MemoryLayout<nfgenmsg>.size...])) {
            switch kind {
            case UInt16(NFTA_OBJ_NAME.rawValue):
                // NUL-terminated (NLA_STRING as the kernel sends it).
                name = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
            case UInt16(NFTA_OBJ_TYPE.rawValue) where data.count == 4:
                type = UInt32(bigEndian: data.loadUnaligned(as: UInt32.self))
            case UInt16(NFTA_OBJ_DATA.rawValue):
                for (field, number) in attributes(data) where number.count == 8 {
                    let amount = UInt64(bigEndian: number.loadUnaligned(as: UInt64.self))
                    if field == UInt16(NFTA_COUNTER_PACKETS.rawValue) { value.packets = amount }
                    if field == UInt16(NFTA_COUNTER_BYTES.rawValue) { value.bytes = amount }
                }
            default:
                continue
            }
        }
        guard let name, !name.isEmpty, type == UInt32(NFT_OBJECT_COUNTER) else { return nil }
        return (name, value)
    }

    /// The attributes (type without the nested and byte-order flags, payload) in `data`,
    /// up to the first whose length does not fit.
    static func attributes(_ data: UnsafeRawBufferPointer) -> [(UInt16, UnsafeRawBufferPointer)] {
        var result: [(UInt16, UnsafeRawBufferPointer)] = []
        var offset = 0
        while data.count - offset >= 4 {
            let length = Int(data.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = data.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self) & ~UInt16(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
            guard length >= 4, length <= data.count - offset else { break }
            result.append((type, UnsafeRawBufferPointer(rebasing: data[(offset + 4)..<(offset + length)])))
            offset += align(length)
        }
        return result
    }

    /// The nfnetlink message type of nf_tables message `message`.
    static func messageType(_ message: UInt16) -> UInt16 { UInt16(NFNL_SUBSYS_NFTABLES) << 8 | message }

    /// nft's family names and their NFPROTO_ numbers (linux/netfilter.h, not imported: it
    /// brings the kernel's own in_addr beside Glibc's).
    static let families: [String: UInt8] = ["inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10]

    private static let headerSize = MemoryLayout<nlmsghdr>.size

    private static func align(_ length: Int) -> Int { (length + 3) & ~3 }
}
