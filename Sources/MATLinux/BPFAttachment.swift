#if canImport(Glibc)
import Glibc
#endif
import MATBPF
import MATLog
import Synchronization

/// A tc program attached to a device by ``BPFSystem/attach(program:name:interfaceIndex:point:)``,
/// with a tcx link (Linux 6.6) or, where the kernel has no tcx, a tc filter on a clsact
/// qdisc. ``detach()`` takes it off whatever the mechanism: the link is closed; the filter
/// is deleted, and the clsact qdisc with the device's last filter of ours if we added it
/// and nobody else's filter is there. The program stays loaded while its own descriptor
/// is open.
public final class BPFAttachment: Sendable {
    /// How a program is attached.
    public enum Mechanism: String, Sendable {
        /// A tcx link (BPF_LINK_CREATE): it goes when its descriptor closes, even when the
        /// process is killed.
        case tcx
        /// A direct-action bpf filter on the device's clsact qdisc (rtnetlink): it stays
        /// until deleted, so a killed matd leaves it; the next start replaces it.
        case tcFilter = "tc filter"
    }

    private enum Held {
        case link(Int32)
        case filter(TrafficControl.Filter, TCFilters.Device)
    }

    public let mechanism: Mechanism
    private let held: Mutex<Held?>

    private init(_ held: Held, mechanism: Mechanism) {
        self.held = Mutex(held)
        self.mechanism = mechanism
    }

    static func link(_ descriptor: Int32) -> BPFAttachment { BPFAttachment(.link(descriptor), mechanism: .tcx) }

    static func filter(_ filter: TrafficControl.Filter, on device: TCFilters.Device) -> BPFAttachment {
        BPFAttachment(.filter(filter, device), mechanism: .tcFilter)
    }

    deinit { detach() }

    /// Takes the program off the device. Idempotent; a failure (the device gone is none)
    /// is logged, as a filter left behind would go on running the program.
    public func detach() {
        guard let held = held.withLock({ held in defer { held = nil }; return held }) else { return }
        switch held {
        case .link(let descriptor): Glibc.close(descriptor)
        case .filter(let filter, let device): TCFilters.delete(filter, on: device)
        }
    }
}

/// The tc filters of this process, by device, with the one thing tc does not tell: whether
/// the device's clsact qdisc is ours (added by us, so deleted with our last filter there).
enum TCFilters {
    /// A device in a network namespace (a namespace is its nsfs inode: a thread may have
    /// entered another one, and interface indices are per namespace).
    struct Device: Hashable, Sendable {
        var namespace: UInt64
        var interfaceIndex: UInt32
    }

    private struct Hooks {
        /// The socket filters on the device go through, opened in its namespace: a filter is
        /// deleted there whichever thread (in whichever namespace) detaches it.
        var socket: RouteRequestSocket
        var clsactIsOurs: Bool
        var filters: Set<TrafficControl.Filter> = []
    }

    // Attaching and detaching are rare (at start, at a move, at stop) and each a few
    // netlink exchanges: one lock for all of them keeps a device's bookkeeping whole.
    private nonisolated(unsafe) static var devices: [Device: Hooks] = [:]
    private static let lock = Mutex(())

    /// Adds a direct-action filter running `program` at `hook` of the device with index
    /// `interfaceIndex` in the calling thread's namespace, and the clsact qdisc first when
    /// the device has none.
    static func add(program: Int32, name: String, interfaceIndex: UInt32,
                    hook: TrafficControl.Hook) throws(SystemError) -> BPFAttachment {
        let device = Device(namespace: try currentNamespace(), interfaceIndex: interfaceIndex)
        let what = "attach BPF program \(name) to interface \(interfaceIndex) (tc filter at \(hook))"
        return try lock.withLock { _ throws(SystemError) -> BPFAttachment in
            var hooks: Hooks
            if let known = devices[device] { hooks = known } else { hooks = Hooks(socket: try RouteRequestSocket(for: "tc filters"), clsactIsOurs: false) }
            let added = try acknowledged(hooks.socket, TrafficControl.addClsact(interfaceIndex: interfaceIndex), what: what)
            guard added == 0 || added == EEXIST else { throw SystemError(what + ": add clsact qdisc", errno: added) }
            if added == 0 { hooks.clsactIsOurs = true }
            let taken = Set(hooks.filters.filter { $0.hook == hook }.map(\.priority))
            let priority = (TrafficControl.firstPriority...UInt16.max).first { !taken.contains($0) } ?? UInt16.max
            let filter = TrafficControl.Filter(interfaceIndex: interfaceIndex, hook: hook, priority: priority)
            let result = try acknowledged(hooks.socket, TrafficControl.addFilter(filter, program: program, name: name), what: what)
            guard result == 0 else {
                settle(hooks, on: device)
                throw SystemError(what, errno: result)
            }
            hooks.filters.insert(filter)
            devices[device] = hooks
            return .filter(filter, on: device)
        }
    }

    /// Deletes `filter` from `device`, and the clsact qdisc with our last filter there if
    /// it is ours and holds nobody else's.
    static func delete(_ filter: TrafficControl.Filter, on device: Device) {
        lock.withLock { _ in
            guard var hooks = devices[device], hooks.filters.contains(filter) else { return }
            let what = "detach BPF program from interface \(device.interfaceIndex) (tc filter at \(filter.hook), priority \(filter.priority))"
            do {
                let result = try acknowledged(hooks.socket, TrafficControl.deleteFilter(filter), what: what)
                // ENODEV, ENOENT: the device or its qdisc went, and the filter with it.
                if result != 0 && result != ENODEV && result != ENOENT { throw SystemError(what, errno: result) }
            } catch {
                Log.write(.warning, "matd: \(error)")
            }
            hooks.filters.remove(filter)
            settle(hooks, on: device)
        }
    }

    /// Keeps `hooks` for `device` while it has filters of ours; with none left, deletes the
    /// clsact qdisc when it is ours and empty, and forgets the device. Called with the lock.
    private static func settle(_ hooks: Hooks, on device: Device) {
        guard hooks.filters.isEmpty else {
            devices[device] = hooks
            return
        }
        devices[device] = nil
        guard hooks.clsactIsOurs else { return }
        let what = "delete clsact qdisc of interface \(device.interfaceIndex)"
        do {
            var others = 0
            for hook in TrafficControl.Hook.allCases {
                try hooks.socket.dump(bytes: TrafficControl.listFilters(interfaceIndex: device.interfaceIndex, hook: hook),
                                      what: what) { if TrafficControl.listed($0) != nil { others += 1 } }
            }
            guard others == 0 else { return }
            let result = try acknowledged(hooks.socket, TrafficControl.deleteClsact(interfaceIndex: device.interfaceIndex), what: what)
            if result != 0 && result != ENODEV && result != ENOENT && result != EINVAL { throw SystemError(what, errno: result) }
        } catch let error as SystemError where error.errno == ENODEV {
            return   // the device went, and its qdisc with it
        } catch {
            Log.write(.warning, "matd: \(error)")
        }
    }

    /// The number of bpf filters at `hook` of the device with index `interfaceIndex` in
    /// the calling thread's namespace (0 when it has no clsact qdisc).
    static func count(interfaceIndex: UInt32, hook: TrafficControl.Hook) throws(SystemError) -> Int {
        let socket = try RouteRequestSocket(for: "tc filter listing")
        var count = 0
        try socket.dump(bytes: TrafficControl.listFilters(interfaceIndex: interfaceIndex, hook: hook),
                        what: "list tc filters of interface \(interfaceIndex)") { message in
            if let listed = TrafficControl.listed(message), listed.kind == "bpf", listed.handle != 0 { count += 1 }
        }
        return count
    }

    /// Deletes the filters of ours (``TrafficControl/isOurs(_:)``) on every device of the
    /// calling thread's namespace, those a killed matd left, and no other; returns what it
    /// deleted. The clsact qdiscs stay: whether matd added one was known only to the
    /// process that died, and an empty one takes nothing, while deleting someone else's
    /// would delete their filters.
    static func removeLeft() throws(SystemError) -> [String] {
        let socket = try RouteRequestSocket(for: "tc filter cleanup")
        var removed: [String] = []
        for (index, device) in try interfaces() {
            for hook in TrafficControl.Hook.allCases {
                var ours: [TrafficControl.Listed] = []
                do {
                    try socket.dump(bytes: TrafficControl.listFilters(interfaceIndex: index, hook: hook),
                                    what: "list tc filters of \(device)") { message in
                        if let listed = TrafficControl.listed(message), TrafficControl.isOurs(listed) { ours.append(listed) }
                    }
                } catch let error where error.errno == ENODEV {
                    break   // the device went since the listing, and its filters with it
                }
                for listed in ours {
                    let filter = TrafficControl.Filter(interfaceIndex: index, hook: hook, priority: listed.priority)
                    let what = "tc filter \(listed.name ?? "") at \(device) \(hook), priority \(listed.priority), handle 0x4d4154"
                    let result = try acknowledged(socket, TrafficControl.deleteFilter(filter), what: "delete " + what)
                    if result == 0 { removed.append(what) }
                    // ENODEV, ENOENT: the device or the filter went meanwhile.
                    else if result != ENODEV && result != ENOENT { throw SystemError("delete " + what, errno: result) }
                }
            }
        }
        return removed
    }

    /// The devices of the calling thread's namespace: index and name.
    private static func interfaces() throws(SystemError) -> [(UInt32, String)] {
        guard let list = if_nameindex() else { throw SystemError("list network interfaces", errno: errno) }
        defer { if_freenameindex(list) }
        var devices: [(UInt32, String)] = []
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            devices.append((entry.pointee.if_index, String(cString: name)))
            entry += 1
        }
        return devices
    }

    /// The error number of the kernel's answer to `request` (0: done).
    private static func acknowledged(_ socket: RouteRequestSocket, _ request: [UInt8], what: String) throws(SystemError) -> Int32 {
        let reply = try socket.exchange(bytes: request, what: what)
        guard let error = RouteRequestSocket.error(in: reply) else { throw SystemError(what, detail: "no acknowledgement") }
        return error
    }

    /// The calling thread's network namespace.
    private static func currentNamespace() throws(SystemError) -> UInt64 {
        var info = stat()
        guard stat("/proc/thread-self/ns/net", &info) == 0 else { throw SystemError("network namespace of this thread", errno: errno) }
        return UInt64(info.st_ino)
    }
}

extension BPFSystem {
    /// Attaches `program` (named `name`: tc lists the filter by it) at `point` of the
    /// interface with index `interfaceIndex` in the calling thread's namespace, after the
    /// programs there: with a tcx link when the kernel takes it (Linux 6.6), else with a
    /// direct-action tc filter on the device's clsact qdisc (added if missing), as
    /// distribution kernels before 6.6 take it. `MATD_BPF_ATTACH=tc` in the environment
    /// takes the tc filter alone (so this kernel runs the older kernels' path), `tcx` the
    /// link alone. The first attach logs the mechanism.
    public static func attach(program: Int32, name: String, interfaceIndex: UInt32,
                              point: Attributes.AttachPoint) throws(SystemError) -> BPFAttachment {
        let attachment: BPFAttachment, reason: String
        switch attachChoice {
        case "tcx":
            attachment = .link(try link(program: program, interfaceIndex: interfaceIndex, point: point))
            reason = ""
        case "tc":
            attachment = try TCFilters.add(program: program, name: name, interfaceIndex: interfaceIndex,
                                           hook: point == .tcxIngress ? .ingress : .egress)
            reason = " (MATD_BPF_ATTACH=tc)"
        case "":
            (attachment, reason) = try tcxElseFilter(program: program, name: name, interfaceIndex: interfaceIndex, point: point)
        default:
            throw SystemError("attach BPF program \(name)", detail: "MATD_BPF_ATTACH=\(attachChoice): neither tc nor tcx")
        }
        lastMechanism.store(attachment.mechanism == .tcx ? 1 : 2, ordering: .relaxed)
        if !announced.exchange(true, ordering: .relaxed) {
            Log.write(.info, "matd: BPF programs attached with " + (attachment.mechanism == .tcx ? "tcx" : "tc filters") + reason)
        }
        return attachment
    }

    /// A tcx link unless the kernel refused one, else a tc filter; with what the log says of it.
    private static func tcxElseFilter(program: Int32, name: String, interfaceIndex: UInt32,
                                      point: Attributes.AttachPoint) throws(SystemError) -> (BPFAttachment, String) {
        let hook: TrafficControl.Hook = point == .tcxIngress ? .ingress : .egress
        if !tcxRefused.load(ordering: .relaxed) {
            do throws(SystemError) {
                return (.link(try link(program: program, interfaceIndex: interfaceIndex, point: point)), "")
            } catch {
                let filter: BPFAttachment
                do throws(SystemError) {
                    filter = try TCFilters.add(program: program, name: name, interfaceIndex: interfaceIndex, hook: hook)
                } catch let refused {
                    throw SystemError(refused.description, detail: "and \(error)")
                }
                tcxRefused.store(true, ordering: .relaxed)
                return (filter, " (kernel has no tcx)")
            }
        }
        return (try TCFilters.add(program: program, name: name, interfaceIndex: interfaceIndex, hook: hook), " (kernel has no tcx)")
    }

    /// Deletes the tc filters a matd killed with `kill -9` left on the devices of the
    /// calling thread's namespace (tcx links go with their process, filters do not), and
    /// nobody else's filter nor any clsact qdisc: for `matd cleanup`. Returns what it deleted.
    public static func removeLeftFilters() throws(SystemError) -> [String] {
        try TCFilters.removeLeft()
    }

    /// `MATD_BPF_ATTACH` as matd started with it ("" when unset: tcx, else tc filters).
    static let attachChoice = getenv("MATD_BPF_ATTACH").map { String(cString: $0) } ?? ""
    /// Whether the kernel refused a tcx link: later attaches go straight to tc filters.
    private static let tcxRefused = Atomic<Bool>(false)
    private static let announced = Atomic<Bool>(false)
    private static let lastMechanism = Atomic<Int>(0)

    /// How the last program was attached (nil before the first): what matd's log and
    /// status say of the BPF datapath.
    public static var attachedWith: BPFAttachment.Mechanism? {
        switch lastMechanism.load(ordering: .relaxed) {
        case 1: .tcx
        case 2: .tcFilter
        default: nil
        }
    }
}
