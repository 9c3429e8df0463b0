#if canImport(Glibc)
import Glibc
#endif
import CMnl
import CNetlink
import MATPacket

/// Configures addresses, routes and rules through libnl-route.
///
/// Not thread-safe (libnl sockets are not): one owner uses it from one thread at a time.
public final class RouteNetlink {
    private let socket: OpaquePointer

    /// The kernel's main routing table.
    public static let mainTable = UInt32(RT_TABLE_MAIN.rawValue)

    /// Opens and connects an rtnetlink socket.
    public init() throws(SystemError) {
        guard let socket = nl_socket_alloc() else {
            throw SystemError("allocate netlink socket", detail: "out of memory")
        }
        let result = nl_connect(socket, NETLINK_ROUTE)
        guard result == 0 else {
            nl_socket_free(socket)
            throw Self.error("connect rtnetlink socket", result)
        }
        self.socket = socket
    }

    deinit { nl_socket_free(socket) }

    /// The index of interface `name`.
    public func interfaceIndex(_ name: String) throws(SystemError) -> Int32 {
        var link: OpaquePointer?
        let result = rtnl_link_get_kernel(socket, 0, name, &link)
        guard result == 0, let link else { throw Self.error("find interface \(name)", result) }
        defer { rtnl_link_put(link) }
        return rtnl_link_get_ifindex(link)
    }

    /// The MTU of interface `name`.
    public func mtu(of name: String) throws(SystemError) -> UInt32 {
        var link: OpaquePointer?
        let result = rtnl_link_get_kernel(socket, 0, name, &link)
        guard result == 0, let link else { throw Self.error("find interface \(name)", result) }
        defer { rtnl_link_put(link) }
        return rtnl_link_get_mtu(link)
    }

    /// The link kind of interface `name` (`tun`, `veth`, ...), nil if it has none, or
    /// nil and no error when the interface does not exist.
    public func kind(of name: String) -> String?? {
        var link: OpaquePointer?
        guard rtnl_link_get_kernel(socket, 0, name, &link) == 0, let link else { return nil }
        defer { rtnl_link_put(link) }
        return .some(rtnl_link_get_type(link).map { String(cString: $0) })
    }

    /// Deletes interface `name`.
    public func deleteLink(_ name: String) throws(SystemError) {
        guard let link = rtnl_link_alloc() else { throw SystemError("delete \(name)", detail: "out of memory") }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        let result = rtnl_link_delete(socket, link)
        guard result == 0 else { throw Self.error("delete interface \(name)", result) }
    }

    /// Brings interface `name` up, setting its MTU and transmit queue length when given.
    public func setUp(_ name: String, mtu: UInt32? = nil, transmitQueueLength: UInt32? = nil) throws(SystemError) {
        var link: OpaquePointer?
        var result = rtnl_link_get_kernel(socket, 0, name, &link)
        guard result == 0, let link else { throw Self.error("find interface \(name)", result) }
        defer { rtnl_link_put(link) }
        guard let change = rtnl_link_alloc() else { throw SystemError("bring \(name) up", detail: "out of memory") }
        defer { rtnl_link_put(change) }
        rtnl_link_set_flags(change, UInt32(IFF_UP))
        if let mtu { rtnl_link_set_mtu(change, mtu) }
        if let transmitQueueLength { rtnl_link_set_txqlen(change, transmitQueueLength) }
        result = rtnl_link_change(socket, link, change, 0)
        guard result == 0 else { throw Self.error("bring \(name) up", result) }
    }

    /// The addresses on interface `index` that other hosts may be told to reach this one
    /// at, best first (`InterfaceAddress.ranked`: no link-local, tentative, deprecated or
    /// temporary ones; permanent before dynamic, primary before secondary, those about to
    /// be deprecated last).
    public func addresses(interface index: Int32) throws(SystemError) -> [IPPrefix] {
        InterfaceAddress.ranked(try addressDump().filter { $0.interface == index }).map(\.prefix)
    }

    /// Every address of every interface, with its flags, scope and lifetimes, in the
    /// kernel's order.
    public func addressDump() throws(SystemError) -> [InterfaceAddress] {
        var cache: OpaquePointer?
        let result = rtnl_addr_alloc_cache(socket, &cache)
        guard result == 0, let cache else { throw Self.error("list addresses", result) }
        defer { nl_cache_free(cache) }
        var found: [InterfaceAddress] = []
        var object = nl_cache_get_first(cache)
        while let address = object {
            if let local = rtnl_addr_get_local(address),
               let prefix = Self.prefix(local, length: Int(rtnl_addr_get_prefixlen(address))) {
                // libnl takes the 32-bit IFA_FLAGS attribute where the kernel sends it, so
                // flags above 0xff (mngtmpaddr) are there too.
                found.append(InterfaceAddress(
                    interface: Int32(rtnl_addr_get_ifindex(address)), prefix: prefix,
                    flags: UInt32(rtnl_addr_get_flags(address)),
                    scope: UInt8(truncatingIfNeeded: rtnl_addr_get_scope(address)),
                    preferredLifetime: rtnl_addr_get_preferred_lifetime(address),
                    validLifetime: rtnl_addr_get_valid_lifetime(address)))
            }
            object = nl_cache_get_next(address)
        }
        return found
    }

    private static func prefix(_ address: OpaquePointer, length: Int) -> IPPrefix? {
        let count = Int(nl_addr_get_len(address))
        guard let raw = nl_addr_get_binary_addr(address) else { return nil }
        let bytes = UnsafeRawBufferPointer(start: raw, count: count)
        switch (nl_addr_get_family(address), count) {
        case (AF_INET, 4):
            return IPPrefix(.v4(IPv4Address(loadingFrom: raw, offset: 0)), length: length)
        case (AF_INET6, 16):
            return IPPrefix(.v6(IPv6Address(loadingFrom: bytes.baseAddress!, offset: 0)), length: length)
        default:
            return nil
        }
    }

    /// Adds `prefix` (an address with its prefix length) to interface `index`. Duplicate
    /// address detection is skipped: the HoA is the node's own and must work at once.
    /// With `allowExisting`, an address already there is success (setup stays idempotent).
    public func addAddress(_ prefix: IPPrefix, interface index: Int32, allowExisting: Bool = false) throws(SystemError) {
        try withAddress(prefix, interface: index) { address throws(SystemError) in
            let result = rtnl_addr_add(socket, address, NLM_F_CREATE | NLM_F_EXCL)
            guard result == 0 || (allowExisting && result == -NLE_EXIST) else {
                throw Self.error("add address \(prefix)", result)
            }
        }
    }

    /// Removes `prefix` from interface `index`.
    public func deleteAddress(_ prefix: IPPrefix, interface index: Int32) throws(SystemError) {
        try withAddress(prefix, interface: index) { address throws(SystemError) in
            let result = rtnl_addr_delete(socket, address, 0)
            guard result == 0 else { throw Self.error("delete address \(prefix)", result) }
        }
    }

    private func withAddress(
        _ prefix: IPPrefix, interface index: Int32, _ body: (OpaquePointer) throws(SystemError) -> Void
    ) throws(SystemError) {
        guard let address = rtnl_addr_alloc() else { throw SystemError("address \(prefix)", detail: "out of memory") }
        defer { rtnl_addr_put(address) }
        let local = try Self.netlinkAddress(prefix)
        defer { nl_addr_put(local) }
        rtnl_addr_set_ifindex(address, index)
        rtnl_addr_set_family(address, Self.family(prefix.address))
        rtnl_addr_set_prefixlen(address, Int32(prefix.length))
        rtnl_addr_set_flags(address, UInt32(IFA_F_NODAD))
        let result = rtnl_addr_set_local(address, local)
        guard result == 0 else { throw Self.error("address \(prefix)", result) }
        try body(address)
    }

    /// Adds a route for `destination` through interface `index` in `table`. With
    /// `allowExisting`, the same route already there is success.
    public func addRoute(_ destination: IPPrefix, interface index: Int32, table: UInt32,
                         allowExisting: Bool = false) throws(SystemError) {
        try withRoute(destination, interface: index, table: table) { route throws(SystemError) in
            let result = rtnl_route_add(socket, route, NLM_F_CREATE | NLM_F_EXCL)
            guard result == 0 || (allowExisting && result == -NLE_EXIST) else {
                throw Self.error("add route \(destination) table \(table)", result)
            }
        }
    }

    /// Deletes the route for `destination` through interface `index` in `table`.
    public func deleteRoute(_ destination: IPPrefix, interface index: Int32, table: UInt32) throws(SystemError) {
        try withRoute(destination, interface: index, table: table) { route throws(SystemError) in
            let result = rtnl_route_delete(socket, route, 0)
            guard result == 0 else { throw Self.error("delete route \(destination) table \(table)", result) }
        }
    }

    private func withRoute(
        _ destination: IPPrefix, interface index: Int32, table: UInt32,
        _ body: (OpaquePointer) throws(SystemError) -> Void
    ) throws(SystemError) {
        guard let route = rtnl_route_alloc(), let hop = rtnl_route_nh_alloc() else {
            throw SystemError("route \(destination)", detail: "out of memory")
        }
        defer { rtnl_route_put(route) }
        let address = try Self.netlinkAddress(destination)
        defer { nl_addr_put(address) }
        rtnl_route_set_family(route, UInt8(Self.family(destination.address)))
        rtnl_route_set_table(route, table)
        rtnl_route_set_protocol(route, UInt8(RTPROT_STATIC))
        rtnl_route_set_scope(route, UInt8(RT_SCOPE_LINK.rawValue))
        let result = rtnl_route_set_dst(route, address)
        guard result == 0 else { throw Self.error("route \(destination)", result) }
        rtnl_route_nh_set_ifindex(hop, index)
        rtnl_route_add_nexthop(route, hop)
        try body(route)
    }

    /// A policy-routing rule: match on source, destination and input interface, then
    /// look up `table`.
    public struct Rule: Hashable, Sendable {
        public var family: AddressFamily
        public var priority: UInt32
        public var source: IPPrefix?
        public var destination: IPPrefix?
        public var inputInterface: String?
        public var table: UInt32

        /// A rule; give `source` or `destination` of the same family as `family`.
        public init(family: AddressFamily, priority: UInt32, source: IPPrefix? = nil,
                    destination: IPPrefix? = nil, inputInterface: String? = nil, table: UInt32) {
            self.family = family
            self.priority = priority
            self.source = source
            self.destination = destination
            self.inputInterface = inputInterface
            self.table = table
        }
    }

    /// Adds `rule`.
    public func addRule(_ rule: Rule) throws(SystemError) {
        try withRule(rule) { handle throws(SystemError) in
            let result = rtnl_rule_add(socket, handle, NLM_F_CREATE | NLM_F_EXCL)
            guard result == 0 else { throw Self.error("add rule pref \(rule.priority)", result) }
        }
    }

    /// Deletes `rule`.
    public func deleteRule(_ rule: Rule) throws(SystemError) {
        try withRule(rule) { handle throws(SystemError) in
            let result = rtnl_rule_delete(socket, handle, 0)
            guard result == 0 else { throw Self.error("delete rule pref \(rule.priority)", result) }
        }
    }

    private func withRule(_ rule: Rule, _ body: (OpaquePointer) throws(SystemError) -> Void) throws(SystemError) {
        guard let handle = rtnl_rule_alloc() else { throw SystemError("rule", detail: "out of memory") }
        defer { rtnl_rule_put(handle) }
        rtnl_rule_set_family(handle, rule.family == .ipv4 ? AF_INET : AF_INET6)
        rtnl_rule_set_prio(handle, rule.priority)
        rtnl_rule_set_table(handle, rule.table)
        rtnl_rule_set_action(handle, UInt8(FR_ACT_TO_TBL))
        if let source = rule.source {
            let address = try Self.netlinkAddress(source)
            defer { nl_addr_put(address) }
            _ = rtnl_rule_set_src(handle, address)
        }
        if let destination = rule.destination {
            let address = try Self.netlinkAddress(destination)
            defer { nl_addr_put(address) }
            _ = rtnl_rule_set_dst(handle, address)
        }
        if let name = rule.inputInterface { _ = rtnl_rule_set_iif(handle, name) }
        try body(handle)
    }

    private static func family(_ address: IPAddress) -> Int32 {
        address.family == .ipv4 ? AF_INET : AF_INET6
    }

    /// A libnl address object for `prefix`; the caller releases it with `nl_addr_put`.
    private static func netlinkAddress(_ prefix: IPPrefix) throws(SystemError) -> OpaquePointer {
        let bytes: [UInt8]
        switch prefix.address {
        case .v4(let address): bytes = address.bytes
        case .v6(let address): bytes = address.bytes
        }
        guard let address = bytes.withUnsafeBytes({
            nl_addr_build(family(prefix.address), $0.baseAddress, $0.count)
        }) else {
            throw SystemError("address \(prefix)", detail: "out of memory")
        }
        nl_addr_set_prefixlen(address, Int32(prefix.length))
        return address
    }

    private static func error(_ operation: String, _ code: Int32) -> SystemError {
        SystemError(operation, detail: String(cString: nl_geterror(code)))
    }
}
