#if canImport(Glibc)
import Glibc
#endif
import CMnl
import MATPacket

/// One change the kernel announced on an rtnetlink socket that matters for movement
/// detection. `NetlinkMonitor` produces these; `parse(_:)` turns raw message bytes into them.
public enum NetlinkEvent: Equatable, Sendable {
    /// RTM_NEWADDR: `address` (IFA_LOCAL, else IFA_ADDRESS) with `prefixLength` appeared on
    /// interface `interface`, or one of its flags changed (an IPv6 address that finishes
    /// duplicate address detection is announced again).
    case addressAdded(interface: Int32, address: IPAddress, prefixLength: UInt8)
    /// RTM_DELADDR: `address` with `prefixLength` left interface `interface`.
    case addressRemoved(interface: Int32, address: IPAddress, prefixLength: UInt8)
    /// RTM_NEWLINK: interface `interface` called `name` was created or changed. `isUp` is
    /// true when its flags carry both IFF_UP and IFF_RUNNING (administratively up, with
    /// carrier). `notifyPeers` is true when the message carries
    /// IFLA_EVENT == IFLA_EVENT_NOTIFY_PEERS (what a guest sees after live migration).
    case linkChanged(interface: Int32, name: String, isUp: Bool, notifyPeers: Bool)
    /// RTM_DELLINK: interface `interface` called `name` went away.
    case linkRemoved(interface: Int32, name: String)
    /// A default route (dst len 0) of the main table was added or removed.
    case defaultRouteChanged(family: AddressFamily)
    /// The kernel dropped events (ENOBUFS): the caller must re-dump its state.
    case overflow
}

extension NetlinkEvent {
    /// The events in `buffer`, a run of rtnetlink messages as one `recv` returns them (or
    /// as a dump reply carries them), in order.
    ///
    /// Safe on any bytes: a message or attribute whose length does not fit is where the
    /// walk stops, an attribute whose payload has the wrong size for its type is skipped,
    /// and messages of other types or families (bridge-port link messages, other routing
    /// tables, non-default routes, control messages) yield nothing.
    public static func parse(_ buffer: UnsafeRawBufferPointer) -> [NetlinkEvent] {
        guard let base = buffer.baseAddress, buffer.count >= headerSize else { return [] }
        // libmnl reads the headers in place; give it aligned memory whatever the caller has.
        guard Int(bitPattern: base) % MemoryLayout<nlmsghdr>.alignment == 0 else {
            let copy = UnsafeMutableRawBufferPointer.allocate(
                byteCount: buffer.count, alignment: MemoryLayout<nlmsghdr>.alignment)
            defer { copy.deallocate() }
            copy.copyMemory(from: buffer)
            return parse(UnsafeRawBufferPointer(copy))
        }
        var events: [NetlinkEvent] = []
        var offset = 0
        let total = min(buffer.count, Int(Int32.max))
        while total - offset >= headerSize {
            let message = UnsafePointer<nlmsghdr>(OpaquePointer(base + offset))
            let header = (base + offset).loadUnaligned(as: nlmsghdr.self)
            let length = Int(header.nlmsg_len)
            // mnl_nlmsg_ok compares the length as a signed int, so a length of 2^31 or more
            // passes it: check the unsigned value too.
            guard mnl_nlmsg_ok(message, Int32(total - offset)), length <= total - offset else { break }
            if let event = event(in: UnsafeRawBufferPointer(start: base + offset, count: length),
                                 type: Int(header.nlmsg_type)) {
                events.append(event)
            }
            offset += align(length)
        }
        return events
    }

    private static let headerSize = MemoryLayout<nlmsghdr>.size

    /// NLMSG_ALIGN / MNL_ALIGN, which Swift cannot import (function-like macros).
    private static func align(_ length: Int) -> Int { (length + 3) & ~3 }

    /// The event one whole, length-checked message announces, if any.
    private static func event(in message: UnsafeRawBufferPointer, type: Int) -> NetlinkEvent? {
        switch type {
        case Int(RTM_NEWLINK), Int(RTM_DELLINK):
            return linkEvent(message, removed: type == Int(RTM_DELLINK))
        case Int(RTM_NEWADDR), Int(RTM_DELADDR):
            return addressEvent(message, removed: type == Int(RTM_DELADDR))
        case Int(RTM_NEWROUTE), Int(RTM_DELROUTE):
            return routeEvent(message)
        default:
            return nil
        }
    }

    /// The fixed family header after the netlink header, or nil when the message is too
    /// short to hold it.
    private static func fixedHeader<Header>(_ message: UnsafeRawBufferPointer, as: Header.Type) -> Header? {
        guard message.count >= headerSize + MemoryLayout<Header>.size else { return nil }
        return message.baseAddress!.loadUnaligned(fromByteOffset: headerSize, as: Header.self)
    }

    /// Calls `body` with the type and payload of each well-formed attribute after the fixed
    /// header of `headerLength` bytes. Stops at the first attribute whose length does not fit.
    private static func forEachAttribute(
        _ message: UnsafeRawBufferPointer, after headerLength: Int,
        _ body: (Int, UnsafeRawBufferPointer) -> Void
    ) {
        let base = message.baseAddress!
        var offset = headerSize + align(headerLength)
        while offset < message.count {
            let attribute = UnsafePointer<nlattr>(OpaquePointer(base + offset))
            guard mnl_attr_ok(attribute, Int32(message.count - offset)) else { return }
            let payload = UnsafeRawBufferPointer(
                start: mnl_attr_get_payload(attribute), count: Int(mnl_attr_get_payload_len(attribute)))
            body(Int(mnl_attr_get_type(attribute)), payload)
            offset += align(Int(mnl_attr_get_len(attribute)))
        }
    }

    private static func linkEvent(_ message: UnsafeRawBufferPointer, removed: Bool) -> NetlinkEvent? {
        guard let info = fixedHeader(message, as: ifinfomsg.self),
              // Bridge-port notifications (AF_BRIDGE) share the group; they are not links.
              Int32(info.ifi_family) == AF_UNSPEC else { return nil }
        var name = ""
        var notifyPeers = false
        forEachAttribute(message, after: MemoryLayout<ifinfomsg>.size) { type, payload in
            switch type {
            case IFLA_IFNAME:
                let bytes = payload.prefix { $0 != 0 }
                name = String(decoding: bytes, as: UTF8.self)
            case IFLA_EVENT:
                guard payload.count == MemoryLayout<UInt32>.size else { return }
                notifyPeers = payload.loadUnaligned(as: UInt32.self) == UInt32(IFLA_EVENT_NOTIFY_PEERS)
            default:
                break
            }
        }
        if removed { return .linkRemoved(interface: info.ifi_index, name: name) }
        let upAndRunning = UInt32(IFF_UP) | UInt32(IFF_RUNNING)
        return .linkChanged(interface: info.ifi_index, name: name,
                            isUp: info.ifi_flags & upAndRunning == upAndRunning, notifyPeers: notifyPeers)
    }

    private static func addressEvent(_ message: UnsafeRawBufferPointer, removed: Bool) -> NetlinkEvent? {
        guard let info = fixedHeader(message, as: ifaddrmsg.self) else { return nil }
        let size: Int
        switch Int32(info.ifa_family) {
        case AF_INET: size = 4
        case AF_INET6: size = 16
        default: return nil
        }
        var local: IPAddress?
        var address: IPAddress?
        forEachAttribute(message, after: MemoryLayout<ifaddrmsg>.size) { type, payload in
            guard payload.count == size, type == Int(IFA_LOCAL) || type == Int(IFA_ADDRESS) else { return }
            let value: IPAddress = size == 4
                ? .v4(IPv4Address(loadingFrom: payload.baseAddress!, offset: 0))
                : .v6(IPv6Address(loadingFrom: payload.baseAddress!, offset: 0))
            if type == Int(IFA_LOCAL) { local = value } else { address = value }
        }
        // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
        guard let chosen = local ?? address else { return nil }
        let interface = Int32(bitPattern: info.ifa_index)
        return removed
            ? .addressRemoved(interface: interface, address: chosen, prefixLength: info.ifa_prefixlen)
            : .addressAdded(interface: interface, address: chosen, prefixLength: info.ifa_prefixlen)
    }

    private static func routeEvent(_ message: UnsafeRawBufferPointer) -> NetlinkEvent? {
        guard let route = fixedHeader(message, as: rtmsg.self), route.rtm_dst_len == 0 else { return nil }
        let family: AddressFamily
        switch Int32(route.rtm_family) {
        case AF_INET: family = .ipv4
        case AF_INET6: family = .ipv6
        default: return nil
        }
        // Tables above 255 are only in RTA_TABLE (rtm_table then says RT_TABLE_COMPAT).
        var table = UInt32(route.rtm_table)
        forEachAttribute(message, after: MemoryLayout<rtmsg>.size) { type, payload in
            guard type == Int(RTA_TABLE.rawValue), payload.count == MemoryLayout<UInt32>.size else { return }
            table = payload.loadUnaligned(as: UInt32.self)
        }
        guard table == UInt32(RT_TABLE_MAIN.rawValue) else { return nil }
        return .defaultRouteChanged(family: family)
    }
}
