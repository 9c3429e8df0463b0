import Foundation
import MATLinux
import MATPacket
import MATSystem
import Synchronization

/// Which peers the kernel fast path delivered packets from, and when it last did: the
/// fast path's part of the data evidence that ``IdleProbing`` counts (``ReceiveMarks`` is
/// the engine's). Its packets never reach the engine, so without this a peer on the fast
/// path sending only data looked silent and was probed every idle period.
///
/// Every inbound rule that translates a packet ends with `update @heard4 { ip saddr }`
/// (IPv6: `heard6`): after the rewrite, so the source it notes is the peer's HoA, and
/// only when the map lookup found a peer, so nobody but a peer can put an address in the
/// set. The sets are dynamic with a timeout of one idle period. `update`, not `add`:
/// `update` sets an element's expiry again with every packet (one store, as conntrack
/// does per packet for its own timeout), so its `expires` says when the peer's last
/// packet came, to the second; `add` leaves the element as its first packet made it,
/// so a steady flow would show as up to a timeout older than it is, and an element
/// could lapse between two reads while packets kept coming. With `update` the reads can
/// be spaced as widely as their cost needs without losing what they report.
///
/// Reading a set costs in proportion to its elements, so a thread of its own reads it
/// (``FastPathHeardReader``), over netlink (``NftablesSetElements``): nft's listing of
/// 100,000 took 1.6 s and its JSON as long again (docs/benchmarks.md). Asking for single
/// elements is no cheaper: nft 1.0.6 reads the whole set for `get element`.
enum FastPathHeard {
    /// The set of `family`.
    static func setName(_ family: AddressFamily) -> String { family == .ipv4 ? "heard4" : "heard6" }

    /// The statement that ends each inbound translating rule of `family`.
    static func statement(_ family: AddressFamily) -> String {
        family == .ipv4 ? "update @heard4 { ip saddr }" : "update @heard6 { ip6 saddr }"
    }

    /// The commands that add both sets to `table` (no-ops when they are there, elements
    /// kept): at most ``KernelFastPath/peerLimit`` elements each, as the maps.
    static func sets(table: String, timeoutSeconds: UInt32) -> [String] {
        [AddressFamily.ipv4, .ipv6].map { family in
            "add set inet \(table) \(setName(family)) { type \(family == .ipv4 ? "ipv4_addr" : "ipv6_addr"); "
                + "flags dynamic, timeout; timeout \(timeoutSeconds)s; size \(KernelFastPath.peerLimit); }"
        }
    }

    /// The sets' timeout for an idle period of `idleAfter` ms, in whole seconds: data
    /// older than an idle period puts no probe off.
    static func timeoutSeconds(idleAfter: UInt64) -> UInt32 {
        UInt32(clamping: max(1, (idleAfter + 999) / 1_000))
    }

    /// How long the reader waits between two reads (ms): ten times what the last read
    /// took, at least 2 s, and at most a third of an idle period, so a steady flow's last
    /// report is always well inside the idle period that would make its peer due; but
    /// never less than three times the last read, so reading takes at most a quarter of a
    /// core (past that, at many thousands of peers, reports come later and some of the
    /// fast path's peers are probed although they send).
    static func interval(lastReadTook: UInt64, idleAfter: UInt64) -> UInt64 {
        max(min(max(2_000, 10 * lastReadTook), max(1_000, idleAfter / 3)), 3 * lastReadTook)
    }

    /// Each peer among a set's elements (``NftablesSetElements``), with when its last
    /// packet came at the latest (monotonic ms), for elements read from `readAt` on of a
    /// set whose timeout is `timeoutSeconds`: an element expires its timeout after its
    /// last packet, and the kernel gives what is left in ms. Keys that are not an address
    /// are skipped.
    static func heard(_ elements: [NftablesSetElements.Element], readAt: UInt64, timeoutSeconds: UInt32) -> [IPAddress: UInt64] {
        var heard: [IPAddress: UInt64] = [:]
        heard.reserveCapacity(elements.count)
        for element in elements {
            let address: IPAddress
            switch element.key.count {
            case 4: address = element.key.withUnsafeBytes { .v4(IPv4Address(loadingFrom: $0.baseAddress!, offset: 0)) }
            case 16: address = element.key.withUnsafeBytes { .v6(IPv6Address(loadingFrom: $0.baseAddress!, offset: 0)) }
            default: continue
            }
            let at: UInt64
            if let expiration = element.expiration {
                let timeout = element.timeout ?? UInt64(timeoutSeconds) * 1_000
                let age = timeout > expiration ? timeout - expiration : 0
                at = readAt > age ? readAt - age : 0
            } else {
                at = readAt
            }
            heard[address] = max(heard[address] ?? 0, at)
        }
        return heard
    }

    /// Reads both sets of `table` over netlink. A set that is not there reads as empty
    /// when the table is not there either (the fast path is off, or was removed), which
    /// `nftables` tells.
    static func read(table: String, timeoutSeconds: UInt32, nftables: Nftables) throws(SystemError) -> [IPAddress: UInt64] {
        var heard: [IPAddress: UInt64] = [:]
        for family in [AddressFamily.ipv4, .ipv6] {
            let readAt = MonotonicClock.milliseconds()
            let elements: [NftablesSetElements.Element]
            do {
                elements = try NftablesSetElements.read(family: "inet", table: table, set: setName(family))
            } catch {
                if try !nftables.hasTable(family: "inet", name: table) { return [:] }
                throw error
            }
            heard.merge(Self.heard(elements, readAt: readAt, timeoutSeconds: timeoutSeconds)) { max($0, $1) }
        }
        return heard
    }
}

/// Reads the kernel fast path's heard sets (``FastPathHeard``) on a thread of its own,
/// spaced by what a read costs, and keeps what it found for the mapping service to take.
final class FastPathHeardReader: Sendable {
    private struct State {
        var heard: [IPAddress: UInt64] = [:]
        var lastError: String?
    }

    private let table: String
    private let idleAfter: UInt64
    private let timeoutSeconds: UInt32
    private let state = Mutex(State())
    private let thread = WatcherThread()
    /// Reads done and failed, and the time the last one took (ms).
    let reads = Atomic<UInt64>(0)
    let failures = Atomic<UInt64>(0)
    let lastReadMilliseconds = Atomic<UInt64>(0)

    /// Starts reading `table`'s sets, whose timeout is an idle period of `idleAfter` ms.
    init(table: String, idleAfter: UInt64) {
        self.table = table
        self.idleAfter = idleAfter
        timeoutSeconds = FastPathHeard.timeoutSeconds(idleAfter: idleAfter)
        if !thread.start(name: "matd-heard", { [self] in run() }) {
            log(.warning, "matd: no thread for reading the kernel fast path's heard peers: their data puts no idle probe off")
        }
    }

    /// The peers heard since the last call, with when each last was (monotonic ms).
    func take() -> [IPAddress: UInt64] {
        state.withLock { state in
            defer { state.heard.removeAll() }
            return state.heard
        }
    }

    /// Stops the thread (a read under way is waited for).
    func close() { thread.stop() }

    private func run() {
        let nftables: Nftables
        do {
            nftables = try Nftables()
        } catch {
            log(.error, "matd: reading the kernel fast path's heard peers: \(error); their data puts no idle probe off")
            return
        }
        var took: UInt64 = 0
        while thread.sleep(milliseconds: FastPathHeard.interval(lastReadTook: took, idleAfter: idleAfter)) {
            let start = MonotonicClock.milliseconds()
            do {
                let heard = try FastPathHeard.read(table: table, timeoutSeconds: timeoutSeconds, nftables: nftables)
                state.withLock { state in
                    state.heard.merge(heard) { max($0, $1) }
                    state.lastError = nil
                }
                reads.add(1, ordering: .relaxed)
            } catch {
                let total = failures.add(1, ordering: .relaxed).newValue
                let text = "\(error)"
                let changed = state.withLock { state in
                    defer { state.lastError = text }
                    return state.lastError != text
                }
                if changed {
                    log(.error, "matd: reading the kernel fast path's heard peers failed (\(error)); \(total) failure(s) so far")
                }
            }
            took = MonotonicClock.milliseconds() - start
            lastReadMilliseconds.store(took, ordering: .relaxed)
        }
    }
}
