#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MATLinux
import MATPacket
import Testing

/// Rtnetlink numbers, spelled out from the uapi headers so the tests check the parser's
/// imports instead of sharing them.
private enum RT {
    static let newLink: UInt16 = 16, delLink: UInt16 = 17        // RTM_NEWLINK, RTM_DELLINK
    static let newAddr: UInt16 = 20, delAddr: UInt16 = 21        // RTM_NEWADDR, RTM_DELADDR
    static let newRoute: UInt16 = 24, delRoute: UInt16 = 25      // RTM_NEWROUTE, RTM_DELROUTE
    static let done: UInt16 = 3                                  // NLMSG_DONE
    static let iflaIfname: UInt16 = 3, iflaMTU: UInt16 = 4, iflaEvent: UInt16 = 44
    static let iflaEventNotifyPeers: UInt32 = 4                  // linux/if_link.h
    static let iflaEventFeatures: UInt32 = 2
    static let ifaAddress: UInt16 = 1, ifaLocal: UInt16 = 2
    static let rtaDst: UInt16 = 1, rtaTable: UInt16 = 15
    static let iffUp: UInt32 = 0x1, iffRunning: UInt32 = 0x40
    static let afUnspec: UInt8 = 0, afInet: UInt8 = 2, afBridge: UInt8 = 7, afInet6: UInt8 = 10
    static let tableMain: UInt8 = 254, tableCompat: UInt8 = 252
}

/// Builds rtnetlink messages byte by byte, in host byte order as the kernel sends them.
private struct MessageBuilder {
    var bytes: [UInt8] = []

    /// Appends one message: netlink header, fixed family header, then attributes.
    mutating func message(type: UInt16, fixed: [UInt8], attributes: [(UInt16, [UInt8])] = []) {
        var body = fixed
        while body.count % 4 != 0 { body.append(0) }
        for (attributeType, payload) in attributes {
            body += Self.raw(UInt16(4 + payload.count)) + Self.raw(attributeType) + payload
            while body.count % 4 != 0 { body.append(0) }
        }
        bytes += Self.raw(UInt32(16 + body.count)) + Self.raw(type) + Self.raw(UInt16(0))
            + Self.raw(UInt32(0)) + Self.raw(UInt32(0)) + body
    }

    static func raw<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }

    /// struct ifinfomsg.
    static func link(family: UInt8 = RT.afUnspec, index: Int32, flags: UInt32) -> [UInt8] {
        [family, 0] + raw(UInt16(1)) + raw(index) + raw(flags) + raw(UInt32(0xFFFF_FFFF))
    }

    /// struct ifaddrmsg.
    static func address(family: UInt8, prefixLength: UInt8, index: UInt32) -> [UInt8] {
        [family, prefixLength, 0x80, 0] + raw(index)
    }

    /// struct rtmsg.
    static func route(family: UInt8, dstLength: UInt8, table: UInt8) -> [UInt8] {
        [family, dstLength, 0, 0, table, 4, 0, 1] + raw(UInt32(0))
    }

    static func name(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }

    func parse() -> [NetlinkEvent] { bytes.withUnsafeBytes { NetlinkEvent.parse($0) } }
}

private let v4a: [UInt8] = [192, 0, 2, 1]
private let v4peer: [UInt8] = [192, 0, 2, 99]
private let v6a: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]

@Suite struct NetlinkMonitorParsingTests {
    @Test func newLinkWithNotifyPeersEventSetsNotifyPeers() {
        var builder = MessageBuilder()
        builder.message(type: RT.newLink, fixed: MessageBuilder.link(index: 7, flags: RT.iffUp | RT.iffRunning),
                        attributes: [(RT.iflaIfname, MessageBuilder.name("eth0")),
                                     (RT.iflaMTU, MessageBuilder.raw(UInt32(1500))),
                                     (RT.iflaEvent, MessageBuilder.raw(RT.iflaEventNotifyPeers))])
        #expect(builder.parse() == [.linkChanged(interface: 7, name: "eth0", isUp: true, notifyPeers: true)])
    }

    @Test func linkFlagsEventsAndRemoval() {
        var builder = MessageBuilder()
        // Up without carrier is not up; another IFLA_EVENT is not a peer notification.
        builder.message(type: RT.newLink, fixed: MessageBuilder.link(index: 3, flags: RT.iffUp),
                        attributes: [(RT.iflaIfname, MessageBuilder.name("wlan0")),
                                     (RT.iflaEvent, MessageBuilder.raw(RT.iflaEventFeatures))])
        // An IFLA_EVENT of the wrong size is skipped, not read.
        builder.message(type: RT.newLink, fixed: MessageBuilder.link(index: 3, flags: RT.iffUp | RT.iffRunning),
                        attributes: [(RT.iflaEvent, MessageBuilder.raw(UInt16(4))),
                                     (RT.iflaIfname, MessageBuilder.name("wlan0"))])
        // Bridge-port notifications share the link group and are not link changes.
        builder.message(type: RT.delLink, fixed: MessageBuilder.link(family: RT.afBridge, index: 3, flags: 0),
                        attributes: [(RT.iflaIfname, MessageBuilder.name("wlan0"))])
        builder.message(type: RT.delLink, fixed: MessageBuilder.link(index: 3, flags: 0),
                        attributes: [(RT.iflaIfname, MessageBuilder.name("wlan0"))])
        #expect(builder.parse() == [
            .linkChanged(interface: 3, name: "wlan0", isUp: false, notifyPeers: false),
            .linkChanged(interface: 3, name: "wlan0", isUp: true, notifyPeers: false),
            .linkRemoved(interface: 3, name: "wlan0"),
        ])
    }

    @Test func addressesPreferLocalOverPeerAndSkipWrongLengths() {
        var builder = MessageBuilder()
        // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
        builder.message(type: RT.newAddr, fixed: MessageBuilder.address(family: RT.afInet, prefixLength: 32, index: 5),
                        attributes: [(RT.ifaAddress, v4peer), (RT.ifaLocal, v4a)])
        // Without IFA_LOCAL, IFA_ADDRESS is the address (IPv6 sends only that).
        builder.message(type: RT.newAddr, fixed: MessageBuilder.address(family: RT.afInet6, prefixLength: 64, index: 5),
                        attributes: [(RT.ifaAddress, v6a)])
        // An IFA_LOCAL of the wrong length is skipped; IFA_ADDRESS stands in.
        builder.message(type: RT.delAddr, fixed: MessageBuilder.address(family: RT.afInet, prefixLength: 24, index: 5),
                        attributes: [(RT.ifaLocal, [10, 0, 0]), (RT.ifaAddress, v4peer)])
        // An IPv6 family with an IPv4-sized address has no usable address at all.
        builder.message(type: RT.delAddr, fixed: MessageBuilder.address(family: RT.afInet6, prefixLength: 64, index: 5),
                        attributes: [(RT.ifaAddress, v4a)])
        builder.message(type: RT.delAddr, fixed: MessageBuilder.address(family: RT.afInet6, prefixLength: 64, index: 5),
                        attributes: [(RT.ifaAddress, v6a)])
        #expect(builder.parse() == [
            .addressAdded(interface: 5, address: IPAddress("192.0.2.1")!, prefixLength: 32),
            .addressAdded(interface: 5, address: IPAddress("2001:db8::1")!, prefixLength: 64),
            .addressRemoved(interface: 5, address: IPAddress("192.0.2.99")!, prefixLength: 24),
            .addressRemoved(interface: 5, address: IPAddress("2001:db8::1")!, prefixLength: 64),
        ])
    }

    @Test func onlyDefaultRoutesOfTheMainTableCount() {
        var builder = MessageBuilder()
        builder.message(type: RT.newRoute, fixed: MessageBuilder.route(family: RT.afInet, dstLength: 0, table: RT.tableMain),
                        attributes: [(RT.rtaTable, MessageBuilder.raw(UInt32(254)))])
        builder.message(type: RT.newRoute, fixed: MessageBuilder.route(family: RT.afInet, dstLength: 24, table: RT.tableMain),
                        attributes: [(RT.rtaDst, v4a)])
        builder.message(type: RT.newRoute, fixed: MessageBuilder.route(family: RT.afInet6, dstLength: 0, table: 100))
        // A table above 255 travels in RTA_TABLE, and rtm_table says RT_TABLE_COMPAT.
        builder.message(type: RT.newRoute, fixed: MessageBuilder.route(family: RT.afInet6, dstLength: 0, table: RT.tableCompat),
                        attributes: [(RT.rtaTable, MessageBuilder.raw(UInt32(1000)))])
        builder.message(type: RT.newRoute, fixed: MessageBuilder.route(family: RT.afInet, dstLength: 0, table: RT.tableMain),
                        attributes: [(RT.rtaTable, MessageBuilder.raw(UInt32(1000)))])
        builder.message(type: RT.done, fixed: MessageBuilder.raw(Int32(0)))
        builder.message(type: RT.delRoute, fixed: MessageBuilder.route(family: RT.afInet6, dstLength: 0, table: RT.tableMain))
        // AF_BRIDGE/MPLS routes and unknown message types are ignored.
        builder.message(type: RT.delRoute, fixed: MessageBuilder.route(family: 28, dstLength: 0, table: RT.tableMain))
        builder.message(type: 0x7000, fixed: [1, 2, 3, 4])
        #expect(builder.parse() == [.defaultRouteChanged(family: .ipv4), .defaultRouteChanged(family: .ipv6)])
    }

    /// A stream of every kind of message, to cut and corrupt.
    private static func sample() -> MessageBuilder {
        var builder = MessageBuilder()
        builder.message(type: RT.newLink, fixed: MessageBuilder.link(index: 7, flags: RT.iffUp | RT.iffRunning),
                        attributes: [(RT.iflaIfname, MessageBuilder.name("eth0")),
                                     (RT.iflaEvent, MessageBuilder.raw(RT.iflaEventNotifyPeers))])
        builder.message(type: RT.newAddr, fixed: MessageBuilder.address(family: RT.afInet6, prefixLength: 64, index: 7),
                        attributes: [(RT.ifaAddress, v6a)])
        builder.message(type: RT.delRoute, fixed: MessageBuilder.route(family: RT.afInet, dstLength: 0, table: RT.tableMain))
        builder.message(type: RT.delLink, fixed: MessageBuilder.link(index: 7, flags: 0),
                        attributes: [(RT.iflaIfname, MessageBuilder.name("eth0"))])
        return builder
    }

    @Test func truncatedBuffersYieldOnlyTheWholeMessagesBeforeTheCut() {
        let full = Self.sample()
        let all = full.parse()
        #expect(all.count == 4)
        for length in 0...full.bytes.count {
            let events = Array(full.bytes[..<length]).withUnsafeBytes { NetlinkEvent.parse($0) }
            #expect(events.count <= all.count)
            #expect(Array(all.prefix(events.count)) == events)
        }
        // An unaligned start is handled like an aligned one.
        let shifted = [0] + full.bytes
        #expect(shifted.withUnsafeBytes { NetlinkEvent.parse(UnsafeRawBufferPointer(rebasing: $0[1...])) } == all)
        #expect(NetlinkEvent.parse(UnsafeRawBufferPointer(start: nil, count: 0)) == [])
    }

    @Test func corruptedLengthsAndRandomBytesDoNotCrash() {
        let full = Self.sample()
        // Every single byte of the stream set to values that break lengths.
        for index in full.bytes.indices {
            for value: UInt8 in [0, 1, 3, 4, 5, 0x7F, 0x80, 0xFF] {
                var bytes = full.bytes
                bytes[index] = value
                _ = bytes.withUnsafeBytes { NetlinkEvent.parse($0) }
            }
        }
        // A message claiming more than the buffer holds ends the walk.
        let huge = MessageBuilder.raw(UInt32(0xFFFF_FFF0)) + MessageBuilder.raw(RT.newLink) + [UInt8](repeating: 0, count: 26)
        #expect(huge.withUnsafeBytes { NetlinkEvent.parse($0) } == [])
        // An attribute of length zero ends the attribute walk without looping.
        var builder = MessageBuilder()
        builder.message(type: RT.newLink, fixed: MessageBuilder.link(index: 2, flags: 0),
                        attributes: [(RT.iflaIfname, MessageBuilder.name("a"))])
        builder.bytes[32] = 0
        builder.bytes[33] = 0
        #expect(builder.parse() == [.linkChanged(interface: 2, name: "", isUp: false, notifyPeers: false)])
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let count = Int.random(in: 0...96, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // Plausible headers make the walk go deeper than pure noise would.
            if count >= 6 {
                bytes[0] = UInt8(count - Int.random(in: 0...4, using: &generator))
                bytes[1] = 0; bytes[2] = 0; bytes[3] = 0
                bytes[4] = [RT.newLink, RT.delLink, RT.newAddr, RT.delAddr, RT.newRoute, RT.delRoute]
                    .map(UInt8.init)[Int.random(in: 0...5, using: &generator)]
                bytes[5] = 0
            }
            _ = bytes.withUnsafeBytes { NetlinkEvent.parse($0) }
        }
    }
}

/// Waits on `monitor` until `done` holds for the events read so far, or `timeout` passes.
private func collect(_ monitor: NetlinkMonitor, timeout: Duration = .seconds(5),
                     until done: ([NetlinkEvent]) -> Bool) throws -> [NetlinkEvent] {
    var events: [NetlinkEvent] = []
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !done(events) {
        let left = clock.now.duration(to: deadline)
        guard left > .zero else { break }
        var descriptor = pollfd(fd: monitor.fileDescriptor, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&descriptor, 1, max(1, milliseconds)) >= 0 || errno == EINTR else {
            throw LabError("poll: errno \(errno)")
        }
        events += try monitor.readEvents()
    }
    return events
}

/// Runs `ip -n NAMESPACE ARGS` (usable from the thread inside the namespace, where the
/// non-copyable `LabNamespace` cannot be captured).
private func ip(in namespace: String, _ arguments: String...) throws {
    try run(["ip", "-n", namespace] + arguments)
}

private func isLink(_ event: NetlinkEvent, named name: String, up: Bool) -> Bool {
    if case .linkChanged(_, name, up, _) = event { return true }
    return false
}

@Suite(.enabled(if: isRoot || mustRunRootTests, "needs root (runs in CI)"))
struct NetlinkMonitorRootTests {
    /// What each step of the lifecycle test saw.
    struct Seen: Sendable {
        var index: Int32 = 0
        var steps: [String: [NetlinkEvent]] = [:]
    }

    @Test func reportsLinkAddressAndDefaultRouteChangesInANamespace() throws {
        let lab = try LabNamespace()
        let namespace = lab.name
        let seen = try lab.enter { () -> Seen in
            let monitor = try NetlinkMonitor()
            var seen = Seen()
            seen.steps["before"] = try monitor.readEvents()
            try ip(in: namespace, "link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
            seen.steps["create"] = try collect(monitor) { $0.contains { isLink($0, named: "mv0", up: false) } }
            for case .linkChanged(let index, "mv0", _, _) in seen.steps["create"]! { seen.index = index }
            try ip(in: namespace, "link", "set", "mv0", "up")
            try ip(in: namespace, "link", "set", "mv1", "up")
            seen.steps["up"] = try collect(monitor) { $0.contains { isLink($0, named: "mv0", up: true) } }

            let v4 = NetlinkEvent.addressAdded(interface: seen.index, address: IPAddress("192.0.2.1")!, prefixLength: 24)
            let v6 = NetlinkEvent.addressAdded(interface: seen.index, address: IPAddress("2001:db8::1")!, prefixLength: 64)
            try ip(in: namespace, "addr", "add", "192.0.2.1/24", "dev", "mv0")
            try ip(in: namespace, "addr", "add", "2001:db8::1/64", "dev", "mv0", "nodad")
            seen.steps["addresses"] = try collect(monitor) { $0.contains(v4) && $0.contains(v6) }

            // Defaults of another table come first and must not count; main ones must.
            try ip(in: namespace, "route", "add", "default", "via", "192.0.2.254", "dev", "mv0", "table", "100")
            try ip(in: namespace, "-6", "route", "add", "default", "via", "2001:db8::fe", "dev", "mv0", "table", "100")
            try ip(in: namespace, "route", "add", "198.51.100.0/24", "via", "192.0.2.254", "dev", "mv0")
            try ip(in: namespace, "route", "add", "default", "via", "192.0.2.254", "dev", "mv0")
            try ip(in: namespace, "-6", "route", "add", "default", "via", "2001:db8::fe", "dev", "mv0")
            seen.steps["defaults added"] = try collect(monitor) {
                $0.contains(.defaultRouteChanged(family: .ipv4)) && $0.contains(.defaultRouteChanged(family: .ipv6))
            }
            try ip(in: namespace, "route", "del", "default", "via", "192.0.2.254", "dev", "mv0")
            try ip(in: namespace, "-6", "route", "del", "default", "via", "2001:db8::fe", "dev", "mv0")
            seen.steps["defaults removed"] = try collect(monitor) {
                $0.contains(.defaultRouteChanged(family: .ipv4)) && $0.contains(.defaultRouteChanged(family: .ipv6))
            }

            let gone4 = NetlinkEvent.addressRemoved(interface: seen.index, address: IPAddress("192.0.2.1")!, prefixLength: 24)
            let gone6 = NetlinkEvent.addressRemoved(interface: seen.index, address: IPAddress("2001:db8::1")!, prefixLength: 64)
            try ip(in: namespace, "addr", "del", "192.0.2.1/24", "dev", "mv0")
            try ip(in: namespace, "addr", "del", "2001:db8::1/64", "dev", "mv0")
            seen.steps["addresses removed"] = try collect(monitor) { $0.contains(gone4) && $0.contains(gone6) }

            try ip(in: namespace, "link", "set", "mv0", "down")
            seen.steps["down"] = try collect(monitor) { $0.contains { isLink($0, named: "mv0", up: false) } }
            try ip(in: namespace, "link", "del", "mv0")
            seen.steps["deleted"] = try collect(monitor) { $0.contains(.linkRemoved(interface: seen.index, name: "mv0")) }
            return seen
        }
        let index = seen.index
        #expect(index > 1)
        #expect(seen.steps["before"] == [])
        #expect(seen.steps["create"]!.contains { isLink($0, named: "mv1", up: false) })
        #expect(seen.steps["up"]!.contains(.linkChanged(interface: index, name: "mv0", isUp: true, notifyPeers: false)))
        let addresses = seen.steps["addresses"]!
        #expect(addresses.contains(.addressAdded(interface: index, address: IPAddress("192.0.2.1")!, prefixLength: 24)))
        #expect(addresses.contains(.addressAdded(interface: index, address: IPAddress("2001:db8::1")!, prefixLength: 64)))
        // The prefix route the IPv4 address brings (dst len 24) is not a default route.
        #expect(!addresses.contains(.defaultRouteChanged(family: .ipv4)))
        for step in ["defaults added", "defaults removed"] {
            let events = seen.steps[step]!
            #expect(events.filter { $0 == .defaultRouteChanged(family: .ipv4) }.count == 1, "\(step): \(events)")
            #expect(events.filter { $0 == .defaultRouteChanged(family: .ipv6) }.count == 1, "\(step): \(events)")
        }
        let removed = seen.steps["addresses removed"]!
        #expect(removed.contains(.addressRemoved(interface: index, address: IPAddress("192.0.2.1")!, prefixLength: 24)))
        #expect(removed.contains(.addressRemoved(interface: index, address: IPAddress("2001:db8::1")!, prefixLength: 64)))
        #expect(seen.steps["down"]!.contains(.linkChanged(interface: index, name: "mv0", isUp: false, notifyPeers: false)))
        let deleted = seen.steps["deleted"]!
        #expect(deleted.contains(.linkRemoved(interface: index, name: "mv0")))
        #expect(deleted.contains { if case .linkRemoved(_, "mv1") = $0 { true } else { false } })
        // Nothing in the whole run claimed a peer notification or an overflow.
        let all = seen.steps.values.flatMap { $0 }
        #expect(!all.contains(.overflow))
        #expect(!all.contains { if case .linkChanged(_, _, _, true) = $0 { true } else { false } })
    }

    @Test func aFullReceiveBufferReportsOverflowOnceAndReadingGoesOn() throws {
        let lab = try LabNamespace()
        let batch = FileManager.default.temporaryDirectory.appendingPathComponent("mat-overflow-\(getpid()).ip")
        try (0..<600).map { "addr add 10.77.\($0 / 250).\($0 % 250 + 1)/32 dev lo" }
            .joined(separator: "\n").write(to: batch, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: batch) }
        let namespace = lab.name
        let (first, idle, after) = try lab.enter { () -> ([NetlinkEvent], [NetlinkEvent], [NetlinkEvent]) in
            let monitor = try NetlinkMonitor(receiveBufferSize: 4096)
            // Nobody reads while 600 addresses (and their local routes) arrive.
            try ip(in: namespace, "-batch", batch.path)
            let first = try collect(monitor, timeout: .seconds(2)) { $0.contains(.overflow) }
            let idle = try monitor.readEvents()
            try ip(in: namespace, "addr", "add", "10.78.0.1/32", "dev", "lo")
            let added = NetlinkEvent.addressAdded(interface: 1, address: IPAddress("10.78.0.1")!, prefixLength: 32)
            let after = try collect(monitor) { $0.contains(added) }
            return (first, idle, after)
        }
        #expect(first.filter { $0 == .overflow }.count == 1)
        // The queue held far fewer than the 600 additions: most were dropped.
        #expect(first.count < 300)
        #expect(idle == [])
        #expect(after.contains(.addressAdded(interface: 1, address: IPAddress("10.78.0.1")!, prefixLength: 32)))
        #expect(!after.contains(.overflow))
    }
}
